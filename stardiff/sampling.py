"""The samplers by name: resolve a user's (sampler, steps, eta) and run the chosen one.

``"ancestral"``: the full T-step DDPM chain (stochastic); ``"ddim"``: K-step DDIM (η sets
its noise); ``"dpm2"``: K-step second-order multistep DPM-Solver++ (deterministic). dpm2
over 20 steps is the default: on the California protocol its CRPS is within 0.5 % and its
PIT KS within 0.01 of the ancestral chain, at 5-10× the ancestral speed (docs/model.md).
"""

from __future__ import annotations

import torch

from stardiff.model import DensityNetwork, ancestral, ddim, multistep

__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "DEFAULT_STEPS", "resolve_sampler", "solve"]

SAMPLERS = ("ancestral", "ddim", "dpm2")
DEFAULT_SAMPLER = "dpm2"
DEFAULT_STEPS = 20  # K of the few-step samplers when not given


def resolve_sampler(n_steps: int, sampler: str | None, steps: int | None, eta: float) -> tuple:
    """(sampler, steps, eta) → (method, K, eta) for a network of ``n_steps``; one-line errors."""
    method = sampler or (DEFAULT_SAMPLER if steps is None else "dpm2")
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {', '.join(SAMPLERS)}")
    if method == "ancestral":
        if steps not in (None, n_steps):
            raise ValueError(f"the ancestral sampler runs all {n_steps} steps, got steps={steps}")
        return method, n_steps, 0.0
    k = min(DEFAULT_STEPS, n_steps) if steps is None else int(steps)
    if not 1 <= k <= n_steps:
        raise ValueError(f"steps must be in 1..{n_steps}, got {k}")
    if eta and method != "ddim":
        raise ValueError(f"eta applies to the ddim sampler only, not {method!r}")
    return method, k, float(eta)


def solve(net: DensityNetwork, cond, noise, how: tuple) -> torch.Tensor:
    """Run the resolved sampler ``how`` on conditions ``cond`` and a noise source: (R, n)."""
    method, steps, eta = how
    if method == "ancestral":
        return ancestral(net.head, net.schedule, cond, noise)
    if method == "ddim":
        return ddim(net.head, net.schedule, cond, noise, steps, eta)
    return multistep(net.head, net.schedule, cond, noise, steps, order=2)
