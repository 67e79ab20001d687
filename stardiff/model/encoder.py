"""Encoder-only Transformer (BERT-like, post-norm) over a *set* of tokens.

There is no positional encoding: the inputs are a set, so a model trained with a
context of 64 accepts any number of inputs at inference. Which key each query may
attend to is a boolean mask: ``(B, 1, 1, L)`` (every query sees the same keys) or
``(B, 1, L, L)`` (one row per query; see :func:`stardiff.model.network.attention_mask`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key-padding mask."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"model.dim ({dim}) must be divisible by model.n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n_queries: int | None = None):
        """``x`` (B, L, D); ``mask`` (B, 1, 1 or L, L) True where a query may see a key;
        queries = first ``n_queries``."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)
        if n_queries is not None:
            q = q[:, :n_queries]
            if mask.shape[2] > 1:
                mask = mask[:, :, :n_queries]
        heads = lambda t: t.reshape(B, t.shape[1], self.n_heads, D // self.n_heads).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(
            heads(q),
            heads(k),
            heads(v),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(B, -1, D))


class EncoderBlock(nn.Module):
    """Post-norm Transformer block: ``x = LN(x + Attn(x)); x = LN(x + FF(x))``."""

    def __init__(self, dim: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.attn = SelfAttention(dim, n_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n_queries: int | None = None):
        res = x if n_queries is None else x[:, :n_queries]
        x = self.norm1(res + self.drop(self.attn(x, mask, n_queries)))
        return self.norm2(x + self.drop(self.ff(x)))


class Encoder(nn.Module):
    """A stack of encoder blocks; returns the hidden states of the requests (first positions)."""

    def __init__(self, dim: int, n_heads: int, ff_dim: int, n_layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, n_heads, ff_dim, dropout) for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor, n_out: int = 1) -> torch.Tensor:
        """``x`` (B, L, D) with the requests at positions ``0..n_out-1`` → (B, n_out, D)."""
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            # Only the requests are read out, so the last block computes their queries only.
            x = block(x, mask, n_queries=n_out if last else None)
        return x[:, :n_out]
