"""Deterministic train/validation/test split from a seeded hash of each star's id.

A star's split depends only on ``(seed, id, fractions)``: never on row order, on the other
stars present or on the machine, so the same star lands in the same split across rebuilds and
subsets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["DEFAULT_FRACTIONS", "SPLITS", "hash_unit", "split_ids"]

SPLITS = ("train", "validation", "test")
#: LB24 held out 10% as a test set; a 5% validation set is carved out of its training part.
DEFAULT_FRACTIONS: Mapping[str, float] = {"train": 0.85, "validation": 0.05, "test": 0.10}


def _key(x) -> str:
    if isinstance(x, bytes):
        x = x.decode("ascii", "replace")
    if isinstance(x, np.integer | int):
        return str(int(x))
    return str(x).strip()


def hash_unit(ids: Iterable, seed: int) -> np.ndarray:
    """Map each id to a uniform number in [0, 1) with BLAKE2b of ``"<seed>:<id>"``.

    Integer ids hash as their decimal text; strings are stripped of surrounding blanks.
    """
    prefix = f"{int(seed)}:".encode()
    out = [
        int.from_bytes(hashlib.blake2b(prefix + _key(i).encode(), digest_size=8).digest(), "big")
        for i in ids
    ]
    return (np.asarray(out, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(2**53)


def _check_fractions(fractions: Mapping[str, float]) -> list[tuple[str, float]]:
    items = [(str(k), float(v)) for k, v in fractions.items()]
    if not items:
        raise ValueError("split fractions are empty")
    for name, frac in items:
        if not (0.0 <= frac <= 1.0):
            raise ValueError(f"split fraction {name}={frac} is not within [0, 1]")
    total = sum(f for _, f in items)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {total} from {dict(items)}")
    return items


def split_ids(
    ids: Iterable, *, seed: int = 0, fractions: Mapping[str, float] = DEFAULT_FRACTIONS
) -> np.ndarray:
    """Assign each id a split name.

    Parameters
    ----------
    ids : iterable of str or int
        Star ids (e.g. APOGEE_ID).
    seed : int
        Changing the seed reshuffles every star.
    fractions : mapping of split name to fraction
        Fractions in [0, 1] summing to 1; order matters (cumulative intervals of the hash).

    Returns
    -------
    ndarray of str
        The split name of each id.
    """
    items = _check_fractions(fractions)
    u = hash_unit(ids, seed)
    edges = np.cumsum([f for _, f in items])
    edges[-1] = np.inf  # rounding must never leave a star unassigned
    names = np.array([n for n, _ in items], dtype=object)
    idx = np.searchsorted(edges, u, side="right")
    return names[idx].astype(str)
