"""E(B-V) with the real mwdust.Combined19 on a tiny real-layout map."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from stardata.sources.extinction import (
    LOG_EBV_FLOOR,
    _evaluate,
    ebv_combined19,
    load_combined19,
)
from stardata.testing import COMBINED19_DISTMODS

# (l, b) inside nside-1 pixels of the tiny map (amplitude a: E(B-V) = a (1 - exp(-d / 1.5 kpc)))
IN_DUSTY = (90.0, 0.0)  # pixel 5, a = 1.5
IN_CLEAR = (105.0, 55.0)  # pixel 1, a = 0
IN_THICK = (195.0, 55.0)  # pixel 2, a = 30
IN_SPLIT = (55.0, 55.0)  # pixel 0, refined: nside-2 child 3, a = 0.3 * 1.3


@pytest.fixture(scope="module")
def dust_map(dust_dir):
    return load_combined19(dust_dir, allow_download=False)


def _expected_ebv(a: float, dist_kpc):
    grid = a * (1.0 - np.exp(-(10.0 ** ((COMBINED19_DISTMODS - 10.0) / 5.0)) / 1.5))
    return np.interp(5.0 * np.log10(dist_kpc) + 10.0, COMBINED19_DISTMODS, grid)


def test_real_combined19_reads_the_tiny_map(dust_map):
    assert type(dust_map).__name__ == "Combined19"
    ebv = dust_map(
        np.array([IN_DUSTY[0], IN_SPLIT[0]]),
        np.array([IN_DUSTY[1], IN_SPLIT[1]]),
        np.array([2.0, 2.0]),
    )
    np.testing.assert_allclose(ebv, [_expected_ebv(1.5, 2.0), _expected_ebv(0.39, 2.0)])


def test_grouped_evaluation_equals_mwdust_element_by_element(dust_map):
    rng = np.random.default_rng(0)
    glon, glat = rng.uniform(0, 360, 60), np.degrees(np.arcsin(rng.uniform(-1, 1, 60)))
    dist = rng.uniform(0.05, 60.0, (60, 7))
    fast = _evaluate(dust_map, glon, glat, dist)
    slow = dust_map(np.repeat(glon, 7), np.repeat(glat, 7), dist.ravel()).reshape(60, 7)
    np.testing.assert_array_equal(fast, slow)


def test_hand_computed_stars(dust_dir, dust_map):
    l, b = np.array([IN_DUSTY, IN_CLEAR, IN_THICK, IN_THICK, IN_DUSTY, IN_DUSTY]).T
    parallax = np.array([0.5, 0.5, 0.5, 10.0, -1.0, np.nan])
    error = np.array([1e-7, 0.1, 1e-7, 1e-7, 1e-9, 0.1])
    logebv, err = ebv_combined19(l, b, parallax, error, n_draws=200, dust_dir=dust_dir)
    assert logebv[0] == pytest.approx(np.log(_expected_ebv(1.5, 2.0)), abs=1e-6)
    assert err[0] < 1e-5
    assert (logebv[1], err[1]) == (LOG_EBV_FLOOR, 0.0)  # no dust: E(B-V) <= 0 -> e^-7
    assert np.isnan(logebv[2])  # E(B-V) = 22 > 10 at 2 kpc
    assert logebv[3] == pytest.approx(np.log(_expected_ebv(30.0, 0.1)), abs=1e-6)
    far = dust_map(IN_DUSTY[0], IN_DUSTY[1], 99.0)[0]  # parallax <= 0 -> 99 kpc
    assert logebv[4] == pytest.approx(np.log(far), abs=1e-9)
    assert np.isnan(logebv[5]) and np.isnan(err[5])


@pytest.mark.parametrize("rule", ["drop", "far"])
def test_monte_carlo_median_and_mad_against_a_direct_computation(dust_map, rule):
    """LB24 ("drop"): draws <= 0 are left out; "far": they are put at 99 kpc."""
    l, b = np.array([IN_DUSTY, IN_SPLIT]).T
    parallax, error = np.array([0.4, 1.0]), np.array([0.3, 0.3])
    logebv, err = ebv_combined19(
        l, b, parallax, error, n_draws=3000, seed=11, dust_map=dust_map, nonpositive=rule
    )
    draws = parallax[:, None] + error[:, None] * np.random.default_rng(11).standard_normal(
        (2, 3000)
    )
    assert (draws <= 0).sum(axis=1)[0] > 100  # the rule matters for star 0
    dist = np.where(draws > 0, 1.0 / np.where(draws > 0, draws, 1.0), 99.0)
    ebv = dust_map(np.repeat(l, 3000), np.repeat(b, 3000), dist.ravel()).reshape(2, 3000)
    ln = np.log(np.clip(ebv, np.exp(-7), None))
    if rule == "drop":
        ln = np.where(draws > 0, ln, np.nan)
    median = np.nanmedian(ln, axis=1)
    mad = 1.4826 * np.nanmedian(np.abs(ln - median[:, None]), axis=1)
    np.testing.assert_allclose(logebv, median, rtol=1e-12)
    np.testing.assert_allclose(err, mad, rtol=1e-12)
    assert (err > 0.05).all()


def test_lb24_star_with_nonpositive_parallax_is_far(dust_map):
    """LB24: the star's own (archive) parallax <= 0 puts every draw at 99 kpc."""
    l, b = np.array([IN_DUSTY, IN_DUSTY]).T
    corrected, error = np.array([0.3, 0.3]), np.array([0.2, 0.2])
    own = np.array([-0.01, 0.3])  # before the zero-point correction
    logebv, err = ebv_combined19(
        l, b, corrected, error, n_draws=500, dust_map=dust_map, star_parallax=own
    )
    far = dust_map(IN_DUSTY[0], IN_DUSTY[1], 99.0)[0]
    assert logebv[0] == pytest.approx(np.log(far), abs=1e-12) and err[0] == 0.0
    assert logebv[1] < np.log(far) - 0.01  # its draws <= 0 are dropped, not put far
    with pytest.raises(ValueError, match="nonpositive must be"):
        ebv_combined19(l, b, corrected, error, dust_map=dust_map, nonpositive="keep")


def test_seeded_deterministic_and_chunk_independent(dust_map):
    rng = np.random.default_rng(3)
    l, b = rng.uniform(0, 360, 25), rng.uniform(-60, 60, 25)
    plx, err = rng.uniform(0.05, 2, 25), rng.uniform(0.01, 0.3, 25)
    plx[4] = np.nan
    kw = dict(n_draws=300, dust_map=dust_map)
    one = ebv_combined19(l, b, plx, err, seed=5, chunk=4096, **kw)
    again = ebv_combined19(l, b, plx, err, seed=5, chunk=3, **kw)
    other = ebv_combined19(l, b, plx, err, seed=6, **kw)
    np.testing.assert_array_equal(one[0], again[0])
    np.testing.assert_array_equal(one[1], again[1])
    assert not np.allclose(one[1], other[1], equal_nan=True)
    masked = ebv_combined19(l, b, plx, err, seed=5, good_astrometry=np.arange(25) != 7, **kw)
    assert np.isnan(masked[0][7]) and masked[0][8] == one[0][8]


def test_dust_dir_is_set_before_mwdust_is_imported(dust_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DUST_DIR"}
    env["HOME"] = str(tmp_path)  # the default ~/.mwdust must not be used
    code = (
        "import os, sys\n"
        "from stardata.sources.extinction import ebv_combined19\n"
        "assert 'mwdust' not in sys.modules\n"
        f"out = ebv_combined19([90.0], [0.0], [0.5], [1e-7], dust_dir={str(dust_dir)!r})\n"
        "import mwdust.util.download as d\n"
        "print(d.dust_dir, os.environ['DUST_DIR'], round(float(out[0][0]), 6))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    used, environ, value = result.stdout.split()
    assert used == environ == str(dust_dir.resolve())
    assert float(value) == pytest.approx(np.log(_expected_ebv(1.5, 2.0)), abs=1e-6)
    assert not (tmp_path / ".mwdust").exists()
