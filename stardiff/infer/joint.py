"""Joint samples in bounded memory: chained 1-D requests over a tiled (rows × draws) grid.

A joint draw ``k`` of given row ``r`` draws the first requested column given the row, then
each next column given the row plus the values already drawn in that chain (the paper's
Fig. 6). Every (row, draw) pair is one virtual row of the chain, so the work is tiled into
chunks of whole noise blocks (``ROW_BLOCK`` rows × ``DRAW_BLOCK`` draws) that fit the
model's ``max_memory``; each column's noise is keyed on (row block, draw block) exactly as
in 1-D sampling, so the samples do not depend on the tiling.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from stardiff.model import DRAW_BLOCK, ROW_BLOCK, BlockNoise, solve

__all__ = ["joint_plan", "joint_chunks"]


def joint_plan(n_rows: int, n: int, per_chunk: int) -> tuple[int, int]:
    """Rows and draws per chunk: whole noise blocks, at most ``per_chunk`` (row, draw) pairs
    when the blocks allow it (one block of rows × one block of draws at the least)."""
    block_rows = min(n_rows, ROW_BLOCK)
    if n_rows * n <= per_chunk:
        return n_rows, n
    if block_rows * n <= per_chunk:  # whole rows: their draws stay together
        return max(ROW_BLOCK, per_chunk // n // ROW_BLOCK * ROW_BLOCK), n
    draws = per_chunk // block_rows // DRAW_BLOCK * DRAW_BLOCK
    return ROW_BLOCK, max(DRAW_BLOCK, draws)


def joint_chunks(
    model, z: np.ndarray, cols: list[int], n: int, seed: int, how
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Yield ``(rows, draws, samples)``: standardized ``(rows, draws, len(cols))`` chunks.

    Parameters
    ----------
    model : DensityModel
    z : ndarray, shape (R, V)
        Standardized given rows (NaN = not given).
    cols : list of int
        Vocabulary indices of the requested columns, in chain order.
    n : int
        Joint draws per given row.
    seed : int
    how : tuple
        The resolved sampler (see ``DensityModel._how``).
    """
    R, V = z.shape
    if R == 0:
        return
    per_chunk = model._rows_per_chunk(1, V)  # one virtual row per (row, draw) pair
    rows_per, draws_per = joint_plan(R, n, per_chunk)
    for r0 in range(0, R, rows_per):
        rows = slice(r0, min(R, r0 + rows_per))
        for d0 in range(0, n, draws_per):
            draws = slice(d0, min(n, d0 + draws_per))
            with torch.no_grad(), model._autocast():  # not around the yield: the caller's code
                out = _chunk(model, z[rows], cols, rows, draws, seed, how)
            yield rows, draws, out


def _chunk(model, zr, cols, rows: slice, draws: slice, seed: int, how) -> np.ndarray:
    dev = model.device
    nr, nd = zr.shape[0], draws.stop - draws.start
    tokens, values = model._encode_inputs(zr)
    student = model._student(how)
    first = model._condition(tokens, values, cols[0], how)
    x = solve(model.network, first, BlockNoise(seed, cols[0], rows, draws, dev), how, student)
    chain = np.repeat(zr, nd, axis=0)  # (nr·nd, V): row r's draws are rows r·nd … r·nd+nd-1
    chain[:, cols[0]] = x.float().cpu().numpy().reshape(-1)
    for j in cols[1:]:
        tokens, values = model._encode_inputs(chain)
        cond = model._condition(tokens, values, j, how)
        block = BlockNoise(seed, j, rows, draws, dev)
        x = solve(model.network, cond, lambda b=block: b().reshape(-1, 1, 1), how, student)
        chain[:, j] = x[:, 0].float().cpu().numpy()
    return chain[:, cols].reshape(nr, nd, len(cols)).astype(np.float64)
