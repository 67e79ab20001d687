"""Named cuts and APOGEE deduplication."""

import numpy as np
import pytest

from stardata import cuts


def test_range_and_below_are_strict_and_fail_nan():
    c = cuts.in_range("g_range", [6.0, 6.1, 17.5, np.nan], 6.0, 17.5)
    assert c.keep.tolist() == [False, True, False, False] and c.failed == 3
    assert cuts.below("ruwe", [1.39, 1.4, np.nan], 1.4).keep.tolist() == [True, False, False]


def test_bits_unset():
    c = cuts.bits_unset("starflag_bright", np.array([0, 4, 8, 2, 16]), [2, 3])
    assert c.keep.tolist() == [True, False, False, True, True]


def test_xp_complete_zero_and_nan():
    c = np.ones((3, 4))
    c[1, 2] = 0.0
    c[2, 0] = np.nan
    assert cuts.xp_complete(c).keep.tolist() == [True, False, False]


def test_percentile_bounds_and_cut():
    rng = np.random.default_rng(1)
    norm = rng.normal(size=(1000, 3))
    norm[5, 1] = np.nan
    lo, hi = cuts.xp_percentile_bounds(norm, 0.2, 99.8)
    np.testing.assert_allclose(lo[0], np.percentile(norm[:, 0], 0.2))
    np.testing.assert_allclose(hi[1], np.nanpercentile(norm[:, 1], 99.8))
    cut = cuts.xp_within_bounds(norm, lo, hi)
    # min and max of each column are outside (strict); the NaN row fails
    assert not cut.keep[np.argmin(norm[:, 0])] and not cut.keep[5]
    assert 980 <= cut.keep.sum() <= 995  # ~3 rows cut per tail per column
    lo2, _ = cuts.xp_percentile_bounds(np.full((3, 2), np.nan))
    assert np.isnan(lo2).all()


def test_sequential_counts():
    a = cuts.Cut("a", np.array([True, False, False, True]))
    b = cuts.Cut("b", np.array([False, False, True, True]))
    out = cuts.sequential_counts([a, b])
    assert out == [
        {"cut": "a", "failed": 2, "removed": 2, "remaining": 2},
        {"cut": "b", "failed": 2, "removed": 1, "remaining": 1},
    ]
    with pytest.raises(ValueError, match="rows"):
        cuts.sequential_counts([a, cuts.Cut("c", np.ones(2, bool))])


def test_apogee_only_good():
    c = cuts.apogee_only_good([True, False, False, False], [0, 0, 1, 0], [0, 0, 0, 4])
    assert c.keep.tolist() == [False, True, False, False]


def test_deduplicate_extratarg_then_snr_then_gaia():
    ids = np.array(["2M1 ", "2M1", "2M1", "2M2", "2M3", "2M4", "2M4"])
    snr = np.array([50.0, 200.0, 80.0, 10.0, 30.0, np.nan, 5.0])
    extratarg = np.array([16, 16, 0, 0, 0, 0, 16])
    gaia = np.array([11, 11, 11, 22, 22, 0, 0])
    d = cuts.deduplicate(ids, snr, extratarg, gaia)
    # 2M1: the row without the duplicate bit wins despite lower SNR; 2M4: bit beats NaN SNR
    assert d.keep.tolist() == [False, False, True, False, True, True, False]
    assert d.removed_apogee_id == 3
    assert d.removed_gaia_source_id == 1  # 2M2 and 2M3 share Gaia 22; 2M3 has higher SNR
    assert d.flagged_extratarg == 3 and d.flagged_kept == 0


def test_deduplicate_ties_take_first_row():
    d = cuts.deduplicate(["a", "a", "b"], [1.0, 1.0, 1.0], [0, 0, 0])
    assert d.keep.tolist() == [True, False, True]
