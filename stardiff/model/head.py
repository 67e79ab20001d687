"""The denoising-diffusion head: predicts the noise in a 1-D sample given a condition."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DiffusionHead(nn.Module):
    """MLP of blocks ``h ← GELU(Linear(h) + E_t + Linear_c(c))`` then ``Linear → 1``.

    Every block has its own learned per-step embedding ``E_t`` and its own projection
    of the condition ``c`` (the Transformer's request state), whatever the widths: the
    condition always reaches the output (the reference code dropped it when the two
    widths were equal).

    Parameters
    ----------
    cond_dim : int
        Width of the condition (the Transformer width ``D``).
    width : int
        Hidden width of the head.
    n_layers : int
        Number of blocks.
    n_steps : int
        Number of diffusion steps ``T``.
    """

    def __init__(self, cond_dim: int, width: int, n_layers: int, n_steps: int):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"model.head_layers must be at least 1, got {n_layers}")
        self.inputs = nn.ModuleList(
            nn.Linear(1 if i == 0 else width, width) for i in range(n_layers)
        )
        self.step_embed = nn.ModuleList(nn.Embedding(n_steps, width) for _ in range(n_layers))
        self.cond = nn.ModuleList(nn.Linear(cond_dim, width) for _ in range(n_layers))
        self.out = nn.Linear(width, 1)

    def project_condition(self, c: torch.Tensor) -> list[torch.Tensor]:
        """Per-block condition projections; computed once per chain when sampling."""
        return [proj(c) for proj in self.cond]

    def step_terms(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Per-block ``bias + E_t`` for step indices ``t``; computed once per step when
        sampling, shared by every tile of draws."""
        return [lin.bias + emb(t) for lin, emb in zip(self.inputs, self.step_embed, strict=True)]

    def mlp(self, x: torch.Tensor, pre: list[torch.Tensor]) -> torch.Tensor:
        """The blocks given their per-row pre-activation terms ``bias + E_t + Linear_c(c)``.

        The small per-row terms are added to the big (rows × draws) activation once, in
        place; the 1 → width input layer is one fused multiply-add. Without autograd the
        GELU runs in place too (no new buffer per block and step).
        """
        inplace = not torch.is_grad_enabled()
        h = x
        for i, (lin, p) in enumerate(zip(self.inputs, pre, strict=True)):
            if i == 0:
                h = torch.addcmul(p, h, lin.weight[:, 0])
            else:
                h = torch.matmul(h, lin.weight.t()).add_(p)
            h = torch.ops.aten.gelu_(h) if inplace else F.gelu(h)
        return self.out(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: list[torch.Tensor]) -> torch.Tensor:
        """Predict the noise.

        Parameters
        ----------
        x : Tensor, shape (..., 1)
            Noisy samples.
        t : Tensor of int
            Step indices, broadcastable to ``x.shape[:-1]`` (a scalar tensor when sampling).
        cond : list of Tensor
            Output of :meth:`project_condition`, each broadcastable to ``(..., width)``.
        """
        return self.mlp(x, [s + c for s, c in zip(self.step_terms(t), cond, strict=True)])
