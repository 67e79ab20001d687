"""The whole network: embedding → encoder → diffusion head, with its noise schedule."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from stardiff.model.embedding import TokenEmbedding
from stardiff.model.encoder import Encoder
from stardiff.model.head import DiffusionHead
from stardiff.model.schedule import SigmoidSchedule


@dataclass(frozen=True)
class NetworkConfig:
    """Every hyper-parameter of the network (saved in ``config.json``)."""

    n_kinds: int
    dim: int = 32
    n_heads: int = 4
    ff_dim: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    head_width: int = 64
    head_layers: int = 2
    steps: int = 100
    beta_start: float = 1e-5
    beta_end: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class DensityNetwork(nn.Module):
    """Transformer + denoising-diffusion head over (column, value) tokens.

    A sequence is ``[request, input_1, …, input_L]``; inputs with token 0 are padding
    and are masked out of attention. The hidden state at position 0 conditions the head.
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = TokenEmbedding(c.n_kinds, c.dim)
        self.encoder = Encoder(c.dim, c.n_heads, c.ff_dim, c.n_layers, c.dropout)
        self.head = DiffusionHead(c.dim, c.head_width, c.head_layers, c.steps)
        self.schedule = SigmoidSchedule(c.steps, c.beta_start, c.beta_end)

    def condition(
        self, tokens: torch.Tensor, values: torch.Tensor, request: torch.Tensor
    ) -> torch.Tensor:
        """Encode ``tokens``/``values`` (B, L) with ``request`` (B,) → condition (B, D)."""
        x = torch.cat([self.embed.request(request), self.embed(tokens, values)], dim=1)
        keep = torch.cat([torch.ones_like(request, dtype=torch.bool)[:, None], tokens > 0], dim=1)
        return self.encoder(x, keep)

    def loss(
        self,
        tokens: torch.Tensor,
        values: torch.Tensor,
        request: torch.Tensor,
        target: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """Mean squared error of the predicted noise (the DDPM objective).

        ``t`` and ``noise`` are (B,), or (B, M) for M diffusion draws per encoded row:
        the encoder runs once and its condition is broadcast over the draws.
        """
        cond = self.head.project_condition(self.condition(tokens, values, request))
        if t.dim() == 2:
            cond = [c.unsqueeze(1) for c in cond]
            target = target.unsqueeze(1)
        x_t = self.schedule.add_noise(target, noise, t)
        pred = self.head(x_t.unsqueeze(-1), t, cond).squeeze(-1)
        return F.mse_loss(pred.float(), noise)

    def forward(self, tokens, values, request, target, t, noise) -> torch.Tensor:
        """The training loss (so that ``torch.compile(network)`` compiles the training step)."""
        return self.loss(tokens, values, request, target, t, noise)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
