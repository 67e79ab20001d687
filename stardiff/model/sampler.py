"""Reverse-diffusion samplers: full ancestral DDPM and a few-step DDIM."""

from __future__ import annotations

from collections.abc import Callable

import torch

from stardiff.model.head import DiffusionHead
from stardiff.model.schedule import SigmoidSchedule


def _step_tensor(t: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(t, device=device)


@torch.no_grad()
def ancestral(
    head: DiffusionHead,
    schedule: SigmoidSchedule,
    cond: list[torch.Tensor],
    noise: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """DDPM ancestral sampling through all ``T`` steps (no noise at the last step).

    Parameters
    ----------
    cond : list of Tensor
        Per-block condition projections, shape ``(R, 1, width)`` (broadcast over draws).
    noise : callable
        Returns a fresh standard-normal ``(R, n, 1)`` tensor at each call
        (see :class:`stardiff.model.noise.BlockNoise`).
    """
    device = schedule.betas.device
    x = noise()
    betas, abar = schedule.betas, schedule.alpha_bar
    for t in reversed(range(schedule.n_steps)):
        eps = head(x, _step_tensor(t, device), cond).float()
        x = (x - betas[t] / (1.0 - abar[t]).sqrt() * eps) / (1.0 - betas[t]).sqrt()
        if t > 0:
            var = betas[t] * (1.0 - abar[t - 1]) / (1.0 - abar[t])
            x = x + var.sqrt() * noise()
    return x.squeeze(-1)


def ddim_steps(n_steps: int, k: int) -> list[int]:
    """``k`` step indices evenly spread over ``0..n_steps-1``, both ends included."""
    if not 1 <= k <= n_steps:
        raise ValueError(f"steps must be in 1..{n_steps}, got {k}")
    return sorted({round(i * (n_steps - 1) / max(k - 1, 1)) for i in range(k)})


@torch.no_grad()
def ddim(
    head: DiffusionHead,
    schedule: SigmoidSchedule,
    cond: list[torch.Tensor],
    noise: Callable[[], torch.Tensor],
    k: int,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM sampling over ``k`` of the ``T`` training steps (deterministic for ``eta = 0``)."""
    device = schedule.betas.device
    abar = schedule.alpha_bar
    x = noise()
    steps = ddim_steps(schedule.n_steps, k)
    for i in reversed(range(len(steps))):
        t = steps[i]
        a_t = abar[t]
        a_prev = abar[steps[i - 1]] if i > 0 else torch.ones((), device=device)
        eps = head(x, _step_tensor(t, device), cond).float()
        x0 = (x - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()
        sigma = eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1.0 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if i > 0 and eta > 0:
            x = x + sigma * noise()
    return x.squeeze(-1)
