"""The memory sampling needs, counted from the network's shapes, and chunk plans under a bound.

Drawing ``n`` samples for each of ``R`` given rows runs chunk by chunk: a chunk of rows is
encoded (the Transformer, once per row, in *encoder passes* of a few rows at a time), then the
solver draws the chunk's samples (the diffusion head, evaluated in *tiles* of samples). Only
the head's conditions (a few hundred floats per row) live from one phase to the next, so the
peak of a chunk is the larger of the two phases:

- encoder pass of ``e`` rows: ``e × encoder_row_bytes`` (see :func:`encoder_row_bytes`; the
  feed-forward layer's ``2·S·ff_dim`` floats per row dominate, and attention's
  ``heads·S²`` scores where the attention kernel materializes them);
- solver: the chunk's ``rows × draws`` samples (:data:`STATE_BYTES` each), plus one tile of
  head activations (:func:`head_sample_bytes` per sample) and the noise generator's block.

:func:`sample_plan` picks the largest chunk, encoder pass and tile whose peak stays under
``max_memory``; :func:`chain_plan` does the same for chained joint draws, where every
(row, draw) pair is encoded as its own row. Chunks are whole noise blocks (``ROW_BLOCK`` rows ×
``DRAW_BLOCK`` draws) so the noise does not depend on the plan. An encoder pass is whole noise
blocks of rows or a power of two of rows, starting at a multiple of its size, and on CPU the
head's tiles do not depend on the bound, so at one thread the matrix products see their rows at
the same offsets whatever the bound and the samples keep every bit (measured on x86-64 AVX2 for
passes of 4 rows or more; passes of 1 or 2 rows, taken only where 4 rows do not fit, may
change the last bits). The counts are for float32 (upper bounds under bf16 autocast);
``benchmarks/sample_memory.py`` measures the peak RSS against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from stardiff.model import DRAW_BLOCK, ROW_BLOCK, TILE_BYTES

__all__ = [
    "STATE_BYTES",
    "ChunkPlan",
    "JointPlan",
    "encoder_row_bytes",
    "head_sample_bytes",
    "condition_row_bytes",
    "input_row_bytes",
    "scores_materialized",
    "sample_plan",
    "chain_plan",
    "block_tiling",
]

F32 = 4
#: Bytes per (row, draw) of a chunk while the solver runs: the sample, its noise, the head's
#: output, two temporaries of the update, and the float64 copy handed back (4·8 + 8).
STATE_BYTES = 40
#: The fewest samples a head tile holds (a tile of one sample would be all overhead).
MIN_TILE = 64


def head_sample_bytes(config) -> int:
    """Bytes per sample of one evaluation of the diffusion head: two activations of
    ``head_width`` floats (a block's input and output) and a few per-sample scalars."""
    return F32 * (2 * config.head_width + 8)


def condition_row_bytes(config) -> int:
    """Bytes kept per encoded row from the encoder to the end of its solve: the request's
    hidden state (``dim``), the head's per-block condition projections
    (``head_layers × head_width``) and their sums with a step's embedding (as many again)."""
    return F32 * (config.dim + 2 * config.head_layers * config.head_width)


def input_row_bytes(n_columns: int, width: int) -> int:
    """Bytes per row of turning standardized rows of ``n_columns`` values into the encoder's
    ``width`` tokens: the row, NaN mask, sort order and value copies (float64/int64), and the
    tokens and values handed to the network."""
    return 28 * n_columns + 52 * width


@lru_cache(maxsize=64)
def _scores_materialized(
    device_type: str, dtype: torch.dtype, heads: int, head_dim: int, square: bool
) -> bool:
    """Whether scaled-dot-product attention on this device falls back to the kernel that
    writes the full ``heads × S × S`` score matrix (the "math" kernel). The fused kernels
    (flash, memory-efficient) never do. Unknown: assume it does."""
    try:
        from torch.nn.attention import SDPBackend

        q = torch.zeros(1, heads, 2, head_dim, device=device_type, dtype=dtype)
        mask = torch.ones(1, 1, 2 if square else 1, 2, dtype=torch.bool, device=device_type)
        return int(torch._fused_sdp_choice(q, q, q, mask, 0.0, False)) == int(SDPBackend.MATH)
    except Exception:  # a torch without the query: count the scores
        return True


def scores_materialized(config, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the network's attention writes its score matrices on ``device`` in ``dtype``
    (asked of torch's kernel choice for the network's heads and mask shape)."""
    square = bool(config.isolated_requests or config.causal_inputs)
    return _scores_materialized(
        torch.device(device).type, dtype, config.n_heads, config.dim // config.n_heads, square
    )


def encoder_row_bytes(config, width: int, scores: bool = True) -> int:
    """Peak bytes of one row's encoder pass with ``width`` input tokens (inference).

    With ``S = width + 1`` tokens (the request and the inputs), ``D = dim``, ``F = ff_dim``
    and ``H = n_heads``, in float32, the largest of

    - the embedding: ``4·width·D + 2·S·D`` (weight × value, its GELU, the bias, their sum;
      then the sequence with the request);
    - a layer's attention: ``6·S·D + H·S`` (the layer's input, query/key/value, the attended
      values and their projection; the log-sum-exp), and ``2·H·S²`` more where the kernel
      materializes the scores (``scores``: the math kernel; the fused kernels do not);
    - a layer's feed-forward: ``2·S·F + 4·S·D`` (its hidden layer before and after the GELU;
      the layer's input, the normalized attention output, the residual sum and its norm);

    plus the attention mask (``2·S`` bytes; ``3·S²`` bytes and ``S²`` floats with isolated
    requests or causal inputs) and ``4·S·D`` for the allocator's reuse of freed buffers
    (measured peaks exceed the live tensors by up to ``4·S·D`` per row).
    """
    S, D, F, H = width + 1, config.dim, config.ff_dim, config.n_heads
    embed = 4 * width * D + 2 * S * D
    attention = 6 * S * D + H * S + (2 * H * S * S + 2 * S * D if scores else 0)
    feed_forward = 2 * S * F + 4 * S * D
    square = config.isolated_requests or config.causal_inputs
    mask = (F32 + 3) * S * S if square else 2 * S
    return F32 * (max(embed, attention, feed_forward) + 4 * S * D) + mask


def _pass_rows(fit: int, rows: int) -> int:
    """Rows of an encoder pass: all ``rows`` if they fit, else whole noise blocks of rows, else
    the largest power of two that fits (one row at the least)."""
    if fit >= rows:
        return rows
    if fit >= ROW_BLOCK:
        return fit // ROW_BLOCK * ROW_BLOCK
    return 1 << int(math.floor(math.log2(max(1, fit))))


def _noise_block(n_rows: int, n: int) -> int:
    """Bytes of the noise generator's temporary: one block of standard normals."""
    return min(n_rows, ROW_BLOCK) * min(n, DRAW_BLOCK) * F32


def _tile(config, device, samples: int, bound: int) -> int:
    """Samples per head tile. On CPU the solvers' own tiles (about ``TILE_BYTES`` of
    activations, whatever the bound: so that the samples do not depend on it); elsewhere at
    most an eighth of the bound (``MIN_TILE`` at the least) and no more than there are."""
    t0 = default_tile(config, device)
    if t0 is not None:
        return min(t0, max(1, samples))
    return max(MIN_TILE, min(samples, (bound // 8) // head_sample_bytes(config)))


def default_tile(config, device: torch.device) -> int | None:
    """Samples per tile the few-step solvers use anyway (a cache's worth on CPU; ``None``: the
    whole chunk, as on a GPU)."""
    if torch.device(device).type != "cpu":
        return None
    return max(MIN_TILE, TILE_BYTES // (F32 * config.head_width))


@dataclass(frozen=True)
class ChunkPlan:
    """How 1-D sampling of ``n`` draws per row is cut to stay under a memory bound.

    Attributes
    ----------
    rows, draws : int
        Given rows and draws per chunk (whole noise blocks, or all of them).
    encode : int
        Rows per encoder pass: all the chunk's rows, whole noise blocks of rows, or a power of
        two below ``ROW_BLOCK``.
    tile : int
        The most samples one evaluation of the head holds.
    peak : int
        Bytes the plan needs at most (the larger of the encoder and solver phases).
    bound : int
        The ``max_memory`` it was made for; ``peak`` exceeds it only where even the smallest
        plan does (one noise block, one encoded row, and a head tile: on CPU the solvers' own,
        about ``2 × TILE_BYTES``; elsewhere ``MIN_TILE`` samples).
    """

    rows: int
    draws: int
    encode: int
    tile: int
    peak: int
    bound: int


def sample_plan(
    config,
    n_rows: int,
    n_columns: int,
    width: int,
    n: int,
    max_memory: int,
    *,
    device: torch.device | str = "cpu",
    scores: bool = True,
) -> ChunkPlan:
    """The chunks of ``n_rows`` given rows (``n_columns`` values, ``width`` tokens) × ``n``
    draws whose peak memory stays under ``max_memory`` bytes.

    Besides one tile of the head and one block of noise, a quarter of the bound goes to the
    chunk's samples and conditions; the encoder passes get the rest of the bound (they do not
    overlap the solver). Chunks are as large as that allows: whole rows of draws when a noise
    block of rows fits, else one block of rows and whole blocks of draws.
    """
    M = int(max_memory)
    n_rows = max(1, n_rows)
    h = head_sample_bytes(config)
    c_row = condition_row_bytes(config)
    tile = _tile(config, device, n_rows * n, M)
    noise = _noise_block(n_rows, n)
    budget = (M - tile * h - noise) // 4
    whole = c_row + n * STATE_BYTES  # a row with all its draws
    if min(n_rows, ROW_BLOCK) * whole <= budget:
        rows, draws = max(ROW_BLOCK, budget // whole // ROW_BLOCK * ROW_BLOCK), n
    else:
        rows = ROW_BLOCK
        per_draw = min(n_rows, ROW_BLOCK) * STATE_BYTES
        fit = (budget - min(n_rows, ROW_BLOCK) * c_row) // per_draw
        draws = min(n, max(DRAW_BLOCK, fit // DRAW_BLOCK * DRAW_BLOCK))
    r = min(rows, n_rows)
    e_row = encoder_row_bytes(config, width, scores) + input_row_bytes(n_columns, width)
    encode = _pass_rows((M - r * c_row) // e_row, r)
    solver = r * c_row + r * min(draws, n) * STATE_BYTES + tile * h + noise
    peak = max(r * c_row + encode * e_row, solver)
    return ChunkPlan(rows, draws, encode, tile, peak, M)


@dataclass(frozen=True)
class JointPlan:
    """How chained joint draws are cut to stay under a memory bound.

    Attributes
    ----------
    rows, draws : int
        Given rows and draws per chunk (whole noise blocks, or all of them); every (row, draw)
        pair of a chunk is one chain.
    encode : int
        Chains encoded and solved together (a power of two, or whole noise blocks of chains).
    tile : int
        The most samples one evaluation of the head holds.
    peak : int
        Bytes the plan needs at most.
    bound : int
        The ``max_memory`` it was made for.
    """

    rows: int
    draws: int
    encode: int
    tile: int
    peak: int
    bound: int


def chain_plan(
    config,
    n_rows: int,
    n_columns: int,
    n_requested: int,
    n: int,
    max_memory: int,
    *,
    device: torch.device | str = "cpu",
    scores: bool = True,
) -> JointPlan:
    """The chunks of ``n_rows`` given rows × ``n`` joint draws of ``n_requested`` chained
    columns (``n_columns`` in the vocabulary) whose peak stays under ``max_memory`` bytes.

    A chunk keeps, per (row, draw) pair, the drawn values and their decoded copies
    (``16·n_requested`` bytes) and the first column's solver state; its chains then go through
    the encoder and the solver ``encode`` at a time, each encoded with up to ``n_columns``
    tokens. A quarter of the bound goes to the chunk, an eighth to one tile of the head and
    the rest to the chains in flight (with the noise blocks they draw from).
    """
    M = int(max_memory)
    n_rows = max(1, n_rows)
    h = head_sample_bytes(config)
    tile = _tile(config, device, n_rows * n, M)
    pair = 16 * n_requested + STATE_BYTES
    rows, draws = block_tiling(n_rows, n, max(1, (M // 4) // pair))
    r, d = min(rows, n_rows), min(draws, n)
    # the noise of the row blocks a group of chains touches (two blocks of rows beyond it)
    noise = min(r, 2 * ROW_BLOCK) * d * F32 + _noise_block(n_rows, n)
    chunk = r * d * pair
    c_row = condition_row_bytes(config)
    chain = (
        max(encoder_row_bytes(config, n_columns, scores), c_row + STATE_BYTES)
        + input_row_bytes(n_columns, n_columns)
        + 8 * n_columns
        + F32
    )
    encode = _pass_rows((M - chunk - tile * h - noise) // chain, r * d)
    peak = chunk + tile * h + noise + encode * chain
    return JointPlan(rows, draws, encode, tile, peak, M)


def block_tiling(n_rows: int, n: int, per_chunk: int) -> tuple[int, int]:
    """Rows and draws per chunk: whole noise blocks, at most ``per_chunk`` (row, draw) pairs
    when the blocks allow it (one block of rows × one block of draws at the least)."""
    block_rows = min(n_rows, ROW_BLOCK)
    if n_rows * n <= per_chunk:
        return n_rows, n
    if block_rows * n <= per_chunk:  # whole rows: their draws stay together
        return max(ROW_BLOCK, per_chunk // n // ROW_BLOCK * ROW_BLOCK), n
    draws = per_chunk // block_rows // DRAW_BLOCK * DRAW_BLOCK
    return ROW_BLOCK, max(DRAW_BLOCK, draws)
