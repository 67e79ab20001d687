"""Sky matching against a local table of Gaia rows, with positions moved to the user's epoch.

Gaia DR3 positions are at J2016.0; a catalogue observed at another epoch (2MASS at ~J2000, a
photographic plate at J1900) sees high proper-motion stars elsewhere. :func:`propagate` moves
the reference positions with ERFA's ``pmsafe`` (the IAU SOFA algorithm behind astropy's
``SkyCoord.apply_space_motion``): straight-line space motion from the position, proper motion,
parallax and radial velocity, light time included. :func:`match_local` matches on unit vectors
with a KD-tree, counting every candidate within the radius and keeping the nearest. The HATS
path (:mod:`stardata.crossmatch.hats`) moves its candidates with the same :func:`propagate`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "ASTROMETRY",
    "GAIA_EPOCH",
    "arcsec_chord",
    "chord_arcsec",
    "match_local",
    "propagate",
    "unit_vectors",
]

GAIA_EPOCH = 2016.0
"""Reference epoch of Gaia DR3 positions (Julian years)."""
#: Optional reference columns used to move a star, in Gaia's units: proper motions [mas/yr]
#: (``pmra`` includes cos dec), parallax [mas], radial velocity [km/s], epoch [Julian yr].
ASTROMETRY = ("pmra", "pmdec", "parallax", "radial_velocity", "ref_epoch")
_MAS = np.pi / (180.0 * 3600e3)  # one milliarcsecond in radians
_J2000 = 2451545.0  # JD of J2000.0: pmsafe only uses the difference of its two epochs
_JULIAN_YEAR = 365.25  # days
_POLE = np.pi / 2 - 1e-9  # the largest |dec| [rad] given to pmsafe


def unit_vectors(ra, dec) -> np.ndarray:
    """(N, 3) unit vectors of positions in degrees."""
    a, d = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
    cd = np.cos(d)
    return np.stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)], axis=1)


def _values(x, n: int) -> np.ndarray:
    """``x`` as float64 of length ``n``, NaN where absent (``None`` = absent everywhere)."""
    if x is None:
        return np.full(n, np.nan)
    return np.broadcast_to(np.asarray(x, np.float64), (n,))


def propagate(ra, dec, pmra, pmdec, dt, parallax=None, radial_velocity=None) -> np.ndarray:
    """Unit vectors of positions moved by their space motion over ``dt`` years (ERFA pmsafe).

    Rigorous propagation (SOFA/ERFA ``pmsafe``, as astropy's ``apply_space_motion``): the star
    moves in a straight line in space, so proper motion changes along the way (perspective
    acceleration from parallax and radial velocity) and light time is taken into account.
    Missing values are those of a star known less well, never an error: a NaN proper motion
    is no motion; a NaN radial velocity is 0 km/s; a NaN, zero or negative parallax is
    replaced by pmsafe's small positive one (the star is far and moves with its proper motion
    alone: the result then equals motion along a great circle).

    Parameters
    ----------
    ra, dec : array-like
        Positions at the reference epoch [deg], ICRS.
    pmra, pmdec : array-like
        Proper motion [mas/yr]; ``pmra`` includes cos(dec), as in Gaia.
    dt : float or array-like
        Target epoch minus reference epoch [Julian yr].
    parallax : array-like, optional
        Parallax [mas].
    radial_velocity : array-like, optional
        Radial velocity [km/s], positive receding.

    Returns
    -------
    numpy.ndarray, shape (N, 3)
        Unit vectors of the positions at the target epoch.
    """
    import erfa

    a = np.radians(np.asarray(ra, np.float64))
    # pmsafe takes dRA/dt, not Gaia's pmra* = dRA/dt cos(dec), which is 0/0 at a pole: a
    # star exactly there is moved from 0.2 mas (1e-9 rad) off it
    d = np.clip(np.radians(np.asarray(dec, np.float64)), -_POLE, _POLE)
    n = a.size
    pmr = np.nan_to_num(_values(pmra, n)) * _MAS / np.cos(d)
    pmd = np.nan_to_num(_values(pmdec, n)) * _MAS
    px = _values(parallax, n) / 1000.0  # arcsec
    px = np.where(np.isfinite(px) & (px > 0), px, 0.0)  # pmsafe raises 0 to a safe minimum
    rv = np.nan_to_num(_values(radial_velocity, n))
    days = np.broadcast_to(np.asarray(dt, np.float64) * _JULIAN_YEAR, (n,))
    # The ufunc returns ERFA's status instead of warning: status 1 ("distance overridden") is
    # the documented handling of a small parallax, and a warnings filter around the wrapper
    # is process-wide, so under Dask's threads another partition's warning escaped it.
    ra2, dec2, *_, status = erfa.ufunc.pmsafe(a, d, pmr, pmd, px, rv, _J2000, 0.0, _J2000, days)
    if np.any(status < 0):  # -1, "system error": not expected from finite inputs
        raise ValueError(f"ERFA pmsafe failed on {int((status < 0).sum())} row(s)")
    return erfa.s2c(ra2, dec2)


def arcsec_chord(arcsec: float) -> float:
    """The chord (straight-line) length between unit vectors ``arcsec`` apart."""
    return 2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0)


def chord_arcsec(chord: np.ndarray) -> np.ndarray:
    """Angular separation [arcsec] of unit vectors whose chord (straight-line) length is given."""
    return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))) * 3600.0


def _reference_epochs(reference: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The reference rows' epochs [Julian yr]: ``ref_epoch`` or :data:`GAIA_EPOCH`."""
    return _values(reference.get("ref_epoch", GAIA_EPOCH), n)


def match_local(
    ra: np.ndarray,
    dec: np.ndarray,
    epoch: np.ndarray,
    reference: Mapping[str, np.ndarray],
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
    reference : mapping of str to numpy.ndarray
        ``source_id``, ``ra``, ``dec`` and optionally the :data:`ASTROMETRY` columns
        (``ref_epoch`` defaults to :data:`GAIA_EPOCH`). Rows without a position never match.
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
    m = np.asarray(reference["ra"]).size
    ref_ra = np.asarray(reference["ra"], np.float64)
    ref_dec = np.asarray(reference["dec"], np.float64)
    placed = np.flatnonzero(np.isfinite(ref_ra) & np.isfinite(ref_dec))
    ids = np.asarray(reference["source_id"], np.int64)
    motion = {k: _values(reference.get(k), m)[placed] for k in ASTROMETRY[:4]}
    ref_epoch = _reference_epochs(reference, m)[placed]
    chord = arcsec_chord(radius)
    usable = np.isfinite(ra) & np.isfinite(dec)
    if placed.size == 0:
        usable[:] = False
    for value in np.unique(epoch[usable]):
        rows = np.flatnonzero(usable & (epoch == value))
        moved = propagate(
            ref_ra[placed],
            ref_dec[placed],
            motion["pmra"],
            motion["pmdec"],
            value - ref_epoch,
            motion["parallax"],
            motion["radial_velocity"],
        )
        tree = cKDTree(moved)
        xyz = unit_vectors(ra[rows], dec[rows])
        dist, idx = tree.query(xyz, k=1, distance_upper_bound=chord)
        found = np.isfinite(dist)
        hit = rows[found]
        out["reference_row"][hit] = placed[idx[found]]
        out["source_id"][hit] = ids[placed[idx[found]]]
        out["separation_arcsec"][hit] = chord_arcsec(dist[found])
        out["n_candidates"][rows] = tree.query_ball_point(xyz, chord, return_length=True)
    out["ambiguous"] = out["n_candidates"] > 1
    return out
