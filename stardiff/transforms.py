"""Per-column invertible transforms and the robust standardizer.

Physical value ``x`` → transform ``g(x)`` → standardized ``z = (g(x) − median) / (1.4826·MAD)``.
The model only ever sees ``z``; samples go back through the exact inverse, so every
number a user reads is in physical units. Heavy-tailed columns (California's AveOccup
lies ~2,000 robust σ from its median) are made well-conditioned by a log, asinh or a
fitted quantile map declared per column in the recipe.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from scipy.special import ndtr, ndtri

from stardata.tokens import Vocabulary
from stardiff.errors import GivenValueError, warn_infinite

MAD_TO_SIGMA = 1.4826
FLOAT32_MAX = float(np.finfo(np.float32).max)
TRANSFORMS = ("identity", "log", "asinh", "quantile")

__all__ = ["ColumnTransform", "Standardizer", "Preprocessor", "TRANSFORMS"]


class ColumnTransform:
    """An invertible map of one column: ``identity``, ``log``, ``asinh`` or ``quantile``.

    ``quantile`` is a monotone piecewise-linear map from the training quantiles to a
    standard normal, with linear extrapolation beyond the outermost knots. A value that holds
    a share of the training rows (an atom: a capped value, an integer) spans an interval of
    normal scores: a run of tied knots keeps its first and last knot, so the inverse maps the
    whole interval to the atom (it is flat there) and the forward map sends the atom to the
    mean normal score of its interval. :meth:`atoms` lists them. A model's draws that land
    near an atom's code are then the atom itself: no house value above California's cap, and
    95 % of the house ages drawn are whole numbers (between two neighbouring atoms one step of
    the knot grid, 1/1000 of the probability, still maps linearly from one to the next).
    """

    def __init__(self, kind: str = "identity", knots_x=None, knots_z=None):
        if kind not in TRANSFORMS:
            raise ValueError(f"unknown transform {kind!r}; choose one of {', '.join(TRANSFORMS)}")
        self.kind = kind
        self.knots_x = None if knots_x is None else np.asarray(knots_x, dtype=np.float64)
        self.knots_z = None if knots_z is None else np.asarray(knots_z, dtype=np.float64)
        if kind == "quantile" and (self.knots_x is None or len(self.knots_x) < 2):
            raise ValueError("a quantile transform needs at least 2 knots (fit it first)")
        # atoms' values and codes, once: forward looks them up for every value it maps
        found = self.atoms()
        self._atom_x = np.array([x for x, _, _ in found], dtype=np.float64)
        self._atom_code = np.array([_mean_normal_score(lo, hi) for _, lo, hi in found])

    @classmethod
    def fit(cls, kind: str, x: np.ndarray, *, column: str = "?", n_knots: int = 1001):
        """Fit a transform of ``kind`` on the finite training values ``x`` of ``column``."""
        x = np.asarray(x, dtype=np.float64)
        x = x[np.isfinite(x)]
        if kind == "log" and x.size and x.min() <= 0:
            raise ValueError(
                f"column {column!r}: transform 'log' needs positive values, "
                f"found {(x <= 0).sum()} value(s) <= 0"
            )
        if kind != "quantile":
            return cls(kind)
        if np.unique(x).size < 2:
            raise ValueError(f"column {column!r}: a quantile transform needs 2+ distinct values")
        p = np.linspace(0.0, 1.0, n_knots)
        p = np.clip(p, 0.5 / x.size, 1.0 - 0.5 / x.size)
        qx = np.quantile(x, p)
        # a run of equal quantiles (an atom) keeps its two ends: a flat inverse between them
        inner = np.r_[False, qx[1:] == qx[:-1]] & np.r_[qx[1:] == qx[:-1], False]
        return cls("quantile", qx[~inner], ndtri(p[~inner]))

    def atoms(self) -> list[tuple[float, float, float]]:
        """The atoms of a fitted quantile map: ``(x, z_lo, z_hi)``, the value and the interval
        of normal scores the inverse maps to it; empty for other kinds."""
        if self.kind != "quantile" or self.knots_x is None:
            return []
        tied = np.flatnonzero(self.knots_x[1:] == self.knots_x[:-1])
        return [
            (float(self.knots_x[i]), float(self.knots_z[i]), float(self.knots_z[i + 1]))
            for i in tied
        ]

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "identity":
            return x
        if self.kind == "log":
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.log(x)
        if self.kind == "asinh":
            return np.arcsinh(x)
        y = _interp_extrapolate(x, self.knots_x, self.knots_z)
        if self._atom_x.size:  # an atom's code: the mean normal score of its interval
            at = np.minimum(np.searchsorted(self._atom_x, x), self._atom_x.size - 1)
            hit = self._atom_x[at] == x
            y[hit] = self._atom_code[at[hit]]
        return y

    def inverse(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.kind == "identity":
            return y
        if self.kind == "log":
            with np.errstate(over="ignore"):
                return np.exp(y)
        if self.kind == "asinh":
            return np.sinh(y)
        return _interp_extrapolate(y, self.knots_z, self.knots_x)

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind}
        if self.kind == "quantile":
            d["knots_x"] = self.knots_x.tolist()
            d["knots_z"] = self.knots_z.tolist()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ColumnTransform:
        return cls(d["kind"], d.get("knots_x"), d.get("knots_z"))


def _interp_extrapolate(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp`` with linear extrapolation from the end segments (flat where an end
    segment is an atom's: ``xp`` may repeat a value, never in an extrapolated ``xp``)."""
    y = np.interp(x, xp, fp)
    lo, hi = x < xp[0], x > xp[-1]
    y[lo] = fp[0] + (x[lo] - xp[0]) * _slope(fp[1] - fp[0], xp[1] - xp[0])
    y[hi] = fp[-1] + (x[hi] - xp[-1]) * _slope(fp[-1] - fp[-2], xp[-1] - xp[-2])
    return y


def _slope(rise: float, run: float) -> float:
    return 0.0 if run == 0 else rise / run


def _mean_normal_score(lo: float, hi: float) -> float:
    """E[z | lo < z < hi] for a standard normal z."""
    mass = ndtr(hi) - ndtr(lo)
    if mass <= 0:  # far in a tail: the interval's middle
        return 0.5 * (lo + hi)
    return float((_phi(lo) - _phi(hi)) / mass)


def _phi(z: float) -> float:
    return float(np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi))


class Standardizer:
    """Robust per-column standardization: centre = median, scale = 1.4826·MAD.

    Fitted on training rows only. A column whose MAD is 0 falls back to its standard
    deviation (and to 1 if that is 0 too), with a warning.
    """

    def __init__(self, centre, scale):
        self.centre = np.asarray(centre, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, values: np.ndarray, names) -> Standardizer:
        centre, scale = [], []
        for j, name in enumerate(names):
            col = values[:, j]
            col = col[np.isfinite(col)]
            if col.size == 0:
                raise ValueError(f"column {name!r} has no finite value in the training rows")
            med = float(np.median(col))
            s = MAD_TO_SIGMA * float(np.median(np.abs(col - med)))
            if s == 0:
                s = float(np.std(col)) or 1.0
                warnings.warn(
                    f"column {name!r}: MAD is 0, scaling by its std ({s:.4g})", stacklevel=2
                )
            centre.append(med)
            scale.append(s)
        return cls(centre, scale)

    def forward(self, values: np.ndarray, columns=slice(None)) -> np.ndarray:
        return (values - self.centre[columns]) / self.scale[columns]

    def inverse(self, z: np.ndarray, columns=slice(None)) -> np.ndarray:
        return z * self.scale[columns] + self.centre[columns]

    def to_dict(self) -> dict:
        return {"centre": self.centre.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Standardizer:
        return cls(d["centre"], d["scale"])


class Preprocessor:
    """Vocabulary + per-column transforms + standardizer: physical units ↔ model units."""

    def __init__(self, vocab: Vocabulary, transforms: list[ColumnTransform], std: Standardizer):
        if not len(vocab) == len(transforms) == len(std.centre):
            raise ValueError("vocabulary, transforms and standardizer disagree on column count")
        self.vocab, self.transforms, self.std = vocab, transforms, std

    @classmethod
    def fit(cls, values: np.ndarray, vocab: Vocabulary, kinds: Mapping[str, str]):
        """Fit transforms then standardization on the training rows ``values`` (N, V)."""
        unknown = sorted(set(kinds) - set(vocab.names))
        if unknown:
            raise KeyError(f"transform for unknown column(s) {unknown}; columns: {vocab.names}")
        transforms = [
            ColumnTransform.fit(kinds.get(n, "identity"), values[:, j], column=n)
            for j, n in enumerate(vocab.names)
        ]
        g = np.column_stack([t.forward(values[:, j]) for j, t in enumerate(transforms)])
        return cls(vocab, transforms, Standardizer.fit(g, vocab.names))

    def encode(self, values: np.ndarray, *, where: str = "input") -> np.ndarray:
        """Physical (N, V) → standardized float32, non-finite (missing) → NaN.

        An infinite value is missing, with a warning naming its column and first row. A value
        the model cannot take is a :class:`stardiff.errors.GivenValueError` naming the column
        and the rows: a log column's value <= 0, or one so far out that it is not a float32
        once standardized.
        """
        values = np.asarray(values, dtype=np.float64)
        out = np.empty(values.shape, dtype=np.float64)
        for j, (name, t) in enumerate(zip(self.vocab.names, self.transforms, strict=True)):
            x = values[:, j]
            warn_infinite(x, name, where)
            col = np.where(np.isfinite(x), x, np.nan)
            with np.errstate(invalid="ignore"):
                if t.kind == "log" and np.any(col <= 0):
                    rows = np.flatnonzero(col <= 0)
                    raise GivenValueError(
                        where, name, rows, f"{col[rows[0]]:g} <= 0 in a log-transformed column"
                    )
            out[:, j] = t.forward(col)
        z = self.std.forward(out)
        with np.errstate(invalid="ignore"):
            huge = np.abs(z) > FLOAT32_MAX
        if huge.any():
            i, j = np.argwhere(huge)[0]
            raise GivenValueError(
                where,
                self.vocab.names[j],
                np.flatnonzero(huge[:, j]),
                f"{values[i, j]:g} lies {abs(z[i, j]):.3g} robust σ from the training data, "
                "beyond any number the model can take",
            )
        return z.astype(np.float32)

    def decode(self, z: np.ndarray, column: int) -> np.ndarray:
        """Standardized samples of vocabulary column index ``column`` → physical units."""
        g = self.std.inverse(np.asarray(z, dtype=np.float64), column)
        return self.transforms[column].inverse(g)

    def to_dict(self) -> dict:
        return {
            "vocabulary": self.vocab.to_dict(),
            "transforms": [t.to_dict() for t in self.transforms],
            "standardizer": self.std.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Preprocessor:
        return cls(
            Vocabulary.from_dict(d["vocabulary"]),
            [ColumnTransform.from_dict(t) for t in d["transforms"]],
            Standardizer.from_dict(d["standardizer"]),
        )
