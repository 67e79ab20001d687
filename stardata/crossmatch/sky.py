"""Sky matching against a local table of Gaia rows, with positions moved to the user's epoch.

Gaia DR3 positions are at J2016.0; a catalogue observed at another epoch (2MASS at ~J2000, a
photographic plate at J1950) sees high proper-motion stars elsewhere. :func:`propagate` moves the
reference positions linearly on the sphere by their proper motions (parallax and radial velocity
are ignored: over a century their effect is below 10 mas for all but a handful of the nearest
stars), and :func:`match_local` matches on unit vectors with a KD-tree, counting every candidate
within the radius and keeping the nearest.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAIA_EPOCH", "chord_arcsec", "match_local", "propagate", "unit_vectors"]

GAIA_EPOCH = 2016.0
"""Reference epoch of Gaia DR3 positions (Julian years)."""
_MAS = np.pi / (180.0 * 3600e3)  # one milliarcsecond in radians


def unit_vectors(ra, dec) -> np.ndarray:
    """(N, 3) unit vectors of positions in degrees."""
    a, d = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
    cd = np.cos(d)
    return np.stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)], axis=1)


def propagate(ra, dec, pmra, pmdec, dt) -> np.ndarray:
    """Unit vectors of positions moved by their proper motions over ``dt`` years.

    Parameters
    ----------
    ra, dec : array-like
        Positions at the reference epoch [deg].
    pmra, pmdec : array-like
        Proper motion [mas/yr]; ``pmra`` includes cos(dec), as in Gaia. NaN = no motion.
    dt : float or array-like
        Target epoch minus reference epoch [yr].

    Returns
    -------
    numpy.ndarray, shape (N, 3)
    """
    a, d = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
    p = unit_vectors(ra, dec)
    east = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=1)
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=1)
    mu_a = np.nan_to_num(np.asarray(pmra, np.float64)) * _MAS
    mu_d = np.nan_to_num(np.asarray(pmdec, np.float64)) * _MAS
    step = np.asarray(dt, np.float64)
    r = p + step[..., None] * (mu_a[:, None] * east + mu_d[:, None] * north)
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def _chord(arcsec: float) -> float:
    return 2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0)


def chord_arcsec(chord: np.ndarray) -> np.ndarray:
    """Angular separation [arcsec] of unit vectors whose chord (straight-line) length is given."""
    return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))) * 3600.0


def match_local(
    ra: np.ndarray,
    dec: np.ndarray,
    epoch: np.ndarray,
    reference: dict,
    radius: float = 1.0,
) -> dict[str, np.ndarray]:
    """Nearest reference star within ``radius`` of each position, after propagation.

    Parameters
    ----------
    ra, dec : numpy.ndarray
        The catalogue's positions [deg]; NaN rows are left unmatched.
    epoch : numpy.ndarray
        Each position's epoch [Julian yr]. Rows are grouped by exact epoch value and the
        reference is moved once per group (the cost grows with the number of distinct epochs).
    reference : dict of numpy.ndarray
        ``source_id``, ``ra``, ``dec`` and optionally ``pmra``, ``pmdec`` [mas/yr] and
        ``ref_epoch`` (default :data:`GAIA_EPOCH`).
    radius : float
        Match radius [arcsec].

    Returns
    -------
    dict of numpy.ndarray
        ``source_id`` (int64, 0 = no match), ``reference_row`` (-1 = none),
        ``separation_arcsec`` (NaN = none), ``n_candidates`` (reference stars within
        ``radius``) and ``ambiguous`` (more than one candidate).
    """
    from scipy.spatial import cKDTree

    n = ra.size
    out = {
        "source_id": np.zeros(n, np.int64),
        "reference_row": np.full(n, -1, np.int64),
        "separation_arcsec": np.full(n, np.nan),
        "n_candidates": np.zeros(n, np.int32),
    }
    m = reference["ra"].size
    nan = np.full(m, np.nan)
    pmra, pmdec = reference.get("pmra", nan), reference.get("pmdec", nan)
    ref_epoch = reference.get("ref_epoch", np.full(m, GAIA_EPOCH))
    chord = _chord(radius)
    usable = np.isfinite(ra) & np.isfinite(dec)
    for value in np.unique(epoch[usable]):
        rows = np.flatnonzero(usable & (epoch == value))
        tree = cKDTree(propagate(reference["ra"], reference["dec"], pmra, pmdec, value - ref_epoch))
        xyz = unit_vectors(ra[rows], dec[rows])
        dist, idx = tree.query(xyz, k=1, distance_upper_bound=chord)
        found = np.isfinite(dist)
        hit = rows[found]
        out["reference_row"][hit] = idx[found]
        out["source_id"][hit] = np.asarray(reference["source_id"], np.int64)[idx[found]]
        out["separation_arcsec"][hit] = chord_arcsec(dist[found])
        out["n_candidates"][rows] = tree.query_ball_point(xyz, chord, return_length=True)
    out["ambiguous"] = out["n_candidates"] > 1
    return out
