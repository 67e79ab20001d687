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
    causal_inputs: bool = False  # input i attends to inputs 1..i only (needs isolated_requests)
    periodic_features: int = 0  # periodic value features per kind (0 = none)
    summary_width: int = 0  # hidden width of the summary token's MLP over all inputs (0 = none)
    input_errors: bool = False  # inputs carry their measurement errors (data.errors)

    def to_dict(self) -> dict:
        """Every field by name, JSON-ready (``NetworkConfig(**c.to_dict()) == c``)."""
        return asdict(self)


def attention_mask(
    tokens: torch.Tensor,
    n_requests: int,
    isolated: bool,
    causal: bool = False,
    seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean attention mask of sequences ``[request_1..request_k, input_1..input_L]``.

    Padding inputs (token 0) are never keys. Shared (``isolated=False``, one request): every
    query sees the request and the real inputs, shape ``(B, 1, 1, k + L)``. Isolated: every
    query sees the real inputs and itself only, shape ``(B, 1, k + L, k + L)``, so an input's
    hidden state does not depend on which columns are requested, and ``k`` requests of one
    row are ``k`` independent questions about the same inputs.

    ``causal`` (isolated only): input ``i`` sees inputs ``1..i`` only, so the hidden states
    of the first ``m`` inputs are those of a row given only them, and ``seen`` (B, k) lets
    request ``j`` see only the first ``seen[:, j]`` inputs: one encoded row then answers
    questions with different numbers of inputs (default: every request sees all).
    """
    B, dev = tokens.shape[0], tokens.device
    real = tokens > 0
    if seen is not None and not causal:
        raise ValueError("requests that see only the first inputs need model.causal_inputs")
    if not isolated:
        if n_requests != 1 or causal:
            raise ValueError(
                "several requests per row and causal inputs need model.isolated_requests = true"
            )
        return torch.cat([torch.ones(B, 1, dtype=torch.bool, device=dev), real], dim=1)[
            :, None, None, :
        ]
    k, L = n_requests, tokens.shape[1]
    keys = real[:, None, :]  # (B, 1, L): the real inputs
    pos = torch.arange(L, device=dev)
    req = keys.expand(B, k, L) if seen is None else keys & (pos < seen.reshape(B, k, 1))
    inp = keys & (pos[:, None] >= pos) if causal else keys.expand(B, L, L)
    mask = torch.cat([torch.zeros(B, k + L, k, dtype=torch.bool, device=dev),
                      torch.cat([req, inp], dim=1)], dim=2)  # fmt: skip
    return (mask | torch.eye(k + L, dtype=torch.bool, device=dev))[:, None]


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
        self.embed = TokenEmbedding(
            c.n_kinds,
            c.dim,
            shift=c.embedding_shift,
            periodic=c.periodic_features,
            errors=c.input_errors,
        )
        self.encoder = Encoder(c.dim, c.n_heads, c.ff_dim, c.n_layers, c.dropout)
        self.summary = None
        if c.summary_width:
            if c.causal_inputs:
                raise ValueError("a summary token sees every input: not with causal_inputs")
            self.summary = nn.Sequential(
                nn.Linear(2 * c.n_kinds, c.summary_width),
                nn.GELU(),
                nn.Linear(c.summary_width, c.dim),
            )
        self.head = DiffusionHead(c.dim, c.head_width, c.head_layers, c.steps)
        self.schedule = SigmoidSchedule(c.steps, c.beta_start, c.beta_end)

    def condition(
        self,
        tokens: torch.Tensor,
        values: torch.Tensor,
        request: torch.Tensor,
        seen: torch.Tensor | None = None,
        errors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode ``tokens``/``values`` (B, L) for ``request`` (B,) → condition (B, D), or
        for ``k`` requests per row (B, k) → (B, k, D); ``seen`` (the shape of ``request``,
        with ``model.causal_inputs``): how many of the first inputs each request sees."""
        req = request if request.dim() == 2 else request[:, None]
        inputs = self.embed(tokens, values, errors)
        if self.summary is not None:
            inputs = torch.cat([self.summary_token(tokens, values), inputs], dim=1)
            tokens = F.pad(tokens, (1, 0), value=1)  # the summary is always a real input
        x = torch.cat([self.embed.request_many(req), inputs], dim=1)
        c = self.config
        mask = attention_mask(tokens, req.shape[1], c.isolated_requests, c.causal_inputs, seen)
        h = self.encoder(x, mask, n_out=req.shape[1])
        return h if request.dim() == 2 else h[:, 0]

    def summary_token(self, tokens: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """One extra input token (B, 1, D): an MLP of every input at once, as a vector of the
        ``V`` standardized values (0 where not given) and their presence. The other tokens
        carry each value alone; this one gives the requests a dense view of the whole row."""
        B, V = tokens.shape[0], self.config.n_kinds
        real = (tokens > 0).to(values.dtype)
        dense = values.new_zeros(B, V + 1).scatter(1, tokens, values * real)[:, 1:]
        present = values.new_zeros(B, V + 1).scatter(1, tokens, real)[:, 1:]
        return self.summary(torch.cat([dense, present], dim=1)).unsqueeze(1)

    def loss(
        self,
        tokens: torch.Tensor,
        values: torch.Tensor,
        request: torch.Tensor,
        target: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        seen: torch.Tensor | None = None,
        errors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean squared error of the predicted noise (the DDPM objective).

        ``request`` and ``target`` are (B,), or (B, k) for ``k`` requests per encoded row
        (request 0 = no request: left out of the mean). ``t`` and ``noise`` have the shape
        of ``target``, or one more axis of M diffusion draws: the encoder runs once and its
        condition is broadcast over the draws. ``seen``: see :meth:`condition`.
        """
        cond = self.head.project_condition(self.condition(tokens, values, request, seen, errors))
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

    def forward(
        self, tokens, values, request, target, t, noise, seen=None, errors=None
    ) -> torch.Tensor:
        """The training loss (so that ``torch.compile(network)`` compiles the training step)."""
        return self.loss(tokens, values, request, target, t, noise, seen, errors)

    def n_parameters(self) -> int:
        """The number of trainable weights (those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
