"""Measurement errors of the inputs as the encoder's error features.

Each value given with an error ``σ`` carries ``E = (log u − centre) / scale``, where ``u`` is
the error in model units (the column's transform and standardization applied to ``x ± σ``)
and ``centre``/``scale`` are the median and robust spread of ``log u`` over the training rows.
A value without a (finite, positive) error has ``E = NaN``: the model's "error not known".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["ErrorFeatures", "error_columns"]

MAD_TO_SIGMA = 1.4826


def error_columns(template: str, names, available) -> dict[str, str]:
    """``data.errors`` (a template such as ``"{}_err"``) → {column: its error column} for the
    columns whose error column the table has."""
    have = set(available)
    return {c: template.format(c) for c in names if template.format(c) in have}


def _units(pre, values: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Errors in model units: half the standardized width of ``x ± σ`` (one-sided where
    ``x − σ`` is outside the transform's domain). An error below ``x``'s float resolution
    is carried by the slope over a resolvable step ``h``: width(h) · σ / h."""
    u = np.full(values.shape, np.nan)
    for j, t in enumerate(pre.transforms):
        x, s = values[:, j], sigmas[:, j]
        ok = np.isfinite(x) & np.isfinite(s) & (s > 0)
        if not ok.any():
            continue
        xs, ss = x[ok], s[ok]
        h = np.maximum(ss, 1e-7 * np.abs(xs))  # x ± h differs from x in float64
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            hi, lo, mid = t.forward(xs + h), t.forward(xs - h), t.forward(xs)
            width = np.where(np.isfinite(lo), hi / 2 - lo / 2, hi - mid) * (ss / h)
        u[ok, j] = np.abs(width) / pre.std.scale[j]
    return u


class ErrorFeatures:
    """Per-column standardization of ``log u`` (see the module docstring)."""

    def __init__(self, template: str, columns: Mapping[str, str], centre, scale):
        self.template = template  # data.errors, e.g. "{}_err"
        self.columns = dict(columns)  # model column → error column of the training table
        self.centre = np.asarray(centre, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, pre, values: np.ndarray, sigmas: np.ndarray, template: str, columns):
        """Fit on training rows: ``values`` and ``sigmas`` (N, V) in physical units;
        ``columns``: {column: error column} of the training table."""
        with np.errstate(divide="ignore", invalid="ignore"):
            log_u = np.log(_units(pre, values, sigmas))
        centre, scale = np.zeros(log_u.shape[1]), np.ones(log_u.shape[1])
        for j in range(log_u.shape[1]):
            col = log_u[:, j][np.isfinite(log_u[:, j])]
            if col.size:
                centre[j] = np.median(col)
                scale[j] = max(MAD_TO_SIGMA * np.median(np.abs(col - centre[j])), 0.1)
        return cls(template, columns, centre, scale)

    def encode(self, pre, values: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        """(N, V) error features, float32, NaN where the error is not known."""
        with np.errstate(divide="ignore", invalid="ignore"):
            log_u = np.log(_units(pre, values, sigmas))
        e = (log_u - self.centre) / self.scale
        return np.where(np.isfinite(e), e, np.nan).astype(np.float32)

    def present(self, names, columns) -> dict[str, str]:
        """{column: error column} of ``columns`` whose error column is among ``names`` (a
        table's columns), by this model's template."""
        return error_columns(self.template, columns, names)

    def to_dict(self) -> dict:
        return {
            "template": self.template,
            "columns": self.columns,
            "centre": self.centre.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ErrorFeatures:
        return cls(str(d["template"]), d["columns"], d["centre"], d["scale"])
