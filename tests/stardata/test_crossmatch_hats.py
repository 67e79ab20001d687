"""Crossmatch against a HATS reference through LSDB (optional extra: skipped without lsdb)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

pytest.importorskip("lsdb")
healpy = pytest.importorskip("healpy")

from stardata.crossmatch import CatalogError, crossmatch, match_local  # noqa: E402
from stardata.crossmatch.hats import match_hats  # noqa: E402
from stardata.hats import write_hats  # noqa: E402

EPOCH = 2000.0
MARGIN = 30.0  # arcsec
N_REF = 3000


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
    tmp = tmp_path_factory.mktemp("hatsxm")
    rng = np.random.default_rng(4)
    ra = rng.uniform(0, 360, N_REF)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, N_REF)))
    pmra, pmdec = rng.normal(0, 20, N_REF), rng.normal(0, 20, N_REF)
    pmdec[:5] = np.nan  # no astrometric solution: not moved
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
    path = write_hats(tmp / "ref.parquet", tmp / "gaia", pixel_threshold=150, margin_arcsec=MARGIN)
    import lsdb

    parts = lsdb.open_catalog(path).get_healpix_pixels()
    order = max(p.order for p in parts)
    # stars whose J2000 position lies in another partition (at the deepest order)
    movers = []
    for i in rng.permutation(N_REF)[5:]:
        pa, pd_ = rng.uniform(600, 1000, 2) * rng.choice([-1, 1], 2)
        r2, d2 = _move(ra[i], dec[i], pa, pd_, EPOCH - 2016.0)
        same = healpy.ang2pix(2**order, ra[i], dec[i], nest=True, lonlat=True) == healpy.ang2pix(
            2**order, r2, d2, nest=True, lonlat=True
        )
        if not same and abs(dec[i]) < 80:
            movers.append((i, pa, pd_))
        if len(movers) == 20:
            break
    ref2 = ref.to_pandas()
    for i, pa, pd_ in movers:
        ref2.loc[i, "pmra"], ref2.loc[i, "pmdec"] = pa, pd_
    pl.from_pandas(ref2).write_parquet(tmp / "ref.parquet")
    path = write_hats(tmp / "ref.parquet", tmp / "gaia", pixel_threshold=150, margin_arcsec=MARGIN)
    picks = np.r_[[m[0] for m in movers], rng.choice(N_REF, 300, replace=False)]
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
    return {"path": path, "ref": pl.from_pandas(ref2), "cat": cat, "movers": [m[0] for m in movers]}


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
    with pytest.raises(CatalogError, match="exceeds the reference's 30 arcsec margin"):
        match_hats(ra, dec, np.full(ra.size, 1950.0), sky["path"], radius=1.0, max_pm=1.0)


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
    return write_hats(tmp / "g.parquet", tmp / "gaia", pixel_threshold=100), ids


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


def test_crossmatch_output_as_hats(sky, tmp_path):
    import lsdb

    from stardata import verify

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
