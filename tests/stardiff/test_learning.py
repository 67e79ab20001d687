"""The model learns a known bimodal conditional (y = ±x + noise)."""

import numpy as np
import pytest
from scipy.stats import ks_2samp


def test_learns_a_bimodal_conditional(bimodal_model):
    model, _ = bimodal_model
    rng = np.random.default_rng(1)
    for x in (1.5, -1.0):
        samples = model.sample({"x": x}, "y", 2000, seed=3)
        truth = rng.choice([-1.0, 1.0], 2000) * x + 0.2 * rng.normal(size=2000)
        stat = ks_2samp(samples, truth).statistic
        assert stat < 0.13, (x, stat)
        # two modes, not one broad blob in the middle
        assert np.mean(np.abs(samples) < 0.5 * abs(x)) < 0.15


def test_unconditional_density_matches_marginal(bimodal_model):
    model, _ = bimodal_model
    s = model.sample({}, "y", 3000, seed=0)
    assert ks_2samp(s, np.random.default_rng(0).normal(size=3000)).statistic < 0.06


@pytest.mark.parametrize(("sampler", "steps"), [("dpm2", 10), ("dpm2", 20), ("ddim", 20)])
def test_few_step_sampler_reproduces_the_full_sampler(bimodal_model, sampler, steps):
    """Few-step samplers over 10-20 of the 100 training steps draw the same bimodal
    conditional as the full ancestral chain."""
    model, _ = bimodal_model
    full = model.sample({"x": 1.2}, "y", 3000, seed=1, sampler="ancestral")
    fast = model.sample({"x": 1.2}, "y", 3000, seed=2, sampler=sampler, steps=steps)
    assert ks_2samp(full, fast).statistic < 0.08
    assert np.mean(np.abs(fast) < 0.6) < 0.15  # still two modes
