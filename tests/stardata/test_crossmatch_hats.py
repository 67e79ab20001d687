"""Crossmatch against a HATS reference through LSDB (optional extra: skipped without lsdb)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import polars as pl
import pytest

if importlib.util.find_spec("lsdb") is None:  # found, not imported: lsdb takes seconds
    pytest.skip("needs the [hats] extra (lsdb)", allow_module_level=True)
healpy = pytest.importorskip("healpy")

from stardata.crossmatch import CatalogError, crossmatch, match_local  # noqa: E402
from stardata.crossmatch.hats import match_hats  # noqa: E402
from stardata.hats import write_hats  # noqa: E402
from tests.stardata.crossmatch_fixtures import (  # noqa: E402
    NEARBY_STARS,
    astropy_positions,
    nearby_field,
)

EPOCH = 2000.0
MARGIN = 30.0  # arcsec
N_REF = 3000
# The deepest HEALPix order write_hats may use: these all-sky tables of 1,500-3,000 rows split
# into order 0-1 partitions whatever it is, and hats-import's alignment costs ~6 s at the
# default order 10 (12·4¹⁰ pixels) against ~0.05 s at order 6.
ORDER = 6


def _move(ra, dec, pmra, pmdec, dt):
    """Small-angle proper-motion shift (independent of the code under test)."""
    dec2 = dec + pmdec * dt / 3.6e6
    return ra + pmra * dt / 3.6e6 / np.cos(np.radians(dec)), dec2


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """An all-sky reference in small partitions, and a J2000 catalogue of its stars.

    20 of the catalogue's stars move (0.6-1″/yr) across a partition edge between J2016 and
    J2000, so their match needs the margin; 5 rows have no counterpart.
    """
    import hats.pixel_math as hpm
    import lsdb

    tmp = tmp_path_factory.mktemp("hatsxm")
    rng = np.random.default_rng(4)
    ra = rng.uniform(0, 360, N_REF)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, N_REF)))
    pmra, pmdec = rng.normal(0, 20, N_REF), rng.normal(0, 20, N_REF)
    pmdec[:5] = np.nan  # no astrometric solution: not moved

    def partitions(r, d):
        """The partition of each position, as write_hats will make them (hats' own alignment
        of the order-ORDER histogram), so that the reference is written once."""
        hist = hpm.generate_histogram(pd.DataFrame({"ra": r, "dec": d}), ORDER)
        align = hpm.generate_alignment(hist, highest_order=ORDER, threshold=150)
        return lambda r2, d2: [
            tuple(align[k][:2]) for k in healpy.ang2pix(2**ORDER, r2, d2, nest=True, lonlat=True)
        ]

    # 20 movers placed 8″ inside an edge of a partition, moving inwards at 0.6-1″/yr: at
    # J2000 they sit 2-8″ outside it, in the neighbouring partition
    order = max(o for o, _ in partitions(ra, dec)(ra, dec))
    movers = np.arange(5, 25)
    for i in movers:
        while True:
            pix = rng.integers(12 * 4**order)
            edge = healpy.boundaries(2**order, pix, step=2, nest=True)[:, rng.choice([1, 3, 5, 7])]
            rb, db = healpy.vec2ang(edge, lonlat=True)
            rc, dc = healpy.pix2ang(2**order, pix, nest=True, lonlat=True)
            if abs(db[0]) < 70:
                break
        u = np.array([((rc - rb[0] + 180) % 360 - 180) * np.cos(np.radians(db[0])), dc - db[0]])
        u /= np.hypot(*u)
        ra[i], dec[i] = _move(rb[0], db[0], u[0] * 8e3, u[1] * 8e3, 1.0)  # 8″ inside
        pmra[i], pmdec[i] = u * rng.uniform(600, 1000)
    part = partitions(ra, dec)
    r2, d2 = _move(ra[movers], dec[movers], pmra[movers], pmdec[movers], EPOCH - 2016.0)
    assert all(a != b for a, b in zip(part(ra[movers], dec[movers]), part(r2, d2), strict=True))
    ref = pl.DataFrame(
        {
            "source_id": np.arange(N_REF, dtype=np.int64) * 17 + 1000,
            "ra": ra,
            "dec": dec,
            "pmra": pmra,
            "pmdec": pmdec,
        }
    )
    ref.write_parquet(tmp / "ref.parquet")
    path = write_hats(
        tmp / "ref.parquet",
        tmp / "gaia",
        pixel_threshold=150,
        margin_arcsec=MARGIN,
        highest_order=ORDER,
    )
    written = {(p.order, p.pixel) for p in lsdb.open_catalog(path).get_healpix_pixels()}
    assert set(part(ra, dec)) == written  # the partitions foreseen
    ref2 = ref.to_pandas()
    picks = np.r_[movers, rng.choice(N_REF, 300, replace=False)]
    picks = np.unique(picks)
    r = ref2.iloc[picks]
    cra, cdec = _move(
        r.ra.to_numpy(),
        r.dec.to_numpy(),
        r.pmra.fillna(0).to_numpy(),
        r.pmdec.fillna(0).to_numpy(),
        EPOCH - 2016.0,
    )
    cra = np.r_[cra + rng.normal(0, 0.1, cra.size) / 3600, rng.uniform(0, 360, 5)]
    cdec = np.r_[cdec + rng.normal(0, 0.1, cdec.size) / 3600, rng.uniform(-60, 60, 5)]
    cat = pl.DataFrame({"name": [f"s{k}" for k in range(cra.size)], "ra": cra, "dec": cdec})
    return {"path": path, "ref": pl.from_pandas(ref2), "cat": cat, "movers": movers}


def test_hats_match_equals_in_memory_match_including_edge_crossers(sky):
    cat, ref = sky["cat"], sky["ref"]
    ra, dec = cat["ra"].to_numpy(), cat["dec"].to_numpy()
    ep = np.full(ra.size, EPOCH)
    local = {k: ref[k].to_numpy() for k in ref.columns}
    want = match_local(ra, dec, ep, local, radius=1.0)
    got = match_hats(ra, dec, ep, sky["path"], radius=1.0, max_pm=1.0)
    for k in ("source_id", "n_candidates", "ambiguous"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_allclose(got["separation_arcsec"], want["separation_arcsec"], atol=1e-6)
    movers = set(ref["source_id"].to_numpy()[sky["movers"]].tolist())
    assert movers <= set(got["source_id"].tolist())  # every edge crosser found
    assert (got["source_id"] > 0).sum() == ra.size - 5


def test_crossmatch_api_takes_a_hats_reference(sky, tmp_path):
    cat = sky["cat"]
    via_hats = crossmatch(
        cat,
        epoch=EPOCH,
        reference=sky["path"],
        columns="match",
        max_pm=1.0,
        progress=False,
        cache_dir=tmp_path,
    )
    via_table = crossmatch(
        cat, epoch=EPOCH, reference=sky["ref"], columns="match", progress=False, cache_dir=tmp_path
    )
    assert via_hats.columns == via_table.columns
    for c in ("name", "gaia_source_id", "xm_n_candidates", "xm_ambiguous", "xm_matched"):
        assert via_hats[c].to_list() == via_table[c].to_list(), c


def test_a_reference_without_margin_is_refused(sky):
    import lsdb

    from stardata.hats import main_catalog

    bare = lsdb.open_catalog(main_catalog(sky["path"]))  # the collection's catalogue alone
    assert bare.margin is None
    ra, dec = sky["cat"]["ra"].to_numpy(), sky["cat"]["dec"].to_numpy()
    with pytest.raises(CatalogError, match="no margin"):
        match_hats(ra, dec, np.full(ra.size, 2016.0), bare, radius=1.0)


def test_search_wider_than_margin_is_refused(sky):
    ra, dec = sky["cat"]["ra"].to_numpy(), sky["cat"]["dec"].to_numpy()
    with pytest.raises(CatalogError, match="exceeds the reference's 30 arcsec margin") as err:
        match_hats(ra, dec, np.full(ra.size, 1950.0), sky["path"], radius=1.0, max_pm=1.0)
    assert str(err.value).startswith(f"HATS reference {sky['path']}: search radius 67.00 arcsec")


@pytest.fixture(scope="module")
def gaia_ids(tmp_path_factory):
    """A HATS catalogue whose source_ids carry their order-12 HEALPix index, as Gaia's do."""
    tmp = tmp_path_factory.mktemp("hatsids")
    rng = np.random.default_rng(8)
    n = 1500
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    pix = healpy.ang2pix(2**12, ra, dec, nest=True, lonlat=True).astype(np.int64)
    ids = (pix << 35) + rng.integers(1, 2**30, n)
    pl.DataFrame({"source_id": ids, "ra": ra, "dec": dec, "g": rng.normal(15, 1, n)}).write_parquet(
        tmp / "g.parquet"
    )
    return write_hats(
        tmp / "g.parquet", tmp / "gaia", pixel_threshold=100, highest_order=ORDER
    ), ids


def test_lookup_ids_reads_only_the_partitions_that_hold_them(gaia_ids):
    import lsdb

    from stardata.crossmatch.hats import _partitions_holding, lookup_ids

    path, ids = gaia_ids
    want = ids[[3, 70, 500, 1499]]
    absent = np.array([(int(ids[3]) >> 35 << 35) + 7], np.int64)  # same pixel, no such star
    got = lookup_ids(path, np.r_[want, absent, 0], columns=["g"])
    assert sorted(got["source_id"].tolist()) == sorted(want.tolist())
    assert {"source_id", "g"} <= set(got.columns)
    pixels = lsdb.open_catalog(path).get_healpix_pixels()
    assert 1 <= len(_partitions_holding(pixels, want)) <= 4 < len(pixels)


def test_crossmatch_by_id_against_a_hats_reference_flags_unknown_ids(gaia_ids, tmp_path):
    path, ids = gaia_ids
    cat = pl.DataFrame({"source_id": [int(ids[10]), 12345, int(ids[20]), 0], "x": [1, 2, 3, 4]})
    got = crossmatch(cat, reference=path, columns="match", progress=False, cache_dir=tmp_path)
    assert got["xm_matched"].to_list() == [True, False, True, False]
    assert got["gaia_source_id"].to_list() == [int(ids[10]), 0, int(ids[20]), 0]


def _port_8787_taken():
    """Hold Dask's default dashboard port (if nobody else does) so that a clash shows."""
    import socket

    sock = socket.socket()
    try:
        sock.bind(("", 8787))
        sock.listen()
    except OSError:  # someone else holds it: the clash is there anyway
        pass
    return sock


def test_crossmatch_output_as_hats(sky, tmp_path, capfd):
    import warnings

    import lsdb

    from stardata import verify

    # the HATS copy is the crossmatch's own Dask cluster: no "port 8787 in use", no nanny or
    # LSDB notice, no progress bar, even with the default dashboard port taken
    with _port_8787_taken(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = crossmatch(
            sky["cat"],
            epoch=EPOCH,
            reference=sky["ref"],
            columns="match",
            out=tmp_path / "xm",
            formats=["parquet", "hats"],
            progress=False,
            cache_dir=tmp_path / "c",
        )
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr().err == ""
    table = pl.read_parquet(out / "crossmatch.parquet")
    hats = lsdb.open_catalog(out / "crossmatch_hats")
    assert hats.margin is not None
    got = hats.compute().sort_values("name")
    assert got["name"].tolist() == sorted(table["name"].to_list())
    assert "crossmatch_hats" in verify(out)
    with pytest.raises(CatalogError, match="needs out="):
        crossmatch(
            sky["cat"],
            reference=sky["ref"],
            columns="match",
            formats=["hats"],
            progress=False,
            cache_dir=tmp_path / "c",
        )
    holes = sky["cat"].with_columns(
        pl.when(pl.col("name") == "s0").then(None).otherwise(pl.col("ra")).alias("ra")
    )
    with pytest.raises(CatalogError, match="1 row"):
        crossmatch(
            holes,
            reference=sky["ref"],
            columns="match",
            formats=["hats"],
            out=tmp_path / "xm2",
            progress=False,
            cache_dir=tmp_path / "c",
        )
    assert not (tmp_path / "xm2").exists()


def _collection(frame: pd.DataFrame, path, margin: float, **kw):
    """``frame`` as a HATS collection with a margin on disk, through LSDB (no hats-import:
    quicker for the small, deep-order catalogues these tests need)."""
    import lsdb

    cat = lsdb.from_dataframe(
        frame, ra_column="ra", dec_column="dec", margin_threshold=margin, **kw
    )
    cat.write_catalog(path, as_collection=True, progress_bar=False)
    return path


@pytest.fixture(scope="module")
def bulge(tmp_path_factory):
    """A field at the bulge's density, 1e6 stars per deg², in a HATS collection with a 10″ margin.

    10,000 stars in 0.1° × 0.1° centred on a corner shared by four order-8 partitions (so
    many matches need the margin); Gaia-like astrometry (parallax, radial velocity for a fifth,
    ref_epoch J2016.0), 3 % of the stars moving 0.25-0.475″/yr. The catalogue: 150 of those
    and 50 other stars at J2000.0 (astropy's positions, 0.1″ noise).
    """
    rng = np.random.default_rng(5)
    nside = 2**8
    pix = healpy.ang2pix(nside, 266.4, -29.0, nest=True, lonlat=True)
    corner = healpy.boundaries(nside, pix, step=1, nest=True)[:, 0]
    ra0, dec0 = (float(v[0]) for v in healpy.vec2ang(corner, lonlat=True))
    n, side = 10_000, 0.1
    dec = dec0 + rng.uniform(-side / 2, side / 2, n)
    ra = ra0 + rng.uniform(-side / 2, side / 2, n) / np.cos(np.radians(dec0))
    pm = rng.normal(0, 3, (2, n))
    fast = rng.random(n) < 0.03
    pm[:, fast] = (
        rng.uniform(0.25, 0.475, fast.sum())
        * 1e3
        * np.stack([np.cos(a := rng.uniform(0, 2 * np.pi, fast.sum())), np.sin(a)])
    )
    ref = pl.DataFrame(
        {
            "source_id": np.arange(1, n + 1, dtype=np.int64) * 11,
            "ra": ra,
            "dec": dec,
            "pmra": pm[0],
            "pmdec": pm[1],
            "parallax": rng.lognormal(np.log(0.3), 0.7, n),
            "radial_velocity": np.where(rng.random(n) < 0.2, rng.normal(0, 100, n), np.nan),
            "ref_epoch": np.full(n, 2016.0),
        }
    )
    tmp = tmp_path_factory.mktemp("bulge")
    path = _collection(
        ref.to_pandas(), tmp / "gaia", 10.0, lowest_order=5, highest_order=8, partition_rows=4000
    )
    # 150 of the movers (their J2016 positions lie 4-7.6″ away, among ~20 stars within 9″:
    # what a neighbour cap drops) and 50 others
    movers, others = np.flatnonzero(fast), np.flatnonzero(~fast)
    pick = np.r_[rng.choice(movers, 150, replace=False), rng.choice(others, 50, replace=False)]
    r, d = astropy_positions(ref[pick], EPOCH)
    d = d + rng.normal(0, 0.1, d.size) / 3600
    r = r + rng.normal(0, 0.1, r.size) / 3600 / np.cos(np.radians(d))
    return {"path": path, "ref": ref, "ra": r, "dec": d, "truth": ref["source_id"].to_numpy()[pick]}


def test_dense_field_hats_equals_kdtree_row_for_row(bulge):
    from scipy.spatial import cKDTree

    from stardata.crossmatch.sky import unit_vectors

    ra, dec, ref = bulge["ra"], bulge["dec"], bulge["ref"]
    ep = np.full(ra.size, EPOCH)
    max_pm = 0.5
    got = match_hats(ra, dec, ep, bulge["path"], radius=1.0, max_pm=max_pm)
    want = match_local(ra, dec, ep, {k: ref[k].to_numpy() for k in ref.columns}, radius=1.0)
    for k in ("source_id", "n_candidates", "ambiguous"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_allclose(got["separation_arcsec"], want["separation_arcsec"], atol=1e-6)
    assert (got["source_id"] == bulge["truth"]).sum() >= 197  # the nearest is the star
    # the field is dense enough to matter: the search (1″ + 0.5″/yr × 16 yr) holds more than
    # the 16 neighbours the match used to keep for most rows
    search = 1.0 + max_pm * (2016.0 - EPOCH)
    tree = cKDTree(unit_vectors(ref["ra"].to_numpy(), ref["dec"].to_numpy()))
    held = tree.query_ball_point(
        unit_vectors(ra, dec), 2 * np.sin(np.radians(search / 3600) / 2), return_length=True
    )
    assert (held > 16).mean() > 0.5


@pytest.fixture(scope="module")
def dr2_like(tmp_path_factory):
    """The nearby fast movers among field stars as a J2015.5 reference (positions there,
    ref_epoch 2015.5), in memory with a 1,300″ margin (room for 10.5″/yr over 115.5 yr)."""
    import lsdb

    field = nearby_field()
    r, d = astropy_positions(field, 2015.5)
    ref = field.drop("name").with_columns(
        pl.Series("ra", r), pl.Series("dec", d), pl.lit(2015.5).alias("ref_epoch")
    )
    cat = lsdb.from_dataframe(ref.to_pandas(), margin_threshold=1300.0, highest_order=5)
    return {"ref": ref, "catalog": cat}


@pytest.mark.parametrize("epoch", [1900.0, 1950.0, 2000.0])
def test_hats_honours_ref_epoch_and_old_epochs(dr2_like, epoch):
    ref = dr2_like["ref"]
    ra, dec = astropy_positions(ref.filter(pl.col("source_id") < 1000), epoch)
    ep = np.full(ra.size, epoch)
    got = match_hats(ra, dec, ep, dr2_like["catalog"], radius=1.0, max_pm=10.5)
    want = match_local(ra, dec, ep, {k: ref[k].to_numpy() for k in ref.columns}, radius=1.0)
    for k in ("source_id", "n_candidates", "ambiguous"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert got["source_id"].tolist() == NEARBY_STARS["source_id"].to_list()  # 14 of 14
    assert np.nanmax(got["separation_arcsec"]) < 1e-6


def test_a_hats_reference_without_source_id_is_named(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"ra": rng.uniform(0, 10, 50), "dec": rng.uniform(0, 10, 50)})
    path = _collection(frame, tmp_path / "no_ids", 10.0)
    cat = pl.DataFrame({"ra": [1.0, 2.0], "dec": [1.0, 2.0]})
    message = f"HATS reference {path} has no source_id column"
    with pytest.raises(CatalogError, match=message):
        crossmatch(cat, reference=path, columns="match", progress=False, cache_dir=tmp_path)
    with pytest.raises(CatalogError, match=message):  # by id: the lookup needs it too
        crossmatch(
            pl.DataFrame({"source_id": [5]}),
            reference=path,
            columns="match",
            progress=False,
            cache_dir=tmp_path,
        )
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / "collection.properties").write_text("not a collection\n")
    with pytest.raises(CatalogError, match=f"HATS reference {bogus}: not a readable HATS"):
        crossmatch(cat, reference=bogus, columns="match", progress=False, cache_dir=tmp_path)


_QUIET_RUN = """
import polars as pl
from stardata.crossmatch import crossmatch
cat = pl.read_parquet({cat!r})
pos = crossmatch(cat, epoch=2000.0, reference={ref!r}, columns="match", max_pm=1.0,
                 progress=False, cache_dir={cache!r})
ids = crossmatch(pl.DataFrame({{"source_id": [{id0}, {id1}, 5]}}), reference={gaia!r},
                 columns="match", progress=False, cache_dir={cache!r})
assert ids["xm_matched"].to_list() == [True, True, False]
print(pos["xm_matched"].sum())
"""


def test_progress_false_is_silent(sky, gaia_ids, tmp_path):
    """Matching against a HATS reference, by position and by id, prints nothing on stderr in a
    fresh process (pytest's capture hides warnings in-process): no LSDB progress bar ("Building
    task graph..."), no HATS notice."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sky["cat"].write_parquet(tmp_path / "cat.parquet")
    code = _QUIET_RUN.format(
        cat=str(tmp_path / "cat.parquet"),
        ref=str(sky["path"]),
        gaia=str(gaia_ids[0]),
        id0=int(gaia_ids[1][0]),
        id1=int(gaia_ids[1][1]),
        cache=str(tmp_path / "cache"),
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert int(run.stdout.split()[-1]) == sky["cat"].height - 5
    assert run.stderr == ""
