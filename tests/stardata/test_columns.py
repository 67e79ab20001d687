"""Derived-column formulas on hand-computed rows."""

import numpy as np
import pytest
from zero_point import zpt

from stardata import columns as C


def test_g_flux_zero_point_and_scale():
    assert C.g_flux(25.6873668671) == pytest.approx(1.0)
    assert C.g_flux(15.6873668671) == pytest.approx(1e4)
    assert np.isnan(C.g_flux(np.nan))


def test_normalize_xp_relevancy_zero_and_scale():
    g = np.array([15.6873668671, 20.6873668671])  # flux 1e4 and 1e2
    coeffs = np.array([[2e4, 0.0, 3e4, 4e4], [1.0, 2.0, 3.0, 4.0]])
    errors = np.full_like(coeffs, 100.0)
    norm, err = C.normalize_xp(coeffs, errors, g, np.array([3, 4]))
    np.testing.assert_allclose(norm[0], [2.0, np.nan, 3.0, np.nan])  # 0 → NaN; index 3 ≥ 3
    np.testing.assert_allclose(err[0], [0.01, np.nan, 0.01, np.nan])
    np.testing.assert_allclose(norm[1], [0.01, 0.02, 0.03, 0.04])
    unmasked, _ = C.normalize_xp(coeffs, errors, g, np.array([3, 4]), mask_irrelevant=False)
    assert unmasked[0, 3] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="equal shape"):
        C.normalize_xp(coeffs, errors[:, :2], g)


def test_relevancy_mask_missing_counts_are_empty():
    m = C.relevancy_mask(np.array([2, 0, -1]), 3)
    assert m.tolist() == [[True, True, False], [False] * 3, [False] * 3]


def test_bprp_error_formula():
    c, e = C.bprp(12.0, 11.2, 1085.7, 542.85)
    bp_err = np.hypot(0.001, 0.0027901700)
    rp_err = np.hypot(0.002, 0.0037793818)
    assert c == pytest.approx(0.8)
    assert e == pytest.approx(np.hypot(bp_err, rp_err))


def test_tmass_sentinel_and_colours():
    jh, jh_err, jk, jk_err = C.tmass_colours(
        np.array([10.0, 99.999]), np.array([0.03, 0.5]),
        np.array([9.5, 9.0]), np.array([0.04, 0.02]),
        np.array([99.999, 8.8]), np.array([0.1, 0.02]),
    )  # fmt: skip
    assert jh[0] == pytest.approx(0.5) and jh_err[0] == pytest.approx(0.05)
    assert np.isnan(jk[0]) and np.isnan(jk_err[0])  # K sentinel
    assert np.isnan(jh[1]) and np.isnan(jh_err[1])  # J sentinel


def test_parallax_zero_point_matches_lindegren_plus_lb24_term():
    zpt.load_tables()
    g = np.array([12.0, 15.0, 16.0, 19.0])
    nu = np.array([1.5, 1.55, np.nan, 1.5])
    pc = np.array([np.nan, np.nan, 1.5, np.nan])
    lat = np.array([10.0, -40.0, 70.0, 5.0])
    solved = np.array([31, 31, 95, 3])
    zp = C.parallax_zero_point(g, nu, pc, lat, solved)
    ref = zpt.get_zpt(g[:3], nu[:3], pc[:3], lat[:3], solved[:3], _warnings=False)
    extra = 0.005 * np.clip(g - 13.0, 0.0, 4.0)
    assert np.isfinite(ref).all()  # the unused colour of each solution may be NaN
    np.testing.assert_allclose(zp[:3], ref + extra[:3])
    assert zp[3] == pytest.approx(0.02)  # 2-p solution: no Lindegren term, LB24 term only


def test_corrected_parallax_subtracts_lindegren_and_lb24_terms():
    # LB24: zp = zpt.get_zpt(...) + 0.005 clip(G - 13, 0, 4); parallax_corrected = parallax - zp
    zpt.load_tables()
    g, nu, lat = np.array([15.0, 12.0]), np.array([1.55, 1.5]), np.array([-40.0, 10.0])
    solved, plx = np.array([31, 31]), np.array([0.5, 1.0])
    zp = C.parallax_zero_point(g, nu, np.full(2, np.nan), lat, solved)
    got = C.corrected_parallax(plx, np.full(2, 0.05), np.ones(2), zp)
    lindegren = zpt.get_zpt(g, nu, np.full(2, 1.5), lat, solved)
    np.testing.assert_allclose(got, plx - lindegren - np.array([0.01, 0.0]), rtol=1e-12)


def test_corrected_parallax_thresholds_inclusive_like_lb24():
    plx = C.corrected_parallax(
        np.array([1.0, 1.0, 1.0, 1.0, 1.0]),
        np.array([0.1, 0.1001, 0.05, 0.05, np.nan]),
        np.array([1.4, 1.0, 1.41, np.nan, 1.0]),
        np.array([-0.02, 0.0, 0.0, 0.0, 0.0]),
    )
    assert plx[0] == pytest.approx(1.02)
    assert np.isnan(plx[1:]).all()


def test_g_fakemag_and_error():
    fm, fm_err = C.g_fakemag(np.array([10.0, 10.0, 5.0]), np.array([1.0, -0.5, np.nan]), 0.1)
    assert fm[0] == pytest.approx(100.0) and fm_err[0] == pytest.approx(10.0)
    assert fm[1] == pytest.approx(-50.0) and fm_err[1] == pytest.approx(10.0)
    assert np.isnan(fm[2]) and np.isnan(fm_err[2])
    # 10^(0.2 M_G + 2) identity: M_G = G + 5 log10(plx/100)
    m_g = 10.0 + 5 * np.log10(1.0 / 100.0)
    assert fm[0] == pytest.approx(10 ** (0.2 * m_g + 2))


def test_apogee_labels_flagged_to_nan():
    values = np.array([[4800.0, 2.5], [5000.0, 3.0], [5200.0, 4.0], [6000.0, 4.2]])
    errors = np.ones_like(values)
    aspcap = np.array([0, 1 << 19, 1 << 23 | 1 << 2, 1 << 5], dtype=np.int64)
    star = np.array([0, 0, 0, 0])
    v, e, bad = C.apogee_labels(values, errors, aspcap, star)
    assert bad.tolist() == [False, True, True, False]
    assert np.isnan(v[1]).all() and np.isnan(e[2]).all() and v[3, 0] == 6000.0
    _, _, bad2 = C.apogee_labels(values, errors, np.zeros(4, int), np.array([0, 0, 4, 0]))
    assert bad2.tolist() == [False, False, True, False]


def test_one_missing_magnitude_rule():
    mags = np.array([99.999, 99.0, 98.99, np.nan, np.inf, 12.3], dtype=np.float32)
    assert C.missing_magnitude(mags).tolist() == [True, True, False, True, True, False]
    assert C.missing_magnitude(np.float64(99.999)) and not C.missing_magnitude(9.99)
    m, e = C.clean_tmass(mags, np.full(6, 0.02))
    assert np.isnan(m[:2]).all() and np.isnan(e[:2]).all() and m[2] == np.float32(98.99)


def test_relevancy_lb24_coefficients_52_to_54_follow_51():
    n = np.array([52, 53, 51, 55, 0])
    plain = C.relevancy_mask(n)
    lb24 = C.relevancy_mask(n, propagate_from=C.LB24_RELEVANCY_FROM)
    assert plain[0, :52].all() and not plain[0, 52:].any()
    assert lb24[0].all() and lb24[1].all() and lb24[3].all()  # 51 relevant -> 52-54 too
    assert not lb24[2, 51:].any() and lb24[2, :51].all()  # 51 not relevant -> neither are 52-54
    assert not lb24[4].any()
    np.testing.assert_array_equal(lb24[:, :52], plain[:, :52])
