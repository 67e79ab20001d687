"""stardata.crossmatch against the local test archive and a local reference table (no network)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import stardata
from stardata.crossmatch import CatalogError, crossmatch, propagate
from stardata.testing import MirrorServer, write_tiny_combined19
from tests.stardata.crossmatch_fixtures import (
    FAST,
    IDS,
    PAIR,
    archive_tables,
    catalogue,
    separation_arcsec,
)

SETTINGS = stardata.Settings(ebv_n_draws=32, retries=0, chunk_rows=4)  # 4 rows: many blocks


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    tables, xp = archive_tables()
    dust = tmp_path_factory.mktemp("dust")
    write_tiny_combined19(dust)
    with MirrorServer(tables=tables, xp=xp) as server:
        src = stardata.Sources(
            gaia_tap_url=server.tap_url,
            gaia_datalink_url=server.datalink_url,
            dust_dir=str(dust),
        )
        yield {"server": server, "sources": src, "gaia": tables["gaiadr3.gaia_source"], "xp": xp}


def _run(sky, tmp_path, catalog, **kw):
    kw.setdefault("settings", SETTINGS)
    return crossmatch(
        catalog, sources=sky["sources"], cache_dir=tmp_path / "cache", progress=False, **kw
    )


def _reference(sky) -> pl.DataFrame:
    return sky["gaia"].select("source_id", "ra", "dec", "pmra", "pmdec", "ref_epoch")


@pytest.mark.parametrize("against", ["archive", "reference"])
def test_positions_match_after_propagation_in_input_order(sky, tmp_path, against):
    cat = catalogue(sky["gaia"], epoch=2000.0)
    ref = _reference(sky) if against == "reference" else None
    got = _run(sky, tmp_path, cat, epoch=2000.0, reference=ref, columns="match")
    assert got.columns[:5] == cat.columns and got.height == cat.height
    assert got["name"].to_list() == cat["name"].to_list()  # input order, every row
    truth = cat["truth"].to_numpy()
    want = np.where(truth >= 0, IDS[np.clip(truth, 0, None)], 0)
    assert got["gaia_source_id"].to_list() == want.tolist()
    assert got["xm_matched"].to_list() == (truth >= 0).tolist()
    sep = got["xm_separation_arcsec"].to_numpy()
    assert np.all(sep[truth >= 0] < 0.6) and np.all(np.isnan(sep[truth < 0]))
    assert got["xm_n_candidates"].to_list() == [
        0 if t < 0 else 2 if t in PAIR else 1 for t in truth
    ]
    assert got["xm_ambiguous"].to_list() == [t in PAIR for t in truth]


@pytest.mark.parametrize("against", ["archive", "reference"])
def test_fast_star_matches_only_after_propagation(sky, tmp_path, against):
    cat = catalogue(sky["gaia"], epoch=2000.0).filter(pl.col("truth") == FAST)
    ref = _reference(sky) if against == "reference" else None
    moved = _run(sky, tmp_path, cat, epoch=2000.0, reference=ref, columns="match")
    assert moved["gaia_source_id"][0] == IDS[FAST]
    stale = _run(sky, tmp_path, cat, epoch=2016.0, reference=ref, columns="match")
    assert stale["gaia_source_id"][0] == 0  # 19″ away at J2016.0
    per_row = _run(
        sky, tmp_path, cat.with_columns(pl.lit(2000.0).alias("ep")), epoch="ep", reference=ref,
        columns="match",
    )  # fmt: skip
    assert per_row["gaia_source_id"][0] == IDS[FAST]


def test_archive_and_local_separations_agree(sky, tmp_path):
    cat = catalogue(sky["gaia"], epoch=1991.25)
    a = _run(sky, tmp_path, cat, epoch=1991.25, columns="match")
    b = _run(sky, tmp_path, cat, epoch=1991.25, reference=_reference(sky), columns="match")
    np.testing.assert_allclose(
        a["xm_separation_arcsec"].to_numpy(), b["xm_separation_arcsec"].to_numpy(), atol=1e-3
    )


def test_propagation_agrees_with_astropy():
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    ra, dec = np.array([10.0, 200.0, 359.9999]), np.array([-89.9, 45.0, 0.0])
    pmra, pmdec = np.array([1000.0, -3000.0, 500.0]), np.array([-500.0, 10000.0, 0.0])
    ours = propagate(ra, dec, pmra, pmdec, -16.0, parallax=np.full(3, 100.0))
    star = SkyCoord(
        ra * u.deg, dec * u.deg, distance=10 * u.pc, pm_ra_cosdec=pmra * u.mas / u.yr,
        pm_dec=pmdec * u.mas / u.yr, radial_velocity=0 * u.km / u.s,
        obstime=Time(2016.0, format="jyear"),
    ).apply_space_motion(dt=-16 * u.yr)  # fmt: skip
    ours_ra = np.degrees(np.arctan2(ours[:, 1], ours[:, 0]))
    ours_dec = np.degrees(np.arcsin(ours[:, 2]))
    sep_mas = separation_arcsec(ours_ra, ours_dec, star.ra.deg, star.dec.deg) * 1e3
    assert np.all(sep_mas < 1e-3)


def test_by_source_id_joins_the_build_columns(sky, tmp_path):
    from stardata.columns import bprp

    ids = [int(IDS[3]), 0, int(IDS[0]), 123, int(IDS[9])]  # 123: not in the archive
    cat = pl.DataFrame({"sid": ids, "my_label": [1.0, 2.0, np.nan, 4.0, 5.0]})
    got = _run(sky, tmp_path, cat, source_id="sid")
    assert got["sid"].to_list() == ids and got["my_label"].to_list()[:2] == [1.0, 2.0]
    assert got["gaia_found"].to_list() == [True, False, True, False, True]
    g = sky["gaia"].filter(pl.col("source_id") == IDS[3]).row(0, named=True)
    want, _ = bprp(
        g["phot_bp_mean_mag"], g["phot_rp_mean_mag"], g["phot_bp_mean_flux_over_error"],
        g["phot_rp_mean_flux_over_error"],
    )  # fmt: skip
    assert got["bprp"][0] == pytest.approx(float(want))
    assert np.isnan(got["bprp"][1]) and np.isnan(got["jh"][3])
    has_xp = set(sky["xp"]["source_id"].to_list())
    assert got["has_xp"].to_list() == [i in has_xp for i in ids]
    # XP only where the star passed the cuts; logebv where Gaia was found
    xp_ok = got["xp_good"].to_numpy()
    assert np.all(np.isnan(got["bp0"].to_numpy()[~xp_ok]))
    # E(B-V) wherever the corrected parallax is usable, as in the build
    plx = np.isfinite(got["parallax_corrected"].to_numpy())
    assert plx.any() and np.all(np.isfinite(got["logebv"].to_numpy()[plx]))
    assert np.all(np.isnan(got["logebv"].to_numpy()[~got["gaia_found"].to_numpy()]))


def test_same_code_path_as_the_build(sky, tmp_path, monkeypatch):
    """The crossmatch derives its columns through stardata.derive.derive_gaia (as the build)."""
    from stardata import derive

    calls = []
    real = derive.derive_gaia
    monkeypatch.setattr(derive, "derive_gaia", lambda *a, **k: calls.append(1) or real(*a, **k))
    _run(sky, tmp_path, pl.DataFrame({"source_id": IDS[:6]}), extinction=False)
    assert len(calls) == 2  # two blocks of 4 rows


def test_output_folder_manifest_and_tokens(sky, tmp_path):
    from stardata import read_tokens_h5

    cat = catalogue(sky["gaia"], epoch=2000.0)
    path = tmp_path / "cat.csv"
    cat.write_csv(path)
    vocab = ["bprp", "jh", "jk", "teff", "label"]
    out = _run(sky, tmp_path, path, epoch=2000.0, out=tmp_path / "xm", vocabulary=vocab)
    manifest = stardata.verify(out)  # the build's verifier checks our manifest too
    assert set(manifest) == {"crossmatch.parquet", "tokens.h5"}
    import json

    m = json.loads((out / "manifest.json").read_text())
    assert m["row_counts"]["rows"] == cat.height and m["row_counts"]["matched"] == 11
    assert m["row_counts"]["ambiguous"] == 1 and m["catalog"]["sha256"]
    assert m["match"]["epoch"] == 2000.0 and m["settings"]["ebv_n_draws"] == 32
    tokens, values, _, vocabulary, extra = read_tokens_h5(out / "tokens.h5")
    table = pl.read_parquet(out / "crossmatch.parquet")
    assert list(vocabulary.names) == vocab
    np.testing.assert_allclose(
        np.where(tokens[:, 0] > 0, values[:, 0], np.nan),
        table["bprp"].to_numpy().astype(np.float32),
    )
    assert (tokens[:, 3] == 0).all()  # teff is not in the table: padding
    label = table["label"].to_numpy().astype(float)
    np.testing.assert_allclose(values[tokens[:, 4] > 0, 4], label[np.isfinite(label)])
    assert list(extra["gaia_source_id"]) == table["gaia_source_id"].to_list()
    again = _run(sky, tmp_path, path, epoch=2000.0, out=tmp_path / "xm", vocabulary=vocab)
    assert stardata.verify(again) == manifest  # same inputs, same bytes


def _inputs(cat: pl.DataFrame, tmp_path):
    from astropy.table import Table

    yield "polars", cat
    yield "pandas", cat.to_pandas()
    yield "arrow", cat.to_arrow()
    yield "astropy", Table.from_pandas(cat.to_pandas())
    for suffix, write in (
        ("csv", lambda p: cat.write_csv(p)),
        ("parquet", lambda p: cat.write_parquet(p)),
        ("fits", lambda p: Table.from_pandas(cat.to_pandas()).write(p, format="fits")),
        ("xml", lambda p: Table.from_pandas(cat.to_pandas()).write(p, format="votable")),
    ):
        path = tmp_path / f"cat.{suffix}"
        write(path)
        yield suffix, str(path)


def test_every_input_type_gives_the_same_match(sky, tmp_path):
    cat = catalogue(sky["gaia"], epoch=2000.0)
    ref = _reference(sky)
    results = {
        kind: _run(sky, tmp_path, c, epoch=2000.0, reference=ref, columns="match")
        for kind, c in _inputs(cat, tmp_path)
    }
    base = results.pop("polars")
    for kind, got in results.items():
        assert got["gaia_source_id"].to_list() == base["gaia_source_id"].to_list(), kind
        assert got["name"].to_list() == base["name"].to_list(), kind


@pytest.mark.parametrize(
    "frame, kw, message",
    [
        ({"x": [1.0], "y": [2.0]}, {}, "neither a source_id column nor ra and dec"),
        ({"ra": ["a", "b"], "dec": [1.0, 2.0]}, {}, "'ra' .* is (large_)?string, not numeric"),
        ({"ra": [1.0, 2.0], "dec": [1.0, 95.0]}, {}, "row 1 has declination 95.0 outside"),
        ({"ra": [1.0], "dec": [1.0]}, {"ra": "RA", "dec": "dec"}, "no right ascension column 'RA'"),
        ({"source_id": [5, 6, 5]}, {}, "1 id\\(s\\) appear on more than one row .*5"),
        ({"source_id": [5.0, 6.0]}, {}, "floats lose digits"),
        ({"source_id": [5, -6]}, {}, "row 1 has negative id -6"),
        ({"ra": [1.0], "dec": [1.0]}, {"epoch": 16.0}, "epoch 16.0 is not a Julian year"),
        ({"ra": [1.0], "dec": [1.0]}, {"radius": 0}, r"radius \[arcsec\] must be a finite"),
        ({"ra": [1.0], "dec": [1.0], "bprp": [1.0]}, {}, "bprp clash with columns"),
        ({"ra": [], "dec": []}, {}, "no rows"),
    ],
)
def test_bad_catalogue_is_a_one_line_error(sky, tmp_path, frame, kw, message):
    columns = "derived" if "bprp" in frame else "match"
    with pytest.raises(CatalogError, match=message) as err:
        _run(sky, tmp_path, pl.DataFrame(frame), reference=_reference(sky), columns=columns, **kw)
    assert "\n" not in str(err.value)


def test_bad_files_are_named(sky, tmp_path):
    with pytest.raises(CatalogError, match="no such catalogue file"):
        _run(sky, tmp_path, tmp_path / "nope.csv")
    (tmp_path / "cat.txt").write_text("ra,dec\n1,2\n")
    with pytest.raises(CatalogError, match="unknown catalogue format"):
        _run(sky, tmp_path, tmp_path / "cat.txt")
    (tmp_path / "bad.fits").write_bytes(b"not a fits file")
    with pytest.raises(CatalogError, match="bad.fits: cannot read as fits"):
        _run(sky, tmp_path, tmp_path / "bad.fits")


def test_archive_chunks_are_cached_and_resumed(sky, tmp_path):
    cat = catalogue(sky["gaia"], epoch=2000.0)
    server = sky["server"]
    before = server.count("/tap-server/tap/async", "POST")
    _run(sky, tmp_path, cat, epoch=2000.0, columns="match")
    first = server.count("/tap-server/tap/async", "POST") - before
    _run(sky, tmp_path, cat, epoch=2000.0, columns="match")
    assert first >= 1 and server.count("/tap-server/tap/async", "POST") - before == first


def test_a_failed_crossmatch_resumes_from_the_connector_caches(sky, tmp_path):
    from stardata.errors import RemoteError

    server = sky["server"]
    cat = pl.DataFrame({"source_id": IDS[:12]})  # three blocks of 4 rows
    fault = server.inject("/data-server/data", status=503, skip=1, times=1)
    with pytest.raises(RemoteError):
        _run(sky, tmp_path, cat, extinction=False, out=tmp_path / "xm")
    assert fault.fired == 1 and not (tmp_path / "xm").exists()
    tap = server.count("/tap-server/tap/async", "POST")
    dl = server.count("/data-server/data", "POST")
    out = _run(sky, tmp_path, cat, extinction=False, out=tmp_path / "xm")
    # the failure hit block 1's DataLink call: blocks 0-1's TAP joins and block 0's XP come
    # from the caches; only block 2's joins (gaia_source, 2MASS) and blocks 1-2's XP are asked
    assert server.count("/tap-server/tap/async", "POST") - tap == 2
    assert server.count("/data-server/data", "POST") - dl == 2
    assert pl.read_parquet(out / "crossmatch.parquet")["gaia_found"].all()
