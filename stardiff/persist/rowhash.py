"""Rows identified by their content: a 64-bit hash of a row's values.

A model folder records the hashes of its training and validation rows
(``rows.safetensors``), so ``stardiff evaluate`` recognises a training row in any table,
shuffled, subsampled or concatenated with new rows, and never scores it as a test row.
Two rows hash alike when they hold the same values in the model's columns (NaN = missing,
``-0.0`` = ``0.0``); 64 bits make an accidental collision among a few million rows
improbable (about 1e-7 for 2e6 rows).
"""

from __future__ import annotations

import numpy as np

__all__ = ["row_hashes"]

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
