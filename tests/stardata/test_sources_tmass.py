"""2MASS through Gaia's best-neighbour table, and the APOGEE vs 2MASS comparison/fallback."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from stardata.sources.tmass import (
    TMASS_COLUMNS,
    choose_band,
    combine_tmass,
    compare_jhk,
    query_tmass,
    usable_tmass,
)
from stardata.testing import synthetic_tmass

IDS = np.arange(1, 41, dtype=np.int64) * 1_000_000_007


def test_query_joins_best_neighbour_to_the_2mass_catalogue(mirror, tmp_path):
    tables = synthetic_tmass(IDS[:35], seed=4)
    mirror.tables.update(tables)
    got = query_tmass(IDS, tmp_path, tap_url=mirror.tap_url, chunk_size=16, progress=False)
    assert got.columns == list(TMASS_COLUMNS)
    assert got.height == 35 and got["source_id"].is_sorted()
    best = tables["gaiadr3.tmass_psc_xsc_best_neighbour"]
    catalogue = tables["gaiadr1.tmass_original_valid"]
    truth = best.join(catalogue, left_on="original_ext_source_id", right_on="designation")
    truth = truth.sort("source_id")
    assert got["tmass_designation"].to_list() == truth["original_ext_source_id"].to_list()
    for column in ("j_m", "h_msigcom", "ks_m", "ph_qual"):
        assert got[column].to_list() == truth[column].to_list(), column
    assert mirror.count("/tap-server/tap/async", "POST") == 3
    query = mirror.requests[0]["body"]
    assert b"gaiadr3.tmass_psc_xsc_best_neighbour AS x ON x.source_id = u.source_id" in query
    assert b"gaiadr1.tmass_original_valid AS t ON t.designation = x.original_ext_source_id" in query


def _tables():
    apogee = {
        "GAIAEDR3_SOURCE_ID": np.array([3, 1, 2, 4, 0]),
        "J": np.array([10.0, 99.999, 11.0, 99.999, 12.0], dtype=np.float32),
        "J_ERR": np.array([0.02, -1.0, 0.03, 0.04, 0.05], dtype=np.float32),
        "H": np.array([9.5, 9.0, 10.5, 99.999, 11.5], dtype=np.float32),
        "H_ERR": np.full(5, 0.02, dtype=np.float32),
        "K": np.array([9.0, 8.5, 10.0, 9.9, 11.0], dtype=np.float32),
        "K_ERR": np.full(5, 0.03, dtype=np.float32),
    }
    tmass = pl.DataFrame(
        {
            "source_id": [1, 2, 3],
            "tmass_designation": ["a", "b", "c"],
            "j_m": [9.7, 11.02, 10.01],
            "j_msigcom": [0.021, 0.031, 0.022],
            "h_m": [9.1, None, 9.48],
            "h_msigcom": [0.02, None, 0.02],
            "ks_m": [8.4, 10.05, 9.0],
            "ks_msigcom": [0.03, 0.03, 0.03],
            "ph_qual": ["AAA", "AUA", "AAA"],
        }
    )
    return apogee, tmass


def test_combine_prefers_apogee_and_falls_back_to_2mass():
    apogee, tmass = _tables()
    report = {}
    out = combine_tmass(apogee, tmass, report=report)
    assert out["source_id"].to_list() == [3, 1, 2, 4, 0]  # APOGEE row order kept
    np.testing.assert_allclose(out["j"].to_numpy(), [10.0, 9.7, 11.0, np.nan, 12.0], rtol=1e-6)
    np.testing.assert_allclose(
        out["j_err"].to_numpy(), [0.02, 0.021, 0.03, np.nan, 0.05], rtol=1e-6
    )
    assert out["j_src"].to_list() == ["apogee", "tmass", "apogee", "", "apogee"]
    np.testing.assert_allclose(out["h"].to_numpy(), [9.5, 9.0, 10.5, np.nan, 11.5], rtol=1e-6)
    assert out["tmass_designation"].to_list() == ["c", "a", "b", None, None]
    assert report["j"]["n_both"] == 2 and report["j"]["n_tmass_only"] == 1
    assert report["j"]["n_apogee_only"] == 1  # row with source_id 0 has no 2MASS link
    assert report["j"]["median_diff"] == pytest.approx((-0.01 - 0.02) / 2, abs=1e-6)
    assert report["h"]["n_both"] == 2 and report["h"]["n_apogee_only"] == 2
    assert report == compare_jhk(apogee, tmass)


def test_combine_can_prefer_2mass():
    apogee, tmass = _tables()
    out = combine_tmass(apogee, tmass, prefer="tmass")
    np.testing.assert_allclose(out["h"].to_numpy(), [9.48, 9.1, 10.5, np.nan, 11.5], rtol=1e-6)
    assert out["h_src"].to_list() == ["tmass", "tmass", "apogee", "", "apogee"]
    with pytest.raises(ValueError, match="prefer"):
        combine_tmass(apogee, tmass, prefer="gaia")


def test_2mass_upper_limits_are_not_used():
    apogee, tmass = _tables()
    tmass = tmass.with_columns(pl.Series("ph_qual", ["UAA", "AUA", "AAX"]))
    report = {}
    out = combine_tmass(apogee, tmass, report=report)
    # row 2 (source 1): APOGEE J is the sentinel and 2MASS J an upper limit -> no J
    assert np.isnan(out["j"][1]) and out["j_src"][1] == ""
    assert out["k"].to_list()[0] == pytest.approx(9.0) and out["k_src"][0] == "apogee"
    assert report["j"]["n_tmass_only"] == 0 and report["k"]["n_both"] == 2
    kept = combine_tmass(apogee, tmass, bad_ph_qual="")
    assert kept["j"][1] == pytest.approx(9.7) and kept["j_src"][1] == "tmass"


def test_usable_tmass_and_choose_band_on_arrays():
    mag, err = usable_tmass([10.0, 11.0, np.nan, 12.0], [0.02, np.nan, 0.1, 0.03],
                            ["AAA", "AAA", "AAA", None], 0)  # fmt: skip
    np.testing.assert_array_equal(np.isnan(mag), [False, True, True, False])  # no error: missing
    m, e, src = choose_band([np.nan, 9.0, np.nan], [np.nan, 0.1, np.nan], mag[:3], err[:3],
                            prefer="tmass")  # fmt: skip
    np.testing.assert_allclose(m, [10.0, 9.0, np.nan])
    assert src.tolist() == ["tmass", "apogee", ""]


def test_duplicate_2mass_rows_are_refused():
    apogee, tmass = _tables()
    with pytest.raises(ValueError, match="duplicate source_id"):
        combine_tmass(apogee, pl.concat([tmass, tmass.head(1)]))
