"""End-to-end builds of a small DR17 release from a local mirror (127.0.0.1; no network)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from stardata import testing as M
from stardata.errors import BuildError, OfflineMissing, RemoteError, VerifyError
from stardata.io import read_json, sha256_file
from stardata.release import VOCABULARY, Settings, Sources, build, read_table, verify
from stardata.split import split_ids
from stardata.tokens import read_tokens_h5

N_ROWS = 240
ALLSTAR = "/sas/dr17/apogee/spectro/aspcap/dr17/synspec_rev1/allStar-dr17-synspec_rev1.fits"
SUBSET = "/sas/subset/allStar-dr17-synspec_rev1.fits"
SETTINGS = Settings(chunk_rows=64, row_group_size=100, ebv_n_draws=64, retries=1)
OUTPUTS = ("stars.parquet", "tokens.h5", "manifest.json")

# Hand-made stars: row 0 is fully controlled; row 1 has flagged labels.
HAND = {
    "J": 10.0, "J_ERR": 0.03, "H": 9.5, "H_ERR": 0.04, "K": 9.3, "K_ERR": 0.02,
    "STARFLAG": 0, "ASPCAPFLAG": 0, "TEFF": 4800.0, "LOGG": 2.5, "M_H": -0.1,
}  # fmt: skip
HAND_GAIA = {
    "phot_g_mean_mag": 12.0, "phot_bp_mean_mag": 12.5, "phot_rp_mean_mag": 11.7,
    "phot_bp_mean_flux_over_error": 1085.7, "phot_rp_mean_flux_over_error": 542.85,
    "parallax": 2.0, "parallax_error": 0.05, "ruwe": 1.0, "astrometric_params_solved": 3,
    "phot_bp_rp_excess_factor": 1.2,
}  # fmt: skip
# 2MASS rows (no XP, clean flags: kept as APOGEE-only stars). 10: APOGEE's J and H are the
# 99.999 sentinel, 2MASS fills them in; 11: APOGEE's J is the sentinel and 2MASS's J an upper
# limit (ph_qual U), so J is missing; 12: all three sentinels and no 2MASS neighbour.
TMASS_HAND = {10: ("J", "H"), 11: ("J",), 12: ("J", "H", "K")}
TMASS_OFFSET = {"J": 0.01, "H": 0.02, "K": 0.03}  # APOGEE minus 2MASS where both have a band


def _allstar(path):
    rng = np.random.default_rng(5)
    ids = rng.integers(10**15, 6 * 10**18, N_ROWS, dtype=np.int64)
    ids[[7, 20]] = 0  # no Gaia match
    ids[30] = ids[31]  # two APOGEE ids matched to one Gaia star
    path = M.write_allstar(path, N_ROWS, seed=11, source_ids=ids, duplicates=4)
    with fits.open(path, mode="update") as hdul:
        data = hdul[1].data
        for name, value in HAND.items():
            data[name][0] = value
        data["ASPCAPFLAG"][1] = 1 << 19
        data["SNR"][31] = data["SNR"][30] + 1.0
        for row, sentinels in TMASS_HAND.items():
            data["STARFLAG"][row] = data["ASPCAPFLAG"][row] = 0
            for band, value in (("J", 11.5), ("H", 11.0), ("K", 10.8)):
                data[band][row] = 99.999 if band in sentinels else value
    return path


def _tmass_tables(data, hand: dict) -> dict:
    """2MASS = APOGEE minus TMASS_OFFSET (12 where APOGEE has the sentinel), all ph_qual AAA,
    except the TMASS_HAND rows."""
    rows = pl.DataFrame(
        {"source_id": data["GAIAEDR3_SOURCE_ID"].astype(np.int64)}
        | {band: data[band].astype(np.float64) for band in TMASS_OFFSET}
    )
    rows = rows.filter((pl.col("source_id") > 0) & (pl.col("source_id") != hand[12]))
    rows = rows.unique("source_id", keep="first", maintain_order=True)
    tables = M.synthetic_tmass(rows["source_id"].to_numpy(), seed=4)
    sid = rows["source_id"].to_numpy()
    mags = {}
    for band, column in zip(TMASS_OFFSET, ("j_m", "h_m", "ks_m"), strict=True):
        v = rows[band].to_numpy()
        mags[column] = np.where(v < 99, v - TMASS_OFFSET[band], 12.0)
    mags["j_m"][sid == hand[10]], mags["h_m"][sid == hand[10]] = 11.0, 10.4
    quality = np.where(sid == hand[11], "UAA", "AAA")
    name = "gaiadr1.tmass_original_valid"
    tables[name] = tables[name].with_columns(
        *[pl.Series(c, v.astype(np.float32)) for c, v in mags.items()],
        pl.Series("ph_qual", quality),
    )
    return tables


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Mirror files and archive tables, and a started server."""
    root = tmp_path_factory.mktemp("mirror")
    allstar = _allstar(root / "allStar.fits")
    with fits.open(allstar) as hdul:
        sub = fits.HDUList([hdul[0], fits.BinTableHDU(hdul[1].data[::2].copy(), hdul[1].header)])
        sub.writeto(root / "subset.fits")
        ids = np.unique(hdul[1].data["GAIAEDR3_SOURCE_ID"])
        id0 = int(hdul[1].data["GAIAEDR3_SOURCE_ID"][0])
        hand = {row: int(hdul[1].data["GAIAEDR3_SOURCE_ID"][row]) for row in TMASS_HAND}
        tmass = _tmass_tables(hdul[1].data, hand)
    ids = ids[ids > 0]
    gaia = M.synthetic_gaia_source(ids[ids != ids[3]], seed=2)  # one id unknown to the archive
    gaia = gaia.with_columns(
        [pl.when(pl.col("source_id") == id0).then(pl.lit(v)).otherwise(pl.col(k)).alias(k)
         .cast(gaia.schema[k]) for k, v in HAND_GAIA.items()]
    )  # fmt: skip
    no_xp = pl.col("source_id").is_in(list(hand.values()))
    gaia = gaia.with_columns(pl.when(no_xp).then(False).otherwise("has_xp_continuous").alias(
        "has_xp_continuous"))  # fmt: skip
    xp = M.synthetic_xp(gaia.filter(pl.col("has_xp_continuous"))["source_id"].to_numpy(), seed=3)
    dust = root / "dust"
    M.write_tiny_combined19(dust)
    files = {ALLSTAR: allstar, SUBSET: root / "subset.fits"}
    tables = {"gaiadr3.gaia_source": gaia, **tmass}
    with M.MirrorServer(files=files, tables=tables, xp=xp) as server:
        yield {"server": server, "dust": dust, "allstar": allstar, "id0": id0, "hand": hand,
               "tmass": tmass}  # fmt: skip


def _sources(env, path=ALLSTAR, **kw) -> Sources:
    s = env["server"]
    return Sources(allstar_url=s.url + path, gaia_tap_url=s.tap_url,
                   gaia_datalink_url=s.datalink_url, dust_dir=str(env["dust"]), **kw)  # fmt: skip


def _build(env, tmp, *, data="data", out="out", **kw):
    kw.setdefault("sources", _sources(env))
    return build("dr17", tmp / data, tmp / out, settings=SETTINGS, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    return _build(env, tmp)


@pytest.fixture(autouse=True)
def _clear_faults(env):
    yield
    env["server"].faults.clear()


def _same_bytes(a, b):
    return all(sha256_file(a / n) == sha256_file(b / n) for n in OUTPUTS)


def test_counts_and_manifest(reference):
    m = read_json(reference / "manifest.json")
    c = m["row_counts"]
    assert c["allstar_rows"] == N_ROWS
    assert c["removed_duplicate_apogee_id"] == 4 and c["extratarg_duplicate_flagged"] == 4
    assert c["removed_duplicate_gaia_source_id"] == 1
    assert c["deduplicated_rows"] == N_ROWS - 5
    assert c["stars"] + c["removed_no_good_xp_or_labels"] == c["deduplicated_rows"]
    assert c["stars"] == c["rows_xp_good"] + c["rows_apogee_only_good"]
    assert sum(c[f"split_{k}"] for k in ("train", "validation", "test")) == c["stars"]
    assert [r["cut"] for r in m["cuts"]][:2] == ["xp_complete", "xp_percentile"]
    assert m["cuts"][-1]["remaining"] == c["rows_xp_good"]
    assert {i["name"] for i in m["inputs"]} == {"allStar", "gaia_source", "tmass",
                                                 "xp_continuous", "combined19"}  # fmt: skip
    assert all(len(i["sha256"]) == 64 and i["size"] > 0 for i in m["inputs"])
    assert m["settings"]["chunk_rows"] == 64 and m["seed"]["split"] == 0
    assert m["vocabulary"] == list(VOCABULARY.names) and len(m["vocabulary"]) == 118
    assert set(m["packages"]) >= {"numpy", "pyarrow", "h5py", "mwdust", "python"}
    stars = read_table(reference)
    assert stars.height == c["stars"] == m["outputs"]["stars.parquet"]["rows"]
    assert stars["apogee_id"].n_unique() == stars.height
    meta = pq.ParquetFile(reference / "stars.parquet").metadata
    assert meta.row_group(0).num_rows == 100
    assert verify(reference).keys() == {"stars.parquet", "tokens.h5"}


def test_formulas_on_hand_computed_rows(reference, env):
    stars = read_table(reference)
    row = stars.filter(pl.col("gaia_source_id") == env["id0"]).row(0, named=True)
    assert row["jh"] == pytest.approx(0.5, abs=1e-6)
    assert row["jk"] == pytest.approx(0.7, abs=1e-6)
    assert row["jh_err"] == pytest.approx(0.05, rel=1e-6)
    bp_err, rp_err = np.hypot(0.001, 0.0027901700), np.hypot(0.002, 0.0037793818)
    assert row["bprp"] == pytest.approx(0.8, abs=1e-6)
    assert row["bprp_err"] == pytest.approx(np.hypot(bp_err, rp_err), rel=1e-5)
    # 2-parameter solution: no Lindegren term; LB24's term is 0 at G = 12
    assert row["parallax_corrected"] == pytest.approx(2.0)
    assert row["g_fakemag"] == pytest.approx(2.0 * 10**2.4)
    assert row["g_fakemag_err"] == pytest.approx(0.025 * 2.0 * 10**2.4)
    assert row["teff"] == pytest.approx(4800.0) and row["logg"] == pytest.approx(2.5)
    # every row: G-normalization, relevancy masking, label flags
    flux = 10 ** ((25.6873668671 - stars["phot_g_mean_mag"].to_numpy()) / 2.5)
    coef = np.stack(stars["bp_coefficients"].to_numpy())
    nrel = stars["bp_n_relevant_bases"].to_numpy()
    good = stars["xp_good"].to_numpy()
    assert good.sum() > 20
    for i in (0, 5, 30):
        expect = np.where(good & (i < nrel), coef[:, i] / flux, np.nan).astype(np.float32)
        np.testing.assert_allclose(stars[f"bp{i}"].to_numpy(), expect, rtol=1e-6)
    flagged = (stars["aspcapflag"].to_numpy() & (1 << 19 | 1 << 23)) != 0
    flagged |= stars["starflag"].to_numpy() != 0
    assert np.isnan(stars["teff"].to_numpy()[flagged]).all()
    np.testing.assert_allclose(stars["teff"].to_numpy()[~flagged],
                               stars["apogee_teff"].to_numpy()[~flagged])  # fmt: skip
    assert np.isfinite(stars["logebv"].to_numpy()).sum() > 0


def test_tokens_match_table_rows(reference):
    stars = read_table(reference)
    tokens, values, errors, vocab, extra = read_tokens_h5(reference / "tokens.h5")
    assert vocab == VOCABULARY and tokens.shape == (stars.height, 118)
    assert extra["apogee_id"].tolist() == stars["apogee_id"].to_list()
    assert extra["split"].tolist() == stars["split"].to_list()
    table = np.stack([stars[k].to_numpy().astype(np.float32) for k in VOCABULARY.names], axis=1)
    present = np.isfinite(table)
    assert ((tokens != 0) == present).all()
    np.testing.assert_array_equal(values[present], table[present])
    assert (values[~present] == 0).all() and (errors[~present] == 0).all()


def test_split_is_stable_and_seeded(reference, env, tmp_path):
    stars = read_table(reference, columns=["apogee_id", "split"])
    expect = split_ids(stars["apogee_id"].to_numpy(), seed=0,
                       fractions=dict(SETTINGS.split_fractions))  # fmt: skip
    assert stars["split"].to_list() == expect.tolist()
    sub = read_table(
        _build(env, tmp_path, sources=_sources(env, SUBSET)), columns=["apogee_id", "split"]
    )
    both = sub.join(stars, on="apogee_id", suffix="_full")
    assert both.height > 50 and (both["split"] == both["split_full"]).all()


def test_rebuild_is_byte_identical_online_and_offline(reference, env, tmp_path):
    out = _build(env, tmp_path)
    assert _same_bytes(reference, out)
    before = len(env["server"].requests)
    shutil.rmtree(tmp_path / "out")
    for stage in ("apogee", "derived", "select", "extinction"):  # recomputed from cached inputs
        for suffix in (".parquet", ".json"):
            (tmp_path / "data" / "stages" / "dr17" / (stage + suffix)).unlink()
    out = _build(env, tmp_path, offline=True)
    assert len(env["server"].requests) == before  # offline: no request at all
    assert _same_bytes(reference, out)
    (tmp_path / "data" / "stages" / "dr17" / "tmass.json").unlink()  # 2MASS not cached
    with pytest.raises(OfflineMissing, match="tmass stage"):
        _build(env, tmp_path, out="out2", offline=True)
    assert len(env["server"].requests) == before


def test_offline_fails_fast_listing_missing(env, tmp_path):
    before = len(env["server"].requests)
    with pytest.raises(OfflineMissing) as err:
        _build(env, tmp_path, offline=True)
    msg = str(err.value)
    assert "allStar" in msg and "gaia_source" in msg and "xp" in msg and "\n" not in msg
    assert "tmass stage" in msg
    assert len(env["server"].requests) == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_resume_after_failure_mid_download(reference, env, tmp_path):
    server = env["server"]
    server.inject(ALLSTAR, kind="truncate", keep=0.4, times=2)
    with pytest.raises(RemoteError, match="allStar"):
        _build(env, tmp_path)
    part = next((tmp_path / "data" / "raw" / "dr17").glob("*.part"))
    assert 0 < part.stat().st_size < env["allstar"].stat().st_size
    n = len(server.requests)
    out = _build(env, tmp_path)
    ranged = [r for r in server.requests[n:] if r["path"] == ALLSTAR]
    assert ranged and "Range" in ranged[0]["headers"]
    assert _same_bytes(reference, out)


def test_resume_after_failure_mid_stage(reference, env, tmp_path):
    server = env["server"]
    server.inject("/data-server/data", status=500, skip=1, times=2)  # the 2nd block fails twice
    with pytest.raises(RemoteError, match="xp_continuous"):
        _build(env, tmp_path)
    parts = tmp_path / "data" / "stages" / "dr17" / "xp.parts"
    assert len(list(parts.glob("*.parquet"))) == 1
    assert not (tmp_path / "out" / "dr17").exists()
    n_gaia = server.count("/tap-server")
    n_dl = server.count("/data-server")
    out = _build(env, tmp_path)
    assert server.count("/tap-server") == n_gaia  # gaia stage finished: not queried again
    n_blocks = -(-(N_ROWS - 5) // SETTINGS.chunk_rows)
    assert server.count("/data-server") - n_dl == n_blocks - 1
    assert _same_bytes(reference, out)


def test_corrupted_cache_and_truncated_transfer_are_refetched(reference, env, tmp_path):
    size, digest = env["allstar"].stat().st_size, sha256_file(env["allstar"])
    src = _sources(env, allstar_size=size, allstar_sha256=digest)
    server = env["server"]
    server.inject(ALLSTAR, kind="truncate", keep=0.5, times=1)  # recovered by a retry
    first = _build(env, tmp_path, sources=src)
    raw = next(p for p in (tmp_path / "data" / "raw" / "dr17").iterdir() if p.suffix == ".fits")
    blob = bytearray(raw.read_bytes())
    blob[5000:5010] = b"corrupted!"
    raw.write_bytes(bytes(blob))
    n = server.count(ALLSTAR)
    second = _build(env, tmp_path, out="out2", sources=src)
    assert server.count(ALLSTAR) > n and sha256_file(raw) == digest
    assert _same_bytes(reference, first) and _same_bytes(reference, second)


def test_archive_error_is_clear_and_writes_nothing(env, tmp_path):
    with M.MirrorServer(files={ALLSTAR: env["allstar"]}) as bare:  # no gaia_source table
        src = Sources(allstar_url=bare.url + ALLSTAR, gaia_tap_url=bare.tap_url,
                      gaia_datalink_url=bare.datalink_url, dust_dir=str(env["dust"]))  # fmt: skip
        with pytest.raises(RemoteError) as err:
            _build(env, tmp_path, sources=src)
    msg = str(err.value)
    assert "gaia_source" in msg and "\n" not in msg
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_verify_detects_tampering(reference, tmp_path):
    copy = tmp_path / "dr17"
    shutil.copytree(reference, copy)
    with open(copy / "tokens.h5", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(VerifyError, match="tokens.h5 sha256"):
        verify(copy)
    (copy / "stars.parquet").unlink()
    with pytest.raises(VerifyError, match="stars.parquet missing"):
        verify(copy)


def test_stardiff_reads_either_output(reference):
    data = pytest.importorskip("stardiff.tables")
    kinds = list(VOCABULARY.names)
    a = data.read_table(reference / "stars.parquet", kinds, split_column="split")
    b = data.read_table(reference / "tokens.h5", kinds, split_column="split")
    assert a.values.shape == b.values.shape == (read_table(reference).height, 118)
    np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
    finite = np.isfinite(a.values)
    np.testing.assert_allclose(a.values[finite], b.values[finite], rtol=1e-6)
    assert a.split.tolist() == b.split.tolist()


def _star(stars, source_id) -> dict:
    return stars.filter(pl.col("gaia_source_id") == source_id).row(0, named=True)


def test_2mass_fills_in_where_apogee_has_the_sentinel(reference, env):
    stars = read_table(reference)
    catalogue = env["tmass"]["gaiadr1.tmass_original_valid"]
    best = env["tmass"]["gaiadr3.tmass_psc_xsc_best_neighbour"]
    hand = env["hand"]
    r = _star(stars, hand[10])  # J, H from 2MASS; K from APOGEE
    name = best.filter(pl.col("source_id") == hand[10])["original_ext_source_id"][0]
    tm = catalogue.filter(pl.col("designation") == name).row(0, named=True)
    assert (r["tmass_designation"], r["ph_qual"], r["tmass_found"]) == (name, "AAA", True)
    assert (r["j_src"], r["h_src"], r["k_src"]) == ("tmass", "tmass", "apogee")
    assert r["j"] == pytest.approx(11.0) and r["j_err"] == pytest.approx(tm["j_msigcom"])
    assert r["h"] == pytest.approx(10.4) and r["k"] == pytest.approx(10.8)
    assert r["jh"] == pytest.approx(0.6, abs=1e-5) and r["jk"] == pytest.approx(0.2, abs=1e-5)
    assert np.isnan(r["apogee_j"]) and np.isnan(r["apogee_h_err"])
    r = _star(stars, hand[11])  # APOGEE J sentinel, 2MASS J an upper limit
    assert r["ph_qual"] == "UAA" and r["j_src"] == "" and r["h_src"] == "apogee"
    assert np.isnan(r["j"]) and np.isnan(r["tmass_j"]) and np.isnan(r["jh"])
    r = _star(stars, hand[12])  # no 2MASS neighbour
    assert r["tmass_designation"] is None and r["ph_qual"] is None and not r["tmass_found"]
    assert (r["j_src"], r["h_src"], r["k_src"]) == ("", "", "")
    assert np.isnan([r["j"], r["h"], r["k"], r["jh"], r["jk"]]).all()
    r = _star(stars, env["id0"])  # both have it: APOGEE's, as LB24
    assert r["j_src"] == "apogee" and r["j"] == pytest.approx(10.0)
    assert r["tmass_j"] == pytest.approx(9.99, abs=1e-5)


def _check_photometry(report: dict, n_rows: int, prefer: str) -> None:
    assert report["prefer"] == prefer
    for band, offset in zip("jhk", TMASS_OFFSET.values(), strict=True):
        b = report[band]
        assert b["median_diff"] == pytest.approx(offset, abs=1e-5), band
        assert b["n_both"] > 150 and b["max_abs_diff"] >= b["median_diff"]
        first, second = ("apogee", "tmass") if prefer == "apogee" else ("tmass", "apogee")
        assert b[f"used_{first}"] == b["n_both"] + b[f"n_{first}_only"]
        assert b[f"used_{second}"] == b[f"n_{second}_only"]
        assert b["used_apogee"] + b["used_tmass"] + b["used_none"] == n_rows
    assert report["j"]["n_tmass_only"] >= 1 and report["h"]["n_tmass_only"] >= 1
    assert report["j"]["used_none"] >= 2


def test_manifest_records_the_2mass_comparison(reference):
    m = read_json(reference / "manifest.json")
    c = m["row_counts"]
    _check_photometry(m["photometry"], c["deduplicated_rows"], "apogee")
    assert 0 < c["rows_tmass_found"] < c["deduplicated_rows"]
    assert m["settings"]["jhk_prefer"] == "apogee"


def test_preferring_2mass_reuses_the_cached_inputs_offline(reference, env, tmp_path):
    shutil.copytree(reference.parent.parent / "data", tmp_path / "data")
    before = len(env["server"].requests)
    settings = dataclasses.replace(SETTINGS, jhk_prefer="tmass")
    out = build("dr17", tmp_path / "data", tmp_path / "out", settings=settings, offline=True,
                sources=_sources(env), progress=False)  # fmt: skip
    assert len(env["server"].requests) == before
    m, ref = read_json(out / "manifest.json"), read_json(reference / "manifest.json")
    _check_photometry(m["photometry"], m["row_counts"]["deduplicated_rows"], "tmass")
    keys = ("n_both", "n_apogee_only", "n_tmass_only", "median_diff")
    for band in "jhk":  # the comparison does not depend on the preference
        got, want = m["photometry"][band], ref["photometry"][band]
        assert [got[k] for k in keys] == [want[k] for k in keys]
    r = _star(read_table(out), env["id0"])
    assert r["j_src"] == "tmass" and r["j"] == pytest.approx(9.99, abs=1e-5)
    assert r["jh"] == pytest.approx(0.51, abs=1e-5)
    with pytest.raises(BuildError, match="jhk_prefer"):
        dataclasses.replace(SETTINGS, jhk_prefer="gaia")


def test_the_paper_recipe_trains_on_the_built_table(reference, tmp_path):
    """recipes/xp_apogee.toml reads what `stardata build` writes (columns, split labels)."""
    import dataclasses
    from pathlib import Path

    from stardiff import fit
    from stardiff.recipe import load_recipe

    root = Path(__file__).resolve().parents[2]
    r = load_recipe(root / "recipes" / "xp_apogee.toml")
    tiny = dict(dim=16, n_heads=2, ff_dim=32, n_layers=1, head_width=16, head_layers=2, steps=10)
    for table in ("stars.parquet", "tokens.h5"):
        recipe = dataclasses.replace(
            r,
            data=dataclasses.replace(r.data, table=str(reference / table)),
            model=dataclasses.replace(r.model, **tiny),
            train=dataclasses.replace(r.train, epochs=1, device="cpu", bf16=False,
                                      batch_size=64, out=str(tmp_path / table)),
        )  # fmt: skip
        model = fit(recipe, progress=False, figures=False)
        assert len(model.columns) == 118 and "bprp" not in model.requestable
        info = model.meta["training"]
        assert info["train_rows"] > 0 and info["test_rows"] > 0  # the build's split labels
        draws = model.sample({"teff": 4800.0, "logebv": -2.0}, "logg", 50, seed=0)
        assert np.isfinite(draws).all()


def test_format_hats_writes_a_verified_hats_collection(reference, env, tmp_path):
    pytest.importorskip("lsdb")
    import lsdb
    import polars as pl

    shutil.copytree(reference.parent.parent / "data", tmp_path / "data")
    out = _build(env, tmp_path, offline=True, formats=["hats"])
    stars = pl.read_parquet(out / "stars.parquet")
    cat = lsdb.open_catalog(out / "stars_hats").compute()
    assert sorted(cat["gaia_source_id"].to_list()) == sorted(stars["gaia_source_id"].to_list())
    assert lsdb.open_catalog(out / "stars_hats").margin is not None  # crossmatch-ready
    plain = pl.scan_parquet(out / "stars_hats" / "stars" / "dataset" / "**" / "*.parquet")
    assert plain.select(pl.len()).collect().item() == stars.height  # plain Parquet readers too
    m = read_json(out / "manifest.json")
    assert m["outputs"]["stars_hats"]["rows"] == stars.height
    assert set(verify(out)) == {"stars.parquet", "tokens.h5", "stars_hats"}
    part = next((out / "stars_hats" / "stars" / "dataset").rglob("Npix=*.parquet"))
    part.write_bytes(part.read_bytes()[:-5])
    with pytest.raises(VerifyError, match="stars_hats has"):
        verify(out)
    for name in ("stars.parquet", "tokens.h5"):  # the other outputs do not change
        assert sha256_file(out / name) == sha256_file(reference / name)


def test_unknown_format_is_one_line(env, tmp_path):
    with pytest.raises(BuildError, match="unknown format.*'fits'"):
        _build(env, tmp_path, formats=["fits"])


def test_format_hats_without_the_extra_fails_before_any_stage(env, tmp_path, monkeypatch):
    import stardata.hats

    def missing():
        raise stardata.hats.HatsMissing("HATS catalogues need the optional packages (lsdb): ...")

    monkeypatch.setattr("stardata.release.runner.require_hats", missing)
    with pytest.raises(BuildError, match="--format hats: .*optional packages"):
        _build(env, tmp_path, formats=["hats"])
    assert not (tmp_path / "data" / "stages").exists()  # nothing was computed
