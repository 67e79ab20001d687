"""The synthetic stellar population and its exact conditionals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from stardiff.datasets.synthetic import (
    FIXED_COLUMNS,
    random_tasks,
    synthetic_stars,
    synthetic_stars_model,
)
from stardiff.metrics import gaussian_mixture_cdf, ks_uniform


@pytest.fixture(scope="module")
def small_model():
    return synthetic_stars_model(n_spectrum=4)


@pytest.fixture(scope="module")
def big_draw(small_model):
    """1.5 million complete rows of the 11-column model, with their population labels."""
    return small_model.sample(1_500_000, np.random.default_rng(12345))


def brute_force_conditional(model, row, request):
    """Independent reference: condition each component in physical units with explicit inverses."""
    r = model.column_index(request)
    g = np.flatnonzero(np.isfinite(row) & (np.arange(row.size) != r))
    if g.size == 0:
        return model.weights, model.means[:, r], np.sqrt(model.covs[:, r, r])
    logw, means, stds = [], [], []
    for w, mu, cov in zip(model.weights, model.means, model.covs, strict=True):
        s_gg = cov[np.ix_(g, g)]
        logw.append(np.log(w) + stats.multivariate_normal(mu[g], s_gg).logpdf(row[g]))
        gain = cov[r, g] @ np.linalg.inv(s_gg)
        means.append(mu[r] + gain @ (row[g] - mu[g]))
        stds.append(np.sqrt(cov[r, r] - gain @ cov[g, r]))
    logw = np.array(logw)
    w = np.exp(logw - logw.max())
    return w / w.sum(), np.array(means), np.array(stds)


def test_table_layout_and_physical_scales():
    df = synthetic_stars(2000, seed=3, n_spectrum=5, missing=0.0)
    assert df.columns == [*FIXED_COLUMNS, "s0", "s1", "s2", "s3", "s4"]
    assert all(dtype == pl.Float64 for dtype in df.dtypes)
    assert df.height == 2000
    teff, logg = df["teff"].to_numpy(), df["logg"].to_numpy()
    assert 4000 < np.median(teff) < 6000 and 200 < np.std(teff) < 1000
    assert 1.5 < np.median(logg) < 4.7
    assert not np.isnan(df.to_numpy()).any()


def test_paper_size_has_118_columns():
    model = synthetic_stars_model(n_spectrum=111)
    assert model.n_columns == 118
    # the first spectrum columns do not depend on how many there are
    small = synthetic_stars_model(n_spectrum=3)
    np.testing.assert_allclose(model.means[:, :10], small.means)
    np.testing.assert_allclose(model.covs[:, :10, :10], small.covs)


def test_missing_completely_at_random():
    values = synthetic_stars(4000, seed=1, n_spectrum=20, missing=0.1).to_numpy()
    miss = np.isnan(values)
    n = miss.size
    assert abs(miss.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n)
    # MCAR: missingness of teff does not depend on logg (which is observed)
    logg_obs = values[:, 1]
    dwarf, giant = logg_obs > 3.5, logg_obs < 3.5
    assert abs(miss[dwarf, 0].mean() - miss[giant, 0].mean()) < 0.04


def test_deterministic_by_seed():
    a = synthetic_stars(300, seed=7)
    b = synthetic_stars(300, seed=7)
    c = synthetic_stars(300, seed=8)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())  # NaN positions equal too
    assert not np.allclose(a.to_numpy(), c.to_numpy(), equal_nan=True)


def test_logg_given_teff_is_bimodal(small_model, big_draw):
    w, m, s = small_model.exact_conditional({"teff": 5000.0}, "logg")
    grid = np.linspace(1.0, 5.5, 901)
    pdf = np.sum(w * stats.norm.pdf(grid[:, None], m, s), axis=1)
    peaks = grid[1:-1][(pdf[1:-1] > pdf[:-2]) & (pdf[1:-1] > pdf[2:])]
    assert len(peaks) >= 2
    assert peaks.min() < 3.2 and peaks.max() > 4.2
    dip = pdf[np.argmin(np.abs(grid - 3.7))]
    assert dip < 0.2 * pdf.max()  # a clear gap between giants and dwarfs
    # and the draws agree: both branches well populated at teff ~ 5000 K
    values, _ = big_draw
    logg = values[np.abs(values[:, 0] - 5000.0) < 10.0, 1]
    assert 0.2 < np.mean(logg > 3.7) < 0.5
    assert 0.5 < np.mean(logg < 3.7) < 0.8


@pytest.mark.parametrize(
    ("given_bins", "target"),
    [
        ({"teff": (5000.0, 10.0)}, "logg"),
        ({"teff": (4800.0, 15.0), "m_h": (-0.2, 0.02)}, "logg"),
        ({"jh": (0.6, 0.005), "g_absmag": (1.0, 0.1)}, "teff"),
        ({"s0": (-30.0, 1.5), "jh": (0.6, 0.006)}, "m_h"),
    ],
)
def test_exact_conditional_matches_monte_carlo_bins(small_model, big_draw, given_bins, target):
    values, _ = big_draw
    sel = np.ones(values.shape[0], bool)
    given = {}
    for name, (centre, half) in given_bins.items():
        sel &= np.abs(values[:, small_model.column_index(name)] - centre) < half
        given[name] = centre
    draws = values[sel, small_model.column_index(target)]
    assert draws.size > 1500
    w, m, s = small_model.exact_conditional(given, target)
    mean = np.sum(w * m)
    std = np.sqrt(np.sum(w * (s**2 + m**2)) - mean**2)
    assert abs(draws.mean() - mean) < 4 * std / np.sqrt(draws.size) + 0.02 * std
    assert abs(draws.std() / std - 1) < 0.06
    ks = stats.kstest(draws, lambda x: gaussian_mixture_cdf(x[None, :], w, m, s)[0])
    assert ks.pvalue > 1e-3, ks


def test_batch_matches_independent_brute_force():
    model = synthetic_stars_model(n_spectrum=20)
    values, _ = model.sample(200, np.random.default_rng(0))
    _, request, given = random_tasks(values, 60, np.random.default_rng(1))
    w, m, s = model.exact_conditional_batch(given, request)
    for t in range(given.shape[0]):
        wb, mb, sb = brute_force_conditional(model, given[t], int(request[t]))
        np.testing.assert_allclose(w[t], wb, atol=1e-7)
        big = wb > 1e-6
        np.testing.assert_allclose(m[t][big], mb[big], rtol=1e-7, atol=1e-7 * model._scale[0])
        np.testing.assert_allclose(s[t][big], sb[big], rtol=1e-6)


def test_exact_conditional_is_calibrated_and_sharp_on_random_subsets():
    """PIT of the truth under the exact conditional is uniform, and the conditional variance
    equals the mean squared error of the conditional mean (a wrong mean would inflate it)."""
    model = synthetic_stars_model(n_spectrum=20)
    rng = np.random.default_rng(5)
    values, _ = model.sample(6000, rng)
    rows, request, given = random_tasks(values, 6000, rng)
    truth = values[rows, request]
    u = model.exact_cdf(given, request, truth)
    assert ks_uniform(u) < 1.63 / np.sqrt(u.size)  # p > 1% under the null
    w, m, s = model.exact_conditional_batch(given, request)
    mean = np.sum(w * m, axis=1)
    var = np.sum(w * (s**2 + m**2), axis=1) - mean**2
    ratio = np.mean((truth - mean) ** 2 / var)
    assert abs(ratio - 1) < 0.06


def test_mapping_row_and_request_value_ignored(small_model):
    row = np.full(small_model.n_columns, np.nan)
    row[0], row[2], row[1] = 4900.0, -0.1, 99.0  # logg given but it is the request
    w1, m1, s1 = small_model.exact_conditional(row, "logg")
    w2, m2, s2 = small_model.exact_conditional({"teff": 4900.0, "m_h": -0.1}, 1)
    np.testing.assert_allclose([w1, m1, s1], [w2, m2, s2])
    w0, m0, s0 = small_model.exact_conditional({}, "logg")  # nothing given: the marginal
    np.testing.assert_allclose(w0, small_model.weights)
    np.testing.assert_allclose(m0, small_model.means[:, 1])
    with pytest.raises(ValueError):
        small_model.exact_conditional({"nope": 1.0}, "logg")


def test_sample_exact_conditional_follows_exact_cdf(small_model):
    given = np.full((3, small_model.n_columns), np.nan)
    given[0, 0] = 5000.0
    given[1, [0, 3]] = [4700.0, 1.1]
    draws = small_model.sample_exact_conditional(given, "logg", 20000, np.random.default_rng(2))
    assert draws.shape == (3, 20000)
    for i in range(3):
        u = small_model.exact_cdf(given[i : i + 1], "logg", draws[i : i + 1])[0]
        assert ks_uniform(u) < 0.015
    given[2, :3] = [4700.0, 2.5, -0.2]
    exact = small_model.sample_exact_conditional(given, "bprp", 20000, 3)
    wide = small_model.sample_exact_conditional(given, "bprp", 20000, 3, std_factor=2.0)
    np.testing.assert_allclose(np.std(wide[2]) / np.std(exact[2]), 2.0, rtol=0.05)
