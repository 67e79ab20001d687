"""Random (row, request, inputs) conditioning tasks on a table, as in training and Fig. 5."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["random_tasks"]


def random_tasks(
    values: ArrayLike,
    n_tasks: int,
    rng: np.random.Generator | int | None = None,
    *,
    requestable: ArrayLike | None = None,
    max_given: int | None = None,
) -> tuple[NDArray, NDArray, NDArray]:
    """Random (row, request, subset) conditioning tasks on a table with missing values.

    Each task picks a row uniformly (among rows with a requestable value), a requested column
    among that row's present requestable columns, a number of inputs ``L`` uniform in
    ``0..min(max_given, present - 1)`` and ``L`` distinct present columns other than the request.

    Parameters
    ----------
    values : array_like, shape (N, V)
        The table, NaN = missing.
    n_tasks : int
        Number of tasks.
    rng : numpy.random.Generator or int or None, optional
        Random source.
    requestable : array_like of bool, shape (V,), optional
        Columns that may be requested (all by default).
    max_given : int, optional
        Largest number of given columns (no limit by default).

    Returns
    -------
    rows : ndarray of int, shape (T,)
        Row index of each task.
    request : ndarray of int, shape (T,)
        Requested column of each task.
    given : ndarray, shape (T, V)
        The task's inputs (NaN = not given; the request is always NaN). The truth of task ``t``
        is ``values[rows[t], request[t]]``.
    """
    rng = np.random.default_rng(rng)
    x = np.asarray(values, dtype=float)
    ok = np.ones(x.shape[1], bool) if requestable is None else np.asarray(requestable, bool)
    candidates = np.flatnonzero((np.isfinite(x) & ok).any(axis=1))
    if candidates.size == 0:
        raise ValueError("no row has a requestable value")
    rows = rng.choice(candidates, size=n_tasks)
    request = np.empty(n_tasks, dtype=np.int64)
    given = np.full((n_tasks, x.shape[1]), np.nan)
    for t, i in enumerate(rows):
        present = np.isfinite(x[i])
        request[t] = rng.choice(np.flatnonzero(present & ok))
        others = np.flatnonzero(present)
        others = others[others != request[t]]
        top = others.size if max_given is None else min(max_given, others.size)
        chosen = rng.choice(others, size=rng.integers(0, top + 1), replace=False)
        given[t, chosen] = x[i, chosen]
    return rows, request, given
