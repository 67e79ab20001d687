"""Rows of given values → the encoder's padded (token, value) tensors.

Given rows come in physical units as a mapping of columns, a pandas/polars DataFrame or
an Arrow table; missing or NaN means not given. :func:`given_matrix` turns any of them
into one (R, V) float64 array; :func:`encode_inputs` turns standardized rows into the
tokens of their present values, padded to the row with the most.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

__all__ = ["given_matrix", "encode_inputs", "input_width"]


def given_matrix(given, n_columns: int, index: Callable[[str], int]) -> tuple[np.ndarray, bool]:
    """Physical given rows → (R, V) float64 with NaN; also whether it was one row.

    ``index`` maps a column name to its position (and raises, naming the valid ones, for an
    unknown name).
    """
    if given is None:
        given = {}
    if hasattr(given, "to_pandas") and not hasattr(given, "to_dict"):
        given = given.to_pandas()  # Arrow table
    if hasattr(given, "columns") and not isinstance(given, Mapping):
        cols = [str(c) for c in given.columns]
        data = {c: np.asarray(given[c], dtype=np.float64) for c in cols}
        one_row = False
    else:
        data = {k: np.asarray(v, dtype=np.float64) for k, v in dict(given).items()}
        one_row = all(v.ndim == 0 for v in data.values())
    n = 1 if one_row or not data else len(next(iter(data.values())))
    out = np.full((n, n_columns), np.nan)
    for name, col in data.items():
        if col.ndim > 1 or (col.ndim == 1 and len(col) != n):
            raise ValueError(f"given column {name!r} has shape {col.shape}, expected ({n},)")
        out[:, index(name)] = col
    return out, one_row or not data


def encode_inputs(
    z: np.ndarray, device: torch.device, width: int | None = None, errors: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Standardized (R, V) with NaN → padded tokens (ids 1..V, 0 = padding), values and
    the values' error features (``errors`` (R, V), NaN = not known; None without).

    ``width``: the number of token positions (at least the most values present in a row; by
    default exactly that), so that rows encoded in parts get the positions they get together.
    """
    present = ~np.isnan(z)
    if width is None:
        width = input_width(z)
    order = np.argsort(~present, axis=1, kind="stable")[:, :width]
    used = np.take_along_axis(present, order, axis=1)
    tokens = np.where(used, order + 1, 0)
    values = np.where(used, np.take_along_axis(np.nan_to_num(z), order, axis=1), 0.0)
    errs = None
    if errors is not None:
        errs = np.where(used, np.take_along_axis(errors, order, axis=1), np.nan)
        errs = torch.as_tensor(errs, dtype=torch.float32, device=device)
    return (
        torch.as_tensor(tokens, device=device),
        torch.as_tensor(values, dtype=torch.float32, device=device),
        errs,
    )


def input_width(z: np.ndarray, block: int = 4096) -> int:
    """The most values present in a row of ``z`` (at least 1): the encoder's token positions.

    Counted ``block`` rows at a time, so that a large table needs no full-size mask.
    """
    most = 0
    for r0 in range(0, z.shape[0], block):
        most = max(most, int((~np.isnan(z[r0 : r0 + block])).sum(axis=1).max(initial=0)))
    return max(1, most)
