"""The sigmoid noise schedule of the paper, as registered (saved, device-following) buffers."""

from __future__ import annotations

import torch
from torch import nn


class SigmoidSchedule(nn.Module):
    """``β_t = β_start + (β_end − β_start)·sigmoid(s_t)``, ``s_t`` evenly spaced on [−6, 6].

    All derived tensors are persistent buffers: they follow ``.to(device)`` and are
    written to (and read back from) the weights file, so a loaded model uses exactly
    the schedule it was trained with.

    Parameters
    ----------
    n_steps : int
        Number of diffusion steps ``T``.
    beta_start, beta_end : float
        End points of the schedule.
    """

    def __init__(self, n_steps: int, beta_start: float = 1e-5, beta_end: float = 0.1):
        super().__init__()
        if n_steps < 2:
            raise ValueError(f"model.steps must be at least 2, got {n_steps}")
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(
                f"need 0 < model.beta_start < model.beta_end < 1, got {beta_start}, {beta_end}"
            )
        s = torch.linspace(-6.0, 6.0, n_steps, dtype=torch.float64)
        betas = beta_start + (beta_end - beta_start) * torch.sigmoid(s)
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        for name, value in {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1.0 - alpha_bar).sqrt(),
        }.items():
            self.register_buffer(name, value.float())

    @property
    def n_steps(self) -> int:
        return self.betas.shape[0]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process ``q(x_t | x_0)`` for step indices ``t`` (0-based)."""
        return self.sqrt_alpha_bar[t] * x0 + self.sqrt_one_minus_alpha_bar[t] * noise
