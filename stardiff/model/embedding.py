"""Non-linear embedding of (column, value) tokens and of the request token."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TokenEmbedding(nn.Module):
    """``y = GELU(w_x · M) + b_x`` for a token of kind ``x`` with standardized value ``M``.

    Two learned tables of shape ``(V + 1, D)``; row 0 belongs to the padding token and
    is never used for a real input (padding positions are masked in attention). With
    ``shift``, a third table ``s_x`` moves each feature's bend: ``GELU(w_x · M + s_x)``.
    Without it every feature bends at ``M = 0``, so the embedding of a value is nearly
    two straight pieces; the shifted bends (initialized over about ±2 σ) give a set of
    features that resolve where in its range a value lies.

    With ``periodic = K`` (Gorishniy et al. 2022, "On Embeddings for Numerical Features in
    Tabular Deep Learning", PLR), each kind also has ``K`` learned frequencies ``c_x``, and
    ``ReLU(A · [sin 2πc_x M, cos 2πc_x M])`` (``A`` shared by all kinds) is added: features
    that vary quickly where a value must be read precisely.

    Parameters
    ----------
    n_kinds : int
        Vocabulary size ``V`` (token ids ``1..V``).
    dim : int
        Embedding width ``D``.
    shift : bool
        Learn the bend positions ``s_x`` (``model.embedding_shift``).
    periodic : int
        Number ``K`` of periodic features per kind (``model.periodic_features``); 0 = none.
    """

    def __init__(
        self, n_kinds: int, dim: int, shift: bool = False, periodic: int = 0, errors: bool = False
    ):
        super().__init__()
        self.weight = nn.Embedding(n_kinds + 1, dim)
        self.bias = nn.Embedding(n_kinds + 1, dim)
        nn.init.normal_(self.weight.weight, std=1.0)
        nn.init.normal_(self.bias.weight, std=0.02)
        self.shift = None
        if shift:
            self.shift = nn.Embedding(n_kinds + 1, dim)
            nn.init.normal_(self.shift.weight, std=1.5)
        self.frequency = self.periodic = None
        if periodic:
            self.frequency = nn.Embedding(n_kinds + 1, periodic)
            nn.init.normal_(self.frequency.weight, std=1.0)
            self.periodic = nn.Linear(2 * periodic, dim)
        self.error_weight = self.error_bias = None
        if errors:
            self.error_weight = nn.Embedding(n_kinds + 1, dim)
            self.error_bias = nn.Embedding(n_kinds + 1, dim)
            nn.init.normal_(self.error_weight.weight, std=1.0)
            nn.init.normal_(self.error_bias.weight, std=0.02)

    def forward(
        self, tokens: torch.Tensor, values: torch.Tensor, errors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed inputs: ``tokens`` (B, L) int, ``values`` (B, L) float → (B, L, D).

        ``errors`` (B, L): each value's standardized log error (NaN = not known), for a
        network built with ``errors``; adds ``GELU(e_x · E + f_x)`` where it is known."""
        pre = self.weight(tokens) * values.unsqueeze(-1)
        if self.shift is not None:
            pre = pre + self.shift(tokens)
        out = F.gelu(pre) + self.bias(tokens)
        if self.periodic is not None:
            angle = 2 * torch.pi * self.frequency(tokens) * values.unsqueeze(-1)
            out = out + F.relu(self.periodic(torch.cat([angle.sin(), angle.cos()], dim=-1)))
        if self.error_weight is not None and errors is not None:
            known = torch.isfinite(errors)
            e = torch.where(known, errors, 0.0).unsqueeze(-1)
            term = F.gelu(self.error_weight(tokens) * e + self.error_bias(tokens))
            out = out + term * known.unsqueeze(-1).to(term.dtype)
        return out

    def request(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embed requested kinds ``tokens`` (B,) → (B, 1, D): ``w_x`` only, no value or bias."""
        return self.weight(tokens).unsqueeze(1)

    def request_many(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embed ``k`` requested kinds per row, ``tokens`` (B, k) → (B, k, D)."""
        return self.weight(tokens)
