"""The rows a model is scored on: a table read in the model's column order, one split of it.

Rows are identified by content: a model folder records the hashes of its training and
validation rows (:mod:`stardiff.persist.rowhash`), so in any table (the training table, a shuffled
or subsampled copy of it, new rows) the rows that were trained on are found and never
scored as test rows; a table of new rows is scored on all its rows. For a model that
records no row hashes the recipe's split labels or permutation are used, with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stardiff.recipe import Recipe

__all__ = ["SPLITS", "EvalData", "load_eval_data"]

SPLITS = ("train", "validation", "test", "all")


@dataclass
class EvalData:
    """The evaluation rows of a table in the model's column order (physical units)."""

    name: str
    columns: tuple[str, ...]
    values: np.ndarray  # (N, V), NaN = missing
    train_std: np.ndarray  # (V,) std of each column over the training rows
    split: str  # the rows actually used: a split name or "all"
    table_columns: list[str]  # every column of the file (but a split column)
    rows: dict = field(default_factory=dict)  # how the rows were split ("by") and counts
    index: np.ndarray | None = None  # each row's number in the table (errors name it)
    sigmas: np.ndarray | None = None  # (N, V) measurement errors, for a model that reads them


def load_eval_data(model, table: str | Path, split: str, recipe: Recipe | None) -> EvalData:
    """Read ``table``, keep the model's columns and the rows of ``split``."""
    from stardiff.tables import read_errors, read_table, table_columns

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    d = recipe.data if recipe else None
    path = Path(table)
    label = d.split_column if d and d.split_column else ""
    names = [c for c in table_columns(path) if c != label]
    use = [c for c in names if c in model.columns]
    if not use:
        raise ValueError(f"{path.name}: no column of the model ({', '.join(model.columns)})")
    features = getattr(model, "error_features", None)
    errs = set() if features is None else set(features.present(names, model.columns).values())
    ignored = [c for c in names if c not in model.columns and c not in errs]
    if ignored:  # said, never silent; a model column with a bad cell is an error below
        warnings.warn(
            f"{path.name}: scoring with columns {', '.join(use)}; ignored (not model "
            f"columns): {', '.join(ignored)}",
            stacklevel=3,
        )
    t = read_table(path, use, label if label in table_columns(path) else "")
    idx = {c: t.names.index(c) for c in model.columns if c in t.names}
    values = np.full((t.values.shape[0], len(model.columns)), np.nan)
    for j, c in enumerate(model.columns):
        if c in idx:
            values[:, j] = t.values[:, idx[c]]
    n = values.shape[0]
    z = model.pre.encode(values, where=path.name)  # impossible values: named, absolute rows
    parts, by = _parts(model, values, t.split, d)
    if parts is None or split == "all":
        sel, used = np.arange(n), "all"
    else:
        sel, used = parts[SPLITS.index(split)], split
        if sel.size == 0 and by == "content" and split == "test":
            raise ValueError(
                f"{path.name}: every row is a training ({parts[0].size}) or validation "
                f"({parts[1].size}) row of the model, none is a test row; score them "
                "knowingly with --split train, validation or all"
            )
        if sel.size == 0:
            raise ValueError(f"{path.name}: split {split!r} has no rows; try --split all")
    rows = {"by": by, "table": n, "scored": int(sel.size)}
    if parts is not None:
        rows.update({k: int(p.size) for k, p in zip(SPLITS[:3], parts, strict=True)})
    if by == "content" and used == "test":
        rows["near_training"] = _near_training(model, z[sel], path.name)
    std_rows = parts[0] if parts is not None and parts[0].size else np.arange(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        std = np.nanstd(values[std_rows], axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, np.nan)
    sigmas = None
    if features is not None:
        sigmas = read_errors(path, list(model.columns), features.template)[0]
        sigmas = sigmas[sel] if len(sigmas) else None
    return EvalData(
        path.name, tuple(model.columns), values[sel], std, used, names, rows, sel, sigmas
    )


def _near_training(model, z: np.ndarray, name: str) -> int | None:
    """How many test rows are near-duplicates of training or validation rows; warn if many.

    Exact copies are found by their hashes and never scored; a copy written with fewer
    digits (a ``%.6g`` CSV, float32) has other hashes, so its rows are found by
    :func:`stardiff.persist.near_hashes` instead. Returns None for a model that records no
    near keys (trained by an older stardiff).
    """
    from stardiff.persist import load_row_hashes, near_hashes

    known = load_row_hashes(model.folder)
    if not known or "near" not in known or z.shape[0] == 0:
        return None
    near = int(np.isin(near_hashes(z), known["near"]).any(axis=1).sum())
    if near and near >= NEAR_SHARE * z.shape[0]:
        warnings.warn(
            f"{name}: {near:,} of {z.shape[0]:,} test rows are near-duplicates of the model's "
            "training or validation rows (equal up to rounding: a copy written with fewer "
            "digits?); they are scored as test rows, and the scores flatter the model",
            stacklevel=4,
        )
    return near


#: The share of near-duplicate test rows above which ``evaluate`` warns (a few rows close to a
#: training row by chance are no copy).
NEAR_SHARE = 0.01


def _parts(model, values: np.ndarray, labels, d) -> tuple[tuple | None, str]:
    """(train, validation, test) row indices of the table and how they were found."""
    from stardiff.persist import load_row_hashes, row_hashes
    from stardiff.tables import split_rows

    known = load_row_hashes(model.folder) if model.folder is not None else None
    n = values.shape[0]
    if known is not None:
        h = row_hashes(values)
        train = np.isin(h, known["train"])
        val = np.isin(h, known["validation"]) & ~train
        parts = np.flatnonzero(train), np.flatnonzero(val), np.flatnonzero(~(train | val))
        return parts, "content"
    if labels is not None:
        return split_rows(n, labels=labels), "labels"
    if d is not None and 0 < d.test_rows < n:
        warnings.warn(
            "the model records no training rows (trained by an older stardiff): the recipe's "
            "permutation picks the test rows, which is right only for the training table "
            "itself, unshuffled",
            stacklevel=3,
        )
        parts = split_rows(
            n, test_rows=d.test_rows, validation_fraction=d.validation_fraction, seed=d.split_seed
        )
        return parts, "permutation"
    return None, "none"
