"""A toy stellar population whose every conditional density is known exactly.

Each star belongs to one of three populations (dwarfs, red-giant branch, red clump). Within a
population the labels ``x = (teff [K], logg, m_h)`` are jointly Gaussian (full covariance) and
every column is a noisy linear function of them, ``y = b + A (x - x_ref) + eps`` with
``eps ~ N(0, diag(noise**2))``: the noisy labels ``teff, logg, m_h``, colour-like ``bprp, jh,
jk``, an absolute magnitude ``g_absmag`` (a linear stand-in for ``g_fakemag``) and
``n_spectrum`` spectrum-like columns ``s0, s1, ...`` (scales ~100 down to ~0.5 like Gaussian XP
coefficients, relative noise growing with index). All columns are thus jointly a Gaussian
mixture, and conditioning on any subset gives a Gaussian mixture
(:mod:`stardiff.datasets.mixture`). Dwarfs (logg ~ 4.4) and giants (logg ~ 2.5) overlap in teff,
so ``logg | teff ~ 5000 K`` is bimodal. Tables have values missing completely at random (NaN).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from stardiff.datasets.mixture import GaussianMixtureTable
from stardiff.datasets.tasks import random_tasks

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "FIXED_COLUMNS",
    "SyntheticStarsModel",
    "random_tasks",
    "synthetic_stars",
    "synthetic_stars_model",
]

FIXED_COLUMNS: tuple[str, ...] = ("teff", "logg", "m_h", "bprp", "jh", "jk", "g_absmag")
MODEL_SEED = 20240521
_X_REF = np.array([5000.0, 3.5, 0.0])  # reference point of the linear relations
_X_UNIT = np.array([500.0, 1.0, 0.3])  # natural units for the spectrum coefficients

# (name, weight, mean (teff, logg, m_h), std, correlations (teff-logg, teff-m_h, logg-m_h))
_POPULATIONS = (
    ("dwarf", 0.45, (5650.0, 4.40, -0.05), (550.0, 0.15, 0.25), (-0.60, 0.10, 0.10)),
    ("giant", 0.40, (4650.0, 2.45, -0.25), (300.0, 0.50, 0.30), (0.85, -0.40, 0.00)),
    ("clump", 0.15, (4750.0, 2.40, -0.05), (120.0, 0.10, 0.20), (0.30, -0.20, 0.10)),
)

# (name, offset b, slopes d/d(teff, logg, m_h), noise std)
_FIXED_RELATIONS = (
    ("teff", 5000.0, (1.0, 0.0, 0.0), 40.0),
    ("logg", 3.5, (0.0, 1.0, 0.0), 0.04),
    ("m_h", 0.0, (0.0, 0.0, 1.0), 0.02),
    ("bprp", 0.98, (-4.6e-4, -0.02, 0.12), 0.015),
    ("jh", 0.50, (-1.9e-4, -0.05, 0.05), 0.03),
    ("jk", 0.60, (-2.4e-4, -0.04, 0.04), 0.035),
    ("g_absmag", 2.9, (-1.2e-3, 2.1, 0.30), 0.25),
)


def _population_cov(std: tuple[float, ...], corr: tuple[float, float, float]) -> NDArray:
    """Covariance of (teff, logg, m_h) from standard deviations and pairwise correlations."""
    r = np.eye(3)
    r[0, 1] = r[1, 0] = corr[0]
    r[0, 2] = r[2, 0] = corr[1]
    r[1, 2] = r[2, 1] = corr[2]
    s = np.asarray(std)
    return r * np.outer(s, s)


def _spectrum_relations(n_spectrum: int) -> tuple[NDArray, NDArray, NDArray]:
    """Offsets (n,), slopes (n, 3) per physical unit and noise stds (n,) of ``s0..``.

    Column ``j`` depends on ``j`` only (not on ``n_spectrum``): smooth oscillating sensitivities
    to (teff, logg, m_h) plus a fixed random perturbation, overall scale ``100 * 10**(-j/50)``
    and relative noise growing with ``j``.
    """
    offsets, slopes, noise = np.empty(n_spectrum), np.empty((n_spectrum, 3)), np.empty(n_spectrum)
    for j in range(n_spectrum):
        rng = np.random.default_rng([MODEL_SEED, j])
        scale = 100.0 * 10.0 ** (-j / 50.0)
        shape = np.array(
            [np.cos(0.21 * j + 0.3), 0.5 * np.sin(0.13 * j + 1.1), 0.6 * np.cos(0.37 * j + 2.0)]
        )
        shape = shape + rng.normal(0.0, 0.15, size=3)
        offsets[j] = scale * (1.0 + 0.5 * rng.normal())
        slopes[j] = scale * shape / _X_UNIT
        noise[j] = scale * (0.03 + 0.3 * j / (j + 40.0))
    return offsets, slopes, noise


class SyntheticStarsModel(GaussianMixtureTable):
    """The stellar populations of :func:`synthetic_stars_model` as a Gaussian mixture over all
    columns of the synthetic table, with exact conditioning (see
    :class:`~stardiff.datasets.mixture.GaussianMixtureTable`)."""


def synthetic_stars_model(n_spectrum: int = 20) -> SyntheticStarsModel:
    """The generative model behind :func:`synthetic_stars` with ``n_spectrum`` spectrum columns.

    Columns are ``FIXED_COLUMNS`` followed by ``s0 .. s{n_spectrum-1}``; a table with 118
    columns (paper size) takes ``n_spectrum=111``.
    """
    if n_spectrum < 0:
        raise ValueError("n_spectrum must be >= 0")
    offsets, slopes, noise = _spectrum_relations(n_spectrum)
    b = np.concatenate([[rel[1] for rel in _FIXED_RELATIONS], offsets])
    a = np.vstack([[rel[2] for rel in _FIXED_RELATIONS], slopes])
    noise_cov = np.diag(np.concatenate([[rel[3] for rel in _FIXED_RELATIONS], noise]) ** 2)
    names, weights = [p[0] for p in _POPULATIONS], [p[1] for p in _POPULATIONS]
    means = [b + a @ (np.asarray(p[2]) - _X_REF) for p in _POPULATIONS]
    covs = [a @ _population_cov(p[3], p[4]) @ a.T + noise_cov for p in _POPULATIONS]
    columns = FIXED_COLUMNS + tuple(f"s{j}" for j in range(n_spectrum))
    return SyntheticStarsModel(
        columns, tuple(names), np.array(weights), np.array(means), np.array(covs)
    )


def synthetic_stars(
    n: int, seed: int = 0, *, n_spectrum: int = 20, missing: float = 0.1
) -> pl.DataFrame:
    """A synthetic stellar table with exactly known conditional densities.

    Parameters
    ----------
    n : int
        Number of rows (stars).
    seed : int, optional
        Seed of the draws and of the missing-value mask (the population itself is fixed).
    n_spectrum : int, optional
        Number of spectrum-like columns ``s0..`` (111 gives the paper's 118 columns in all).
    missing : float, optional
        Probability that each value is independently missing (NaN).

    Returns
    -------
    polars.DataFrame
        Float64 columns ``teff [K], logg, m_h, bprp, jh, jk, g_absmag, s0, ...``. The exact
        densities are those of ``synthetic_stars_model(n_spectrum)``.
    """
    return synthetic_stars_model(n_spectrum).table(n, seed, missing=missing)
