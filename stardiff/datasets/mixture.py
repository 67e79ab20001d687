"""A Gaussian mixture over the columns of a table, conditioned exactly on any subset.

Conditioning a Gaussian mixture on the given values of any subset of its columns gives a
Gaussian mixture again: responsibilities from each component's marginal likelihood of the
given values, means and variances by Schur complement (computed on internally standardized
columns). :mod:`stardiff.datasets.synthetic` builds its stellar populations on this; the
exact conditionals are the oracle of the fidelity benchmark and of the metric tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stardiff.metrics import gaussian_mixture_cdf

if TYPE_CHECKING:
    import polars as pl

__all__ = ["GaussianMixtureTable"]

_SHARED_PATTERN = 16  # rows sharing a given-pattern before it is factorized once for all
_ROW_CHUNK = 256  # rows per batched solve (memory ~ chunk * V**2 floats)


def _forward_substitution(chol: NDArray, rhs: NDArray) -> NDArray:
    """Solve ``L x = b`` for batched lower-triangular ``L`` (B, V, V) and ``b`` (B, V, R).

    A loop over ``V`` rows of vectorized updates; unlike batched LAPACK calls it does not
    depend on BLAS threading (which degrades badly for many small systems on busy machines).
    """
    x = np.empty_like(rhs)
    for i in range(rhs.shape[1]):
        acc = np.einsum("bj,bjr->br", chol[:, i, :i], x[:, :i]) if i else 0.0
        x[:, i] = (rhs[:, i] - acc) / chol[:, i, i, None]
    return x


@dataclass
class GaussianMixtureTable:
    """A Gaussian mixture over all columns of a table, with exact conditioning.

    Parameters
    ----------
    columns : tuple of str
        Column names, in table order (``V`` columns).
    component_names : tuple of str
        Names of the ``K`` populations.
    weights : ndarray, shape (K,)
        Mixture weights.
    means : ndarray, shape (K, V)
        Component means, physical units.
    covs : ndarray, shape (K, V, V)
        Component covariances (full), physical units.
    """

    columns: tuple[str, ...]
    component_names: tuple[str, ...]
    weights: NDArray
    means: NDArray
    covs: NDArray
    _center: NDArray = field(init=False, repr=False)
    _scale: NDArray = field(init=False, repr=False)
    _zmeans: NDArray = field(init=False, repr=False)
    _zcovs: NDArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=float)
        self.weights = w / w.sum()
        self.means = np.asarray(self.means, dtype=float)
        self.covs = np.asarray(self.covs, dtype=float)
        k, v = self.means.shape
        if self.covs.shape != (k, v, v) or len(self.columns) != v or self.weights.shape != (k,):
            raise ValueError("inconsistent mixture shapes")
        self._center = self.weights @ self.means
        dev = self.means - self._center
        var = self.weights @ (np.diagonal(self.covs, axis1=1, axis2=2) + dev**2)
        self._scale = np.sqrt(var)
        self._zmeans = dev / self._scale
        self._zcovs = self.covs / np.outer(self._scale, self._scale)

    @property
    def n_columns(self) -> int:
        """Number of columns ``V``."""
        return len(self.columns)

    def column_index(self, column: str | int) -> int:
        """Index of a column given its name (or pass an index through, checked)."""
        if isinstance(column, str):
            return self.columns.index(column)
        idx = int(column)
        if not 0 <= idx < self.n_columns:
            raise IndexError(f"column index {idx} out of range")
        return idx

    def sample(
        self, n: int, rng: np.random.Generator | int | None = None
    ) -> tuple[NDArray, NDArray]:
        """Draw ``n`` complete rows: values (n, V), physical units, and population index (n,)."""
        rng = np.random.default_rng(rng)
        comp = rng.choice(len(self.weights), size=n, p=self.weights)
        values = rng.standard_normal((n, self.n_columns))
        for k, chol in enumerate(np.linalg.cholesky(self.covs)):
            rows = comp == k
            values[rows] = self.means[k] + values[rows] @ chol.T
        return values, comp

    def table(self, n: int, seed: int = 0, *, missing: float = 0.1) -> pl.DataFrame:
        """Draw ``n`` rows and blank each value independently with probability ``missing``."""
        if not 0.0 <= missing < 1.0:
            raise ValueError(f"missing must be in [0, 1), got {missing}")
        rng = np.random.default_rng(seed)
        values, _ = self.sample(n, rng)
        values[rng.random(values.shape) < missing] = np.nan
        import polars as pl  # only tables need polars; the model itself is numpy

        return pl.DataFrame({name: values[:, j] for j, name in enumerate(self.columns)})

    def exact_conditional_batch(
        self, values: ArrayLike, request: str | int | ArrayLike
    ) -> tuple[NDArray, NDArray, NDArray]:
        """Exact conditional mixture of one column given the non-NaN values of each row.

        Parameters
        ----------
        values : array_like, shape (N, V)
            Physical values; NaN = not given. The requested column's own value is ignored.
        request : str or int or array_like of int, shape (N,)
            The requested column (name or index), or one column index per row.

        Returns
        -------
        weights, means, stds : ndarray, shape (N, K)
            Per-row Gaussian-mixture parameters of the requested column, physical units.
            Rows with nothing given get the marginal.
        """
        x = np.atleast_2d(np.asarray(values, dtype=float))
        if x.shape[1] != self.n_columns:
            raise ValueError(f"values must have {self.n_columns} columns, got {x.shape[1]}")
        if not isinstance(request, str) and np.ndim(request) == 1:
            req = np.asarray(request, dtype=np.int64)
            if req.shape != (x.shape[0],):
                raise ValueError("a per-row request must have one entry per row")
            out = tuple(np.empty((x.shape[0], len(self.weights))) for _ in range(3))
            for r in np.unique(req):
                sel = req == r
                for dst, src in zip(out, self.exact_conditional_batch(x[sel], int(r)), strict=True):
                    dst[sel] = src
            return out
        r = self.column_index(request)
        z = (x - self._center) / self._scale
        given = np.isfinite(z)
        given[:, r] = False
        z = np.where(given, z, 0.0)
        shape = (x.shape[0], len(self.weights))
        logw, mean, var = np.empty(shape), np.empty(shape), np.empty(shape)
        patterns, inverse, counts = np.unique(
            given, axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.ravel()
        for k in range(len(self.weights)):
            # a pattern shared by many rows: one factorization, many right-hand sides
            for p in np.flatnonzero(counts >= _SHARED_PATTERN):
                rows = np.flatnonzero(inverse == p)
                terms = self._component_terms(k, r, patterns[p][None], z[rows].T[None])
                logw[rows, k], mean[rows, k], var[rows, k] = (t[0] for t in terms)
            # rare patterns: one small system per row, batched
            single = np.flatnonzero(counts[inverse] < _SHARED_PATTERN)
            for start in range(0, single.size, _ROW_CHUNK):
                rows = single[start : start + _ROW_CHUNK]
                terms = self._component_terms(k, r, given[rows], z[rows][:, :, None])
                logw[rows, k], mean[rows, k], var[rows, k] = (t[:, 0] for t in terms)
        logw -= logw.max(axis=1, keepdims=True)
        w = np.exp(logw)
        w /= w.sum(axis=1, keepdims=True)
        scale = self._scale[r]
        return w, mean * scale + self._center[r], np.sqrt(var) * scale

    def _component_terms(
        self, k: int, r: int, given: NDArray, z: NDArray
    ) -> tuple[NDArray, NDArray, NDArray]:
        """Conditional terms of column ``r`` in component ``k`` (standardized units).

        Parameters
        ----------
        k, r : int
            Component and requested column.
        given : ndarray of bool, shape (B, V)
            ``B`` given-column patterns.
        z : ndarray, shape (B, V, R)
            ``R`` standardized rows per pattern (zero where not given).

        Returns
        -------
        log_weight, mean, var : ndarray, shape (B, R)
            Unnormalized log responsibility, conditional mean and variance.

        Notes
        -----
        With ``m`` the 0/1 pattern, the masked matrix ``M = m m^T * Sigma + diag(1 - m)`` equals
        ``Sigma_gg`` on the given block and the identity elsewhere, so one batched Cholesky
        factor ``L`` of ``M`` whitens the given block for any pattern (``L^-1`` applied by
        forward substitution), and ``log det M = log det Sigma_gg``.
        """
        mu, cov = self._zmeans[k], self._zcovs[k]
        m = given.astype(float)
        mat = cov * m[:, :, None] * m[:, None, :]
        diag = np.arange(self.n_columns)
        mat[:, diag, diag] += 1.0 - m
        chol = np.linalg.cholesky(mat)
        dev = (z - mu[None, :, None]) * m[:, :, None]
        cross = cov[:, r] * m  # Sigma_gr, zero outside the given block
        white = _forward_substitution(chol, np.concatenate([dev, cross[:, :, None]], axis=2))
        white_dev, white_cross = white[:, :, :-1], white[:, :, -1]
        mahal = np.sum(white_dev**2, axis=1)
        shift = np.einsum("bv,bvr->br", white_cross, white_dev)
        reduction = np.sum(white_cross**2, axis=1)
        log_det = 2.0 * np.sum(np.log(chol[:, diag, diag]), axis=1)
        n_given = m.sum(axis=1)
        loglik = -0.5 * (mahal + (log_det + n_given * np.log(2.0 * np.pi))[:, None])
        var = np.maximum(cov[r, r] - reduction, 1e-300)[:, None]
        return np.log(self.weights[k]) + loglik, mu[r] + shift, np.broadcast_to(var, shift.shape)

    def _row_array(self, given: Mapping[str, float] | ArrayLike) -> NDArray:
        """One row (1, V) from a mapping of column name -> value or an array of length V."""
        if isinstance(given, Mapping):
            row = np.full((1, self.n_columns), np.nan)
            for name, value in given.items():
                row[0, self.column_index(name)] = value
            return row
        row = np.asarray(given, dtype=float).reshape(1, -1)
        if row.shape[1] != self.n_columns:
            raise ValueError(f"a row must have {self.n_columns} values")
        return row

    def exact_conditional(
        self, given: Mapping[str, float] | ArrayLike, request: str | int
    ) -> tuple[NDArray, NDArray, NDArray]:
        """Exact conditional of ``request`` given one row of values.

        Parameters
        ----------
        given : mapping of str to float, or array_like of length V
            Given values by column name (NaN = not given), or a full row with NaN = not given.
        request : str or int
            The requested column.

        Returns
        -------
        weights, means, stds : ndarray, shape (K,)
            The Gaussian mixture of the requested column, physical units.
        """
        w, m, s = self.exact_conditional_batch(self._row_array(given), request)
        return w[0], m[0], s[0]

    def exact_cdf(self, values: ArrayLike, request: str | int | ArrayLike, x: ArrayLike) -> NDArray:
        """Exact conditional CDF of ``request`` at ``x`` (shape (N,) or (N, S)), per row."""
        w, m, s = self.exact_conditional_batch(values, request)
        return gaussian_mixture_cdf(np.asarray(x, dtype=float), w, m, s)

    def sample_exact_conditional(
        self,
        values: ArrayLike,
        request: str | int | ArrayLike,
        n_samples: int,
        rng: np.random.Generator | int | None = None,
        *,
        std_factor: float = 1.0,
    ) -> NDArray:
        """Draw from the exact conditional of each row (an oracle sampler).

        Parameters
        ----------
        values : array_like, shape (N, V)
            Given values, NaN = not given.
        request : str or int or array_like of int, shape (N,)
            The requested column, or one column index per row.
        n_samples : int
            Draws per row.
        rng : numpy.random.Generator or int or None, optional
            Random source.
        std_factor : float, optional
            Multiplies every component std (1 = exact; < 1 makes a deliberately over-confident
            sampler for tests of the calibration metrics).

        Returns
        -------
        ndarray, shape (N, n_samples)
            Samples in physical units.
        """
        rng = np.random.default_rng(rng)
        w, m, s = self.exact_conditional_batch(values, request)
        cum = np.cumsum(w, axis=1)
        u = rng.random((w.shape[0], n_samples))
        comp = np.minimum((u[:, :, None] > cum[:, None, :]).sum(axis=2), w.shape[1] - 1)
        mean = np.take_along_axis(m, comp, axis=1)
        std = np.take_along_axis(s, comp, axis=1) * std_factor
        return mean + std * rng.standard_normal(mean.shape)
