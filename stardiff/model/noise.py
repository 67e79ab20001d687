"""Reproducible sampling noise that does not depend on how the work is chunked.

Rows are grouped in blocks of ``ROW_BLOCK`` and draws in blocks of ``DRAW_BLOCK``; each
(row block, draw block) has its own generator seeded from ``(seed, column, block)``.
A chunk of work always covers whole blocks, so the same seed gives the same samples for
any memory bound, and a column's samples do not depend on which other columns were
requested with it.
"""

from __future__ import annotations

import numpy as np
import torch

ROW_BLOCK = 64
DRAW_BLOCK = 1024

__all__ = ["ROW_BLOCK", "DRAW_BLOCK", "BlockNoise"]


class BlockNoise:
    """Standard-normal noise for the rows ``rows`` × draws ``draws`` of one sampling chain.

    Parameters
    ----------
    seed : int
        The user's seed.
    column : int
        The requested column (so each column has its own stream).
    rows, draws : slice
        The part of the (rows × draws) grid this chunk covers; both start on a block edge.
    device : torch.device
    """

    def __init__(self, seed: int, column: int, rows: slice, draws: slice, device):
        if rows.start % ROW_BLOCK or draws.start % DRAW_BLOCK:
            raise ValueError("sampling chunks must start on a noise-block edge")
        self.shape = (rows.stop - rows.start, draws.stop - draws.start)
        self.device = device
        self._blocks = []  # (row offset, row count, draw offset, draw count, generator)
        for r0 in range(rows.start, rows.stop, ROW_BLOCK):
            for d0 in range(draws.start, draws.stop, DRAW_BLOCK):
                key = [seed, column, r0 // ROW_BLOCK, d0 // DRAW_BLOCK]
                state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
                gen = torch.Generator(device=device)
                gen.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
                nr = min(ROW_BLOCK, rows.stop - r0)
                nd = min(DRAW_BLOCK, draws.stop - d0)
                self._blocks.append((r0 - rows.start, nr, d0 - draws.start, nd, gen))

    def __call__(self) -> torch.Tensor:
        """One fresh (rows, draws, 1) tensor of noise: the next draw of every block."""
        out = torch.empty(*self.shape, 1, device=self.device)
        for r, nr, d, nd, gen in self._blocks:
            out[r : r + nr, d : d + nd] = torch.randn(nr, nd, 1, generator=gen, device=self.device)
        return out
