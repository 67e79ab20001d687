"""The few-step samplers solve the probability-flow ODE: checked with the exact noise
predictor of a Gaussian, whose flow is known in closed form."""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from stardiff.model import ancestral, ddim, multistep
from stardiff.model.samplers import step_indices
from stardiff.model.schedule import SigmoidSchedule

MU, S = 0.7, 0.4  # the data density N(MU, S²)


class ExactGaussianHead:
    """E[ε | x_t] for x_0 ~ N(MU, S²): σ (x − α MU) / (α² S² + σ²). Width 4 conditions.

    Has the DiffusionHead interface: ``head(x, t, cond)``, and ``step_terms``/``mlp`` for
    the few-step solvers (the step index rides in the per-row terms)."""

    def __init__(self, schedule: SigmoidSchedule):
        self.a = schedule.sqrt_alpha_bar.double()
        self.s = schedule.sqrt_one_minus_alpha_bar.double()

    def __call__(self, x, t, cond):
        a, s = self.a[t], self.s[t]
        return (s * (x.double() - a * MU) / (a**2 * S**2 + s**2)).float()

    def step_terms(self, t):
        return [torch.full((4,), float(t))]

    def mlp(self, x, pre):
        return self(x, pre[0][..., :1].round().long(), None)


def _setup(n=4000):
    sch = SigmoidSchedule(100)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(3, n, 1, generator=gen)
    cond = [torch.zeros(3, 1, 4)]
    return sch, ExactGaussianHead(sch), x_T, cond


def _exact_flow(sch, x_T):
    """The Gaussian flow is linear: it keeps the standardized value of x_T."""
    a, s = sch.sqrt_alpha_bar[-1].double(), sch.sqrt_one_minus_alpha_bar[-1].double()
    return MU + S * (x_T.double().squeeze(-1) - a * MU) / (a**2 * S**2 + s**2).sqrt()


def test_step_indices_cover_both_ends():
    assert step_indices(100, 5) == [0, 25, 50, 74, 99]
    assert step_indices(100, 100) == list(range(100))
    with pytest.raises(ValueError, match="steps must be in 1..100"):
        step_indices(100, 0)


def test_second_order_solver_converges_faster_than_ddim():
    sch, head, x_T, cond = _setup()
    exact = _exact_flow(sch, x_T)
    err = {}
    for order in (1, 2):
        for k in (10, 20):
            x = multistep(head, sch, cond, lambda: x_T.clone(), k, order=order)
            err[order, k] = (x.double() - exact).abs().max().item()
    assert err[2, 20] < 0.02, err
    assert err[2, 10] < 0.25 * err[1, 10], err  # second order: far smaller error at equal K
    assert err[1, 20] < err[1, 10] and err[2, 20] < err[2, 10], err


def test_ddim_without_noise_is_the_first_order_solver():
    sch, head, x_T, cond = _setup(500)
    a = ddim(head, sch, cond, lambda: x_T.clone(), 12, eta=0.0)
    b = multistep(head, sch, cond, lambda: x_T.clone(), 12, order=1)
    torch.testing.assert_close(a, b)


def test_solver_tiles_do_not_change_the_samples(monkeypatch):
    from stardiff.model import samplers as sampler

    sch, head, x_T, cond = _setup(3000)
    whole = multistep(head, sch, cond, lambda: x_T.clone(), 15)
    monkeypatch.setattr(sampler, "TILE_BYTES", 4 * 4 * 700)  # tiles of 700 draws
    tiled = multistep(head, sch, cond, lambda: x_T.clone(), 15)
    torch.testing.assert_close(whole, tiled, rtol=0, atol=0)


@pytest.mark.parametrize("k", [10, 20])
def test_few_step_sampler_draws_the_data_density(k):
    """dpm2 over k steps and the full ancestral chain both draw N(MU, S²)."""
    sch, head, x_T, cond = _setup(4000)
    gen = torch.Generator().manual_seed(1)
    noise = lambda: torch.randn(3, 4000, 1, generator=gen)  # noqa: E731
    full = ancestral(head, sch, cond, noise).numpy().ravel()
    few = multistep(head, sch, cond, noise, k).numpy().ravel()
    truth = np.random.default_rng(2).normal(MU, S, few.size)
    assert ks_2samp(full, truth).statistic < 0.03
    # the flow of x_T ~ N(0, 1), which is not exactly the forward marginal at T
    flow = _exact_flow(sch, torch.randn(3, 4000, 1, generator=gen)).numpy().ravel()
    assert ks_2samp(few, flow).statistic < 0.025
    assert abs(few.mean() - MU) < 0.04 and abs(few.std() - S) / S < 0.03


def test_deterministic_ddim_is_too_narrow_at_few_steps():
    """Why the default few-step sampler is dpm2: DDIM (η = 0) over 20 steps shrinks the
    spread by ~8 % on this schedule, dpm2 over 10 steps is within 3 %."""
    sch, head, x_T, cond = _setup(4000)
    ddim20 = ddim(head, sch, cond, lambda: x_T.clone(), 20).std().item()
    dpm10 = multistep(head, sch, cond, lambda: x_T.clone(), 10).std().item()
    exact = _exact_flow(sch, x_T).std().item()
    assert ddim20 < 0.95 * exact
    assert abs(dpm10 / exact - 1) < 0.03


def test_unknown_solver_order():
    sch, head, x_T, cond = _setup(10)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        multistep(head, sch, cond, lambda: x_T, 5, order=3)


@pytest.mark.parametrize("k", [1, 2, 7, 20, 99, 100])
def test_lambda_indices_are_distinct_and_keep_both_ends(k):
    from stardiff.model.samplers import lambda_indices

    idx = lambda_indices(SigmoidSchedule(100), k)
    assert len(idx) == k and idx == sorted(set(idx))
    assert idx[-1] == 99 and (k == 1 or idx[0] == 0)
