"""Checks on values at the model's edges: given values outside the training data, samples
that are not finite.

A model only knows the range of its training rows; a given value far outside it is an
extrapolation whose samples mean little (or overflow to NaN). :func:`column_ranges` records
each column's training range and robust spread in the model's ``config.json``;
:func:`warn_out_of_range` names every given column outside it and says how far;
:func:`check_finite` turns non-finite samples into an error instead of a silent output.
"""

from __future__ import annotations

import warnings

import numpy as np

from stardiff.errors import NonFiniteSamples, OutOfRangeWarning

__all__ = ["column_ranges", "warn_out_of_range", "check_finite"]

MAD_TO_SIGMA = 1.4826


def column_ranges(values: np.ndarray, names) -> dict[str, list[float]]:
    """Per column ``[min, max, robust σ]`` of the finite training values (physical units)."""
    out = {}
    for j, name in enumerate(names):
        x = values[:, j]
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        med = float(np.median(x))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(x - med))) or float(np.std(x))
        out[name] = [float(x.min()), float(x.max()), sigma]
    return out


def warn_out_of_range(
    given: np.ndarray, names, ranges: dict, where: str = "given"
) -> np.ndarray | None:
    """Warn (:class:`OutOfRangeWarning`) for each column with given values outside its range.

    Parameters
    ----------
    given : ndarray, shape (R, V)
        Given values in physical units, NaN = not given.
    names : sequence of str
        The V column names.
    ranges : dict
        Output of :func:`column_ranges` (columns without a range are not checked).

    Returns
    -------
    ndarray of int, shape (R,), or None
        Per row, the column lying farthest outside its range (in robust σ), -1 for none
        (None: the model records no ranges).
    """
    if not ranges:
        return None
    worst = np.full(given.shape[0], -1)
    worst_sigma = np.zeros(given.shape[0])
    for j, name in enumerate(names):
        if name not in ranges:
            continue
        lo, hi, sigma = ranges[name]
        x = given[:, j]
        with np.errstate(invalid="ignore"):
            far = np.where(x < lo, lo - x, np.where(x > hi, x - hi, 0.0))
        far = np.where(np.isfinite(x), far, 0.0)
        if not far.any():
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            in_sigma = far / sigma if sigma > 0 else far
        farther = (far > 0) & (in_sigma > worst_sigma)
        worst[farther], worst_sigma[farther] = j, in_sigma[farther]
        k = int(np.argmax(far))
        n_out = int((far > 0).sum())
        scale = f" ({far[k] / sigma:.3g} robust σ)" if sigma > 0 else ""
        rows = f"{n_out} of {len(x)} rows, e.g. " if len(x) > 1 else ""
        warnings.warn(
            f"{where}: {name} outside the training range [{lo:.6g}, {hi:.6g}] in "
            f"{rows}{name}={x[k]:.6g}, {far[k]:.3g} beyond it{scale}; its samples extrapolate",
            OutOfRangeWarning,
            stacklevel=3,
        )
    return worst


def check_finite(samples: np.ndarray, column: str, far=None, names=()) -> None:
    """Raise :class:`NonFiniteSamples` if any sample of ``column`` (rows, n) is not finite.

    ``far`` (:func:`warn_out_of_range`: per given row, the column farthest outside the
    training range, or -1) says why, and which column the error names: a given value so far
    outside overflows the model; with none there, the model itself produced them.
    """
    bad = ~np.isfinite(samples)
    if not bad.any():
        return
    s = np.atleast_2d(samples)
    rows = np.flatnonzero((~np.isfinite(s)).any(axis=-1))
    what = f"{int(bad.sum())} of {bad.size} samples of {column} are not finite"
    j = -1 if far is None else int(np.asarray(far)[rows[0]])
    if j >= 0:
        rows = rows[np.asarray(far)[rows] == j]
        why = f"{what}: a given value this far outside the training range overflows the model"
        raise NonFiniteSamples("given", names[j], rows, why)
    why = f"{what} although every given value lies within the training range; the model "
    raise NonFiniteSamples("given", column, rows, why + "itself produced them (damaged weights?)")
