"""Joint samples in bounded memory: chained 1-D requests over a tiled (rows × draws) grid.

A joint draw ``k`` of given row ``r`` draws the first requested column given the row, then
each next column given the row plus the values already drawn in that chain (the paper's
Fig. 6). Every (row, draw) pair is one chain, encoded as its own row, so the work is tiled into
chunks of whole noise blocks (``ROW_BLOCK`` rows × ``DRAW_BLOCK`` draws), and the chains of a
chunk go through the encoder and the solver a group at a time, all sized to the model's
``max_memory`` (:func:`stardiff.infer.memory.chain_plan`). Each column's noise is keyed on
(row block, draw block) exactly as in 1-D sampling, and a group of chains takes its noise from
those blocks, so the samples do not depend on the tiling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from stardiff.infer.inputs import input_width
from stardiff.model import ROW_BLOCK, BlockNoise, solve

__all__ = ["ChainParts", "joint_chunks"]


@dataclass(frozen=True)
class ChainParts:
    """What joint sampling needs of a model, handed over by it (no private access).

    Attributes
    ----------
    network : torch.nn.Module
    device : torch.device
    plan : JointPlan
        Chunks, chains in flight and head tiles (:func:`stardiff.infer.memory.chain_plan`).
    autocast : callable
        A fresh autocast context for the model's precision.
    student : DistilledHead or None
        The distilled head of the sampler, if it is one.
    conditions : callable
        ``(z, column, encode, width, how)`` → the head's conditions of given rows.
    encode : callable
        ``z`` → ``(tokens, values)`` of standardized rows.
    condition : callable
        ``(tokens, values, column, how)`` → the head's conditions of encoded rows.
    """

    network: torch.nn.Module
    device: torch.device
    plan: object
    autocast: Callable
    student: object
    conditions: Callable
    encode: Callable
    condition: Callable


def joint_chunks(
    parts: ChainParts, z: np.ndarray, cols: list[int], n: int, seed: int, how
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Yield ``(rows, draws, samples)``: standardized ``(rows, draws, len(cols))`` chunks.

    Parameters
    ----------
    parts : ChainParts
        The model's parts (``DensityModel.iter_joint`` builds them).
    z : ndarray, shape (R, V)
        Standardized given rows (NaN = not given).
    cols : list of int
        Vocabulary indices of the requested columns, in chain order.
    n : int
        Joint draws per given row.
    seed : int
    how : tuple
        The resolved sampler: its name, steps and eta.
    """
    R = z.shape[0]
    if R == 0:
        return
    plan = parts.plan
    for r0 in range(0, R, plan.rows):
        rows = slice(r0, min(R, r0 + plan.rows))
        for d0 in range(0, n, plan.draws):
            draws = slice(d0, min(n, d0 + plan.draws))
            with torch.no_grad(), parts.autocast():  # not around the yield: the caller's code
                out = _chunk(parts, z[rows], cols, rows, draws, seed, how)
            yield rows, draws, out


class _ChainNoise:
    """The noise of chains ``a..b`` of a chunk (chain ``i`` = row ``i // nd``, draw
    ``i % nd``), ``(b - a, 1, 1)`` per call: drawn from the generators of the row blocks
    those chains touch, so every chain gets the noise it gets in the whole chunk."""

    def __init__(self, seed: int, column: int, rows: slice, draws: slice, a: int, b: int, dev):
        nd = draws.stop - draws.start
        first, last = rows.start + a // nd, rows.start + (b - 1) // nd
        lo = first // ROW_BLOCK * ROW_BLOCK
        hi = min(rows.stop, (last // ROW_BLOCK + 1) * ROW_BLOCK)
        self.blocks = BlockNoise(seed, column, slice(lo, hi), draws, dev)
        skip = (lo - rows.start) * nd
        self.part = slice(a - skip, b - skip)

    def __call__(self) -> torch.Tensor:
        return self.blocks().reshape(-1, 1, 1)[self.part]


def _chunk(parts: ChainParts, zr, cols, rows: slice, draws: slice, seed: int, how) -> np.ndarray:
    dev, plan, student = parts.device, parts.plan, parts.student
    nr, nd = zr.shape[0], draws.stop - draws.start
    chains = nr * nd
    drawn = np.empty((chains, len(cols)))  # chain i = row i // nd, draw i % nd
    width = None if nr <= plan.encode else input_width(zr)
    first = parts.conditions(zr, cols[0], plan.encode, width, how)  # one per row, its draws
    noise = BlockNoise(seed, cols[0], rows, draws, dev)
    x = solve(parts.network, first, noise, how, plan.tile, student)
    drawn[:, 0] = x.float().cpu().numpy().reshape(-1)
    del first, x
    for k, j in enumerate(cols[1:], start=1):
        for a in range(0, chains, plan.encode):
            b = min(chains, a + plan.encode)
            chain = zr[np.arange(a, b) // nd]  # the given values ride along every chain
            chain[:, cols[:k]] = drawn[a:b, :k]
            encoded = parts.encode(chain)
            del chain
            cond = parts.condition(*encoded, j, how)
            del encoded
            noise = _ChainNoise(seed, j, rows, draws, a, b, dev)
            x = solve(parts.network, cond, noise, how, plan.tile, student)
            drawn[a:b, k] = x[:, 0].float().cpu().numpy()
            del cond, x
    return drawn.reshape(nr, nd, len(cols))
