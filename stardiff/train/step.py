"""One training step's gradients, optionally in groups of rows of similar input length.

Inputs are drawn with ``L`` uniform in ``0..context``, so a batch padded to its longest row
is half padding. With ``buckets > 1`` the rows are sorted by their number of inputs and
split into that many groups, each trimmed to its own longest row and back-propagated in
turn (gradient accumulation): the same gradient up to rounding, with less compute and a
lower memory peak.
"""

from __future__ import annotations

import contextlib

import torch

from stardiff.train.batches import Batch

__all__ = ["accumulate_gradients", "noise_and_steps"]


def _groups(tokens: torch.Tensor, buckets: int) -> list[torch.Tensor]:
    if buckets <= 1:
        return [torch.arange(tokens.shape[0], device=tokens.device)]
    n_in = (tokens > 0).sum(dim=1)
    order = torch.argsort(n_in, stable=True)
    return [g for g in order.tensor_split(buckets) if g.numel()]


def accumulate_gradients(
    loss_fn,
    batch: Batch,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    weight: float,
    buckets: int = 1,
    autocast=contextlib.nullcontext,
    ddp: bool = False,
) -> torch.Tensor:
    """Back-propagate ``weight ×`` the batch's mean loss; return the summed (detached) loss.

    Parameters
    ----------
    loss_fn : callable
        The network (or its DDP / compiled wrapper) returning the mean loss of its rows.
    weight : float
        Scale of this rank's mean loss (its share of the global batch under DDP).
    buckets : int
        Number of length groups (1 = the whole batch at once).
    autocast : callable
        Returns the autocast context to run the forward pass in.
    ddp : bool
        Whether ``loss_fn`` is a DDP module: gradients are all-reduced on the last group only.
    """
    groups = _groups(batch.tokens, buckets)
    n = batch.target.shape[0]
    total = torch.zeros((), device=batch.target.device)
    for j, g in enumerate(groups):
        if len(groups) > 1:
            width = max(1, int((batch.tokens[g] > 0).sum(dim=1).max()))
            tokens, values = batch.tokens[g, :width], batch.values[g, :width]
            errors = None if batch.errors is None else batch.errors[g, :width]
        else:
            tokens, values, errors = batch.tokens, batch.values, batch.errors
        sync = not ddp or j == len(groups) - 1
        with contextlib.nullcontext() if sync else loss_fn.no_sync(), autocast():
            seen = None if batch.seen is None else batch.seen[g]
            loss = loss_fn(
                tokens, values, batch.request[g], batch.target[g], t[g], noise[g], seen, errors
            )
        (loss * (weight * g.numel() / n)).backward()
        total += loss.detach() * g.numel()
    return total


def noise_and_steps(
    batch: Batch, n_steps: int, draws: int, gen: torch.Generator, power: float = 1.0
):
    """Diffusion steps and noise of the shape of the targets, plus an axis of ``draws``
    when there are several.

    Steps are uniform for ``power = 1`` (the paper); otherwise ``t = floor(u**power * T)``,
    which weights the loss towards low noise (``power > 1``) or high noise (``< 1``).
    """
    dev = batch.target.device
    shape = tuple(batch.target.shape) + (() if draws == 1 else (draws,))
    if power == 1.0:  # the same random stream as before the key existed
        t = torch.randint(0, n_steps, shape, generator=gen, device=dev)
    else:
        u = torch.rand(shape, generator=gen, device=dev) ** power
        t = (u * n_steps).long().clamp_(max=n_steps - 1)
    return t, torch.randn(shape, generator=gen, device=dev)
