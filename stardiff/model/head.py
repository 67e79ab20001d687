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


class DistilledHead(nn.Module):
    """A student of a trained :class:`DiffusionHead` that samples in ``len(steps)`` evaluations.

    The student has the teacher's architecture (and starts from its weights); it is trained
    (``stardiff distill``, :mod:`stardiff.train.distillation`) so that first-order (DDIM) steps at
    the step indices ``steps`` land on the teacher's deterministic ``dpm2`` trajectory from the
    same noise. The encoder is the teacher's: only the head changes.

    Parameters
    ----------
    head : DiffusionHead
        The student's head (its own condition projections and step embeddings).
    steps : sequence of int
        Step indices from noisy to clean where the head is evaluated
        (:func:`stardiff.model.samplers.student_steps`).
    """

    def __init__(self, head: DiffusionHead, steps):
        super().__init__()
        steps = [int(t) for t in steps]
        n = head.step_embed[0].num_embeddings
        if not steps or sorted(set(steps), reverse=True) != steps or not 0 <= steps[-1] < n:
            raise ValueError(f"student steps must be distinct indices in 0..{n - 1}, noisy first")
        self.head = head
        self.steps = steps
        self.info: dict = {}  # how it was trained (distilled.json's entry), JSON-ready

    @classmethod
    def of(cls, teacher: DiffusionHead, steps) -> DistilledHead:
        """A student starting from a copy of ``teacher``'s weights."""
        import copy

        return cls(copy.deepcopy(teacher), steps)
