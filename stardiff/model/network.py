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
    isolated_requests: bool = False  # inputs never attend to requests (train.requests > 1)
    embedding_shift: bool = False  # learned bend positions in the value embedding

    def to_dict(self) -> dict:
        return asdict(self)


def attention_mask(tokens: torch.Tensor, n_requests: int, isolated: bool) -> torch.Tensor:
    """Boolean attention mask of sequences ``[request_1..request_k, input_1..input_L]``.

    Padding inputs (token 0) are never keys. Shared (``isolated=False``, one request): every
    query sees the request and the real inputs, shape ``(B, 1, 1, k + L)``. Isolated: every
    query sees the real inputs and itself only, shape ``(B, 1, k + L, k + L)``, so an input's
    hidden state does not depend on which columns are requested, and ``k`` requests of one
    row are ``k`` independent questions about the same inputs.
    """
    B, dev = tokens.shape[0], tokens.device
    real = tokens > 0
    if not isolated:
        if n_requests != 1:
            raise ValueError("several requests per row need model.isolated_requests = true")
        return torch.cat([torch.ones(B, 1, dtype=torch.bool, device=dev), real], dim=1)[
            :, None, None, :
        ]
    keys = torch.cat([torch.zeros(B, n_requests, dtype=torch.bool, device=dev), real], dim=1)
    eye = torch.eye(keys.shape[1], dtype=torch.bool, device=dev)
    return (keys[:, None, :] | eye)[:, None]


class DensityNetwork(nn.Module):
    """Transformer + denoising-diffusion head over (column, value) tokens.

    A sequence is ``[request_1, …, request_k, input_1, …, input_L]`` (``k = 1`` at
    inference); inputs with token 0 are padding and are masked out of attention. The
    hidden state of each request conditions the head (see :func:`attention_mask`).
    """

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = TokenEmbedding(c.n_kinds, c.dim, shift=c.embedding_shift)
        self.encoder = Encoder(c.dim, c.n_heads, c.ff_dim, c.n_layers, c.dropout)
        self.head = DiffusionHead(c.dim, c.head_width, c.head_layers, c.steps)
        self.schedule = SigmoidSchedule(c.steps, c.beta_start, c.beta_end)

    def condition(
        self, tokens: torch.Tensor, values: torch.Tensor, request: torch.Tensor
    ) -> torch.Tensor:
        """Encode ``tokens``/``values`` (B, L) for ``request`` (B,) → condition (B, D), or
        for ``k`` requests per row (B, k) → (B, k, D)."""
        req = request if request.dim() == 2 else request[:, None]
        x = torch.cat([self.embed.request_many(req), self.embed(tokens, values)], dim=1)
        mask = attention_mask(tokens, req.shape[1], self.config.isolated_requests)
        h = self.encoder(x, mask, n_out=req.shape[1])
        return h if request.dim() == 2 else h[:, 0]

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

        ``request`` and ``target`` are (B,), or (B, k) for ``k`` requests per encoded row
        (request 0 = no request: left out of the mean). ``t`` and ``noise`` have the shape
        of ``target``, or one more axis of M diffusion draws: the encoder runs once and its
        condition is broadcast over the draws.
        """
        cond = self.head.project_condition(self.condition(tokens, values, request))
        if t.dim() > target.dim():
            cond = [c.unsqueeze(-2) for c in cond]
            target = target.unsqueeze(-1)
        x_t = self.schedule.add_noise(target, noise, t)
        pred = self.head(x_t.unsqueeze(-1), t, cond).squeeze(-1)
        if request.dim() == 1:
            return F.mse_loss(pred.float(), noise)
        err = (pred.float() - noise) ** 2
        real = (request > 0).reshape(*request.shape, *([1] * (err.dim() - 2)))
        n = real.sum() * (err[0, 0].numel())
        return torch.where(real, err, 0.0).sum() / n.clamp(min=1)

    def forward(self, tokens, values, request, target, t, noise) -> torch.Tensor:
        """The training loss (so that ``torch.compile(network)`` compiles the training step)."""
        return self.loss(tokens, values, request, target, t, noise)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
