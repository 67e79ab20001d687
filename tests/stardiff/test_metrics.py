"""Sample-based metrics against closed forms, and the calibration check on an oracle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from stardiff.datasets.synthetic import random_tasks, synthetic_stars_model
from stardiff.metrics import (
    coverage,
    crps_gaussian,
    crps_samples,
    gaussian_mixture_cdf,
    ks_uniform,
    median_bias_scatter,
    pit,
    summarize_column,
    wasserstein_1d,
    wasserstein_to_gaussian_mixture,
)

# KS distance of n uniform PIT values exceeds 1.95 / sqrt(n) with probability ~0.1%.
KS_NULL_999 = 1.95


def ks_threshold(n: int, n_samples: int) -> float:
    """~99.9% null quantile of the KS distance of n PITs, each from n_samples draws.

    With S draws the PIT of a continuous law is uniform on {0, 1/S, ..., 1}: the
    discreteness adds up to 1/(S+1) to the distance from U(0, 1).
    """
    return KS_NULL_999 / np.sqrt(n) + 1.0 / (n_samples + 1)


def gaussian_crps_by_quadrature(mu: float, sigma: float, y: float) -> float:
    """CRPS = int (F(x) - 1{x >= y})^2 dx, numerically."""
    left = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -np.inf, y)[0]
    right = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, np.inf)[0]
    return left + right


@pytest.mark.parametrize(("mu", "sigma", "y"), [(0.0, 1.0, 0.0), (1.0, 2.0, -3.0), (5.0, 0.1, 5.3)])
def test_gaussian_closed_form_matches_definition(mu, sigma, y):
    np.testing.assert_allclose(
        crps_gaussian(mu, sigma, y), gaussian_crps_by_quadrature(mu, sigma, y), rtol=1e-6
    )


def test_crps_samples_matches_gaussian_closed_form():
    rng = np.random.default_rng(0)
    n, s = 40, 20_000
    mu, sigma = rng.normal(0, 3, n), rng.uniform(0.5, 3, n)
    truth = mu + sigma * rng.normal(0, 1.5, n)
    samples = mu[:, None] + sigma[:, None] * rng.standard_normal((n, s))
    got, want = crps_samples(samples, truth), crps_gaussian(mu, sigma, truth)
    assert np.all(np.abs(got - want) < 0.03 * sigma)
    assert abs(np.mean((got - want) / sigma)) < 0.005


def test_crps_sorting_estimator_equals_pairwise_definition():
    rng = np.random.default_rng(1)
    samples, truth = rng.gamma(2.0, size=(5, 37)), rng.normal(2, 1, 5)
    pairwise = np.mean(np.abs(samples[:, :, None] - samples[:, None, :]), axis=(1, 2))
    want = np.mean(np.abs(samples - truth[:, None]), axis=1) - 0.5 * pairwise
    np.testing.assert_allclose(crps_samples(samples, truth), want, rtol=1e-12, atol=1e-12)
    # a point forecast: CRPS is the absolute error
    np.testing.assert_allclose(crps_samples(np.full((1, 4), 2.0), [3.5]), [1.5])


def test_pit_of_true_distribution_is_uniform_and_bias_is_detected():
    rng = np.random.default_rng(2)
    n, s = 4000, 200
    mu = rng.normal(0, 5, n)
    truth = mu + rng.standard_normal(n)
    samples = mu[:, None] + rng.standard_normal((n, s))
    p = pit(samples, truth, rng=3)
    assert ks_uniform(p) < ks_threshold(n, s)
    assert ks_uniform(pit(samples + 0.3, truth, rng=3)) > 0.08  # a biased sampler


def test_pit_randomizes_ties_at_atoms():
    """A discrete (capped) distribution: randomized PIT is uniform, the midpoint is not."""
    rng = np.random.default_rng(4)
    n, s = 4000, 300
    samples = np.minimum(rng.poisson(2.0, (n, s)), 4).astype(float)
    truth = np.minimum(rng.poisson(2.0, n), 4).astype(float)
    p = pit(samples, truth, rng=5)
    assert np.all((p >= 0) & (p <= 1))
    assert ks_uniform(p) < ks_threshold(n, s)
    assert ks_uniform(pit(samples, truth, randomize_ties=False)) > 0.06


def test_ks_uniform_known_values():
    assert ks_uniform([0.5]) == pytest.approx(0.5)
    n = 50
    assert ks_uniform((np.arange(n) + 0.5) / n) == pytest.approx(0.5 / n)
    assert ks_uniform(np.zeros(10)) == pytest.approx(1.0)
    p = np.random.default_rng(0).uniform(size=300)
    assert ks_uniform(p) == pytest.approx(stats.kstest(p, "uniform").statistic)


def test_oracle_sampler_is_calibrated_and_overconfident_one_is_flagged():
    model = synthetic_stars_model(n_spectrum=20)
    rng = np.random.default_rng(6)
    values, _ = model.sample(3000, rng)
    rows, request, given = random_tasks(values, 3000, rng)
    truth = values[rows, request]
    threshold = ks_threshold(truth.size, 200)
    oracle = model.sample_exact_conditional(given, request, 200, rng)
    overconfident = model.sample_exact_conditional(given, request, 200, rng, std_factor=0.5)
    assert ks_uniform(pit(oracle, truth, rng=rng)) < threshold
    assert ks_uniform(pit(overconfident, truth, rng=rng)) > threshold
    assert abs(coverage(oracle, truth, 0.68) - 0.68) < 0.03
    assert abs(coverage(oracle, truth, 0.95) - 0.95) < 0.015
    assert coverage(overconfident, truth, 0.68) < 0.55
    # the exact CDF of the oracle's own draws is uniform too ("exact PIT")
    u = model.exact_cdf(given[:200], request[:200], oracle[:200])
    assert ks_uniform(u) < KS_NULL_999 / np.sqrt(u.size)


def test_coverage_counts_central_interval():
    samples = np.tile(np.linspace(0.0, 1.0, 101), (4, 1))
    assert coverage(samples, [0.5, 0.2, 0.9, 0.99], 0.68) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        coverage(samples, np.zeros(4), 1.5)


def test_median_bias_and_robust_scatter():
    rng = np.random.default_rng(7)
    n = 20_000
    truth = rng.normal(0, 10, n)
    centre = truth + 0.3 + 0.5 * rng.standard_normal(n)
    samples = centre[:, None] + 0.01 * rng.standard_normal((n, 21))
    bias, scatter = median_bias_scatter(samples, truth)
    assert bias == pytest.approx(0.3, abs=0.02)
    assert scatter == pytest.approx(0.5, rel=0.03)


def test_wasserstein_closed_forms():
    rng = np.random.default_rng(8)
    a = rng.normal(size=3001)
    assert wasserstein_1d(a, a + 0.7) == pytest.approx(0.7, rel=1e-12)  # a pure shift
    b = rng.normal(size=20_000) + 1.5  # W1(N(0,1), N(1.5,1)) = 1.5; different sizes
    assert wasserstein_1d(rng.normal(size=30_000), b) == pytest.approx(1.5, abs=0.03)
    # exactness for uneven sizes against an independent implementation (CDF form)
    x, y = rng.gamma(2, size=17), rng.normal(size=29)
    assert wasserstein_1d(x, y) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)


def test_wasserstein_to_gaussian_mixture():
    w, m, s = (
        np.array([[1.0]] * 3),
        np.array([[0.0], [1.0], [2.0]]),
        np.array([[1.0], [2.0], [0.5]]),
    )
    point = np.array([0.3, -1.0, 5.0])
    # a point mass at c: W1 = E|X - c| = CRPS_gaussian + sigma / sqrt(pi)
    want = crps_gaussian(m[:, 0], s[:, 0], point) + s[:, 0] / np.sqrt(np.pi)
    got = wasserstein_to_gaussian_mixture(np.repeat(point[:, None], 7, axis=1), w, m, s)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # a mixture against a large empirical sample of another law
    rng = np.random.default_rng(9)
    w2, m2, s2 = np.array([[0.3, 0.7]]), np.array([[-2.0, 1.0]]), np.array([[0.5, 1.5]])
    comp = rng.random(400_000) < 0.3
    big = np.where(comp, rng.normal(-2, 0.5, comp.size), rng.normal(1, 1.5, comp.size))
    small = rng.normal(0, 2, size=(1, 300))
    got = wasserstein_to_gaussian_mixture(small, w2, m2, s2)[0]
    assert got == pytest.approx(wasserstein_1d(small, big), abs=0.01)
    own = big[:20_000].reshape(1, -1)
    assert wasserstein_to_gaussian_mixture(own, w2, m2, s2)[0] < 0.03


def test_gaussian_mixture_cdf_shapes_and_values():
    w, m, s = np.array([[0.25, 0.75]]), np.array([[0.0, 2.0]]), np.array([[1.0, 0.5]])
    want = 0.25 * stats.norm.cdf(1.0) + 0.75 * stats.norm.cdf(1.0, 2.0, 0.5)
    assert gaussian_mixture_cdf(np.array([1.0]), w, m, s)[0] == pytest.approx(want)
    grid = gaussian_mixture_cdf(np.array([[-50.0, 1.0, 50.0]]), w, m, s)
    np.testing.assert_allclose(grid, [[0.0, want, 1.0]], atol=1e-12)


def test_summarize_column_record():
    rng = np.random.default_rng(10)
    truth = rng.normal(size=500)
    truth[:10] = np.nan
    samples = rng.normal(size=(500, 100))
    rec = summarize_column(samples, truth, train_std=2.0, rng=0)
    assert set(rec) >= {"crps_norm", "pit_ks", "cover68", "cover95", "bias", "scatter"}
    assert rec["n"] == 490
    want = np.mean(crps_gaussian(0.0, 1.0, truth[10:])) / 2.0
    assert rec["crps_norm"] == pytest.approx(want, rel=0.05)
