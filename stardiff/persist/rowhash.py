"""Rows identified by their content: a 64-bit hash of a row's values.

A model folder records the hashes of its training and validation rows
(``rows.safetensors``), so ``stardiff evaluate`` recognises a training row in any table,
shuffled, subsampled or concatenated with new rows, and never scores it as a test row.
Two rows hash alike when they hold the same values in the model's columns (NaN = missing,
``-0.0`` = ``0.0``); 64 bits make an accidental collision among a few million rows
improbable (about 1e-7 for 2e6 rows).

Rows that are *nearly* the same (a training table written to CSV with ``%.6g``, cast to
float32, rounded) hash differently; :func:`near_hashes` gives them keys that collide: each row's
standardized values are projected on random directions and cut into bins
(locality-sensitive hashing), in :data:`NEAR_TABLES` independent tables, so two rows within
rounding of each other share a key in at least one table with high probability (and two
distinct rows almost never do). ``stardiff evaluate`` uses them to warn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NEAR_TABLES", "near_hashes", "row_hashes"]

_SEED = np.uint64(0x5EED_C0DE_1234_5678)
_NAN = np.float64("nan").view(np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: every input bit moves about half of the output bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_hashes(values: np.ndarray) -> np.ndarray:
    """uint64 hash of each row of a float matrix (N, V), order of the columns included."""
    v = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 → 0.0
    bits = v.view(np.uint64).copy()
    bits[np.isnan(v)] = _NAN  # every NaN payload is the same missing value
    h = np.full(v.shape[0], _SEED, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(v.shape[1]):
            h = _mix(h ^ _mix(bits[:, j] + np.uint64(j + 1)))
    return h


# Locality-sensitive hashing of standardized rows: tables, projections per table, bin width
# [robust σ] and the seed of the projections. Rows closer than about 1e-3 σ (rounding to six
# digits) share a key in one of the tables with probability > 0.999; rows 0.1 σ apart, about
# 1e-3 (a warning counts near rows, it never sets them aside).
NEAR_TABLES = 4
"""Number of independent hash tables (columns of :func:`near_hashes`' keys)."""
NEAR_PROJECTIONS, NEAR_WIDTH = 8, 0.05
_NEAR_SEED = 0x4E_45_41_52


def near_hashes(z: np.ndarray) -> np.ndarray:
    """uint64 keys ``(N, NEAR_TABLES)`` of standardized rows (N, V), NaN = missing.

    Rows whose values differ by rounding share a key in one column with high probability;
    which values are missing is part of every key.
    """
    z = np.asarray(z, dtype=np.float64)
    rng = np.random.default_rng([_NEAR_SEED, z.shape[1]])
    a = rng.normal(size=(NEAR_TABLES, NEAR_PROJECTIONS, z.shape[1]))
    b = rng.uniform(0.0, NEAR_WIDTH, size=(NEAR_TABLES, NEAR_PROJECTIONS))
    present = np.isfinite(z)
    filled = np.where(present, z, 0.0)
    keys = np.empty((z.shape[0], NEAR_TABLES), dtype=np.uint64)
    for t in range(NEAR_TABLES):
        bins = np.floor((filled @ a[t].T + b[t]) / NEAR_WIDTH)
        keys[:, t] = row_hashes(np.column_stack([bins, present, np.full(len(z), t)]))
    return keys
