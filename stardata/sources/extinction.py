"""E(B-V) from the Combined19 3-D dust map with Monte-Carlo distances.

``mwdust`` reads ``$DUST_DIR`` once, when it is first imported (default ``~/.mwdust``; the import
creates that folder, so its parent must exist), and downloads ``combined19/combine19.h5`` there
the first time ``mwdust.Combined19()`` is built. Passing ``dust_dir=`` here sets ``$DUST_DIR``
before the import; if mwdust was already imported with another folder, the folder is switched in
mwdust's Combined19 module as well, so the map is read from ``dust_dir`` either way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "LOG_EBV_FLOOR",
    "NONPOSITIVE_DRAWS",
    "ebv_combined19",
    "load_combined19",
]

LOG_EBV_FLOOR = -7.0
"""ln E(B-V) given to draws with E(B-V) <= 0."""
_EBV_MAX = 10.0
_FAR_KPC = 99.0
_MAD_TO_SIGMA = 1.4826
_MAPS: dict[str, object] = {}
NONPOSITIVE_DRAWS = ("drop", "far")
"""What a parallax draw <= 0 becomes: ``"drop"`` (LB24: left out of the median, and a star whose
own parallax is <= 0 is put at 99 kpc for every draw) or ``"far"`` (every such draw at 99 kpc)."""


def _point_mwdust_at(dust_dir: str | os.PathLike | None) -> str:
    """Make mwdust use ``dust_dir`` (or ``$DUST_DIR``/default) and return the folder in use."""
    if dust_dir is not None:
        folder = str(Path(dust_dir).expanduser().resolve())
        os.environ["DUST_DIR"] = folder
    else:
        folder = os.environ.get("DUST_DIR", os.path.expanduser(os.path.join("~", ".mwdust")))
    Path(folder).mkdir(parents=True, exist_ok=True)
    import mwdust.Combined19  # noqa: F401 - reads $DUST_DIR on first import

    module = sys.modules["mwdust.Combined19"]
    if os.path.abspath(module.dust_dir) != os.path.abspath(folder):
        module.dust_dir = folder
        module._combineddir = os.path.join(folder, "combined19")
    return folder


def load_combined19(dust_dir: str | os.PathLike | None = None, *, allow_download: bool = True):
    """Build (once per folder) the ``mwdust.Combined19`` map, returning E(B-V).

    Parameters
    ----------
    dust_dir : path-like, optional
        Folder holding ``combined19/combine19.h5`` (mwdust's ``$DUST_DIR``).
    allow_download : bool, optional
        If False, fail instead of letting mwdust download the map (~GB) when it is missing.

    Returns
    -------
    mwdust.Combined19
        The map object (cached).
    """
    folder = _point_mwdust_at(dust_dir)
    path = Path(folder) / "combined19" / "combine19.h5"
    if not allow_download and not path.exists():
        raise FileNotFoundError(f"{path} not found and allow_download=False")
    if folder not in _MAPS:
        import mwdust

        _MAPS[folder] = mwdust.Combined19(filter=None)
    return _MAPS[folder]


def _evaluate(dust_map, glon: np.ndarray, glat: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """E(B-V) at each star's (l, b) and each of its distances ``dist`` (n_stars, n_draws).

    Groups the draws by map pixel and evaluates each pixel's spline once, exactly as
    ``mwdust.HierarchicalHealpixMap._evaluate`` does element by element; falls back to the
    public call if mwdust's internals differ.
    """
    needed = ("_lbIndx", "_intps", "_best_fit", "_distmods", "_interpk", "_filter")
    if not all(hasattr(dust_map, name) for name in needed) or dust_map._filter is not None:
        flat = dust_map(
            np.repeat(glon, dist.shape[1]), np.repeat(glat, dist.shape[1]), dist.ravel()
        )
        return np.asarray(flat, dtype=float).reshape(dist.shape)
    from scipy.interpolate import InterpolatedUnivariateSpline

    pixel = dust_map._lbIndx(glon, glat)
    distmod = 5.0 * np.log10(dist) + 10.0
    out = np.full(dist.shape, np.nan)
    order = np.argsort(pixel, kind="stable")
    values, starts = np.unique(pixel[order], return_index=True)
    for value, rows in zip(values, np.split(order, starts[1:]), strict=True):
        if value < 0:
            continue
        spline = dust_map._intps[value]
        if isinstance(spline, int | float) and spline == 0:
            spline = InterpolatedUnivariateSpline(
                dust_map._distmods, dust_map._best_fit[value], k=dust_map._interpk
            )
            dust_map._intps[value] = spline
        out[rows] = spline(distmod[rows].ravel()).reshape(len(rows), -1)
    return out


def _summaries(log_ebv: np.ndarray, propagate_nan: bool) -> tuple[np.ndarray, np.ndarray]:
    """Median and 1.4826 * MAD of each row (NaN draws skipped unless ``propagate_nan``)."""
    median, mad = (np.median, np.median) if propagate_nan else (np.nanmedian, np.nanmedian)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN
            centre = median(log_ebv, axis=1)
            spread = _MAD_TO_SIGMA * mad(np.abs(log_ebv - centre[:, None]), axis=1)
    return centre, spread


def ebv_combined19(
    glon,
    glat,
    parallax,
    parallax_error,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    dust_dir: str | os.PathLike | None = None,
    chunk: int = 4096,
    good_astrometry=None,
    propagate_nan: bool = False,
    dust_map=None,
    star_parallax=None,
    nonpositive: str = "drop",
) -> tuple[np.ndarray, np.ndarray]:
    """ln E(B-V) from Combined19 with Monte-Carlo distances, and its robust scatter.

    For each star, ``n_draws`` parallaxes are drawn from N(parallax, parallax_error) [mas] and
    turned into distances 1/parallax [kpc]. As in LB24 (``nonpositive="drop"``), a star whose own
    parallax (``star_parallax``) is <= 0 is put at 99 kpc for every draw (a small true parallax
    measured below zero: the star is far), and otherwise draws <= 0 are left out. The map
    is evaluated at (glon, glat, distance); E(B-V) > 10 becomes NaN and E(B-V) <= 0 becomes
    e^-7. The result is the median of ln E(B-V) over the draws and 1.4826 times their median
    absolute deviation.

    Parameters
    ----------
    glon, glat : array-like
        Galactic longitude and latitude [deg].
    parallax, parallax_error : array-like
        Zero-point-corrected parallax and its error [mas] (see
        :func:`stardata.columns.corrected_parallax`); NaN where the astrometry is not to be used.
    n_draws : int, optional
        Draws per star.
    seed : int, optional
        Seed of the draws; a star's result depends only on its own inputs, its row position,
        ``n_draws`` and ``seed`` (not on ``chunk`` or on the other rows' values).
    dust_dir : path-like, optional
        mwdust's data folder (see the module notes); default ``$DUST_DIR`` or ``~/.mwdust``.
    chunk : int, optional
        Stars per step; memory is about ``chunk * n_draws * 40`` bytes.
    good_astrometry : array-like of bool, optional
        Stars whose parallax may be used (default: all with finite parallax and error).
    propagate_nan : bool, optional
        If True, a star with any NaN draw (E(B-V) > 10, off the map, or a dropped parallax
        draw) gets NaN; by default those draws are skipped and only a star with no valid draw
        gets NaN.
    dust_map : object, optional
        A ready map (``mwdust.Combined19`` or compatible); overrides ``dust_dir``.
    star_parallax : array-like, optional
        The parallax whose sign says a star is far (LB24 used the archive's parallax before the
        zero-point correction); default ``parallax``.
    nonpositive : {"drop", "far"}, optional
        See :data:`NONPOSITIVE_DRAWS`.

    Returns
    -------
    logebv, logebv_err : numpy.ndarray
        Median and 1.4826 * MAD of ln E(B-V); NaN for NaN inputs or bad astrometry.
    """
    glon, glat, plx, plx_err = (
        np.atleast_1d(np.asarray(v, dtype=float)) for v in (glon, glat, parallax, parallax_error)
    )
    n = glon.size
    if not (glat.size == plx.size == plx_err.size == n):
        raise ValueError("glon, glat, parallax and parallax_error must have the same length")
    if n_draws < 1 or chunk < 1:
        raise ValueError("n_draws and chunk must be >= 1")
    if nonpositive not in NONPOSITIVE_DRAWS:
        raise ValueError(f"nonpositive must be 'drop' or 'far', not {nonpositive!r}")
    own = plx if star_parallax is None else np.atleast_1d(np.asarray(star_parallax, dtype=float))
    if own.size != n:
        raise ValueError("star_parallax must have the same length as parallax")
    good = np.isfinite(glon) & np.isfinite(glat) & np.isfinite(plx) & np.isfinite(plx_err)
    good &= plx_err >= 0
    if good_astrometry is not None:
        good &= np.asarray(good_astrometry, dtype=bool)
    dust_map = dust_map if dust_map is not None else load_combined19(dust_dir)
    rng = np.random.default_rng(seed)
    logebv, logebv_err = np.full(n, np.nan), np.full(n, np.nan)
    for start in range(0, n, chunk):
        # Draws are made for every row (used or not), so a star's draws depend only on its
        # position in the input and the seed, not on chunking or on which other rows are good.
        z = rng.standard_normal((min(chunk, n - start), n_draws))
        keep = np.flatnonzero(good[start : start + chunk])
        if keep.size == 0:
            continue
        rows = start + keep
        draws = plx[rows, None] + plx_err[rows, None] * z[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            near = 1.0 / draws
        if nonpositive == "far":
            dist = np.where(draws > 0, near, _FAR_KPC)
        else:  # LB24: a star measured at parallax <= 0 is far; other draws <= 0 are dropped
            dist = np.where(draws > 0, near, np.nan)
            dist[own[rows] <= 0] = _FAR_KPC
        dropped = np.isnan(dist)
        ebv = _evaluate(dust_map, glon[rows], glat[rows], np.where(dropped, 1.0, dist))
        ebv[dropped] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            log_ebv = np.where(ebv > _EBV_MAX, np.nan, np.log(np.where(ebv > 0, ebv, 1.0)))
            log_ebv = np.where(ebv <= 0, LOG_EBV_FLOOR, log_ebv)
            log_ebv[np.isnan(ebv)] = np.nan  # dropped or off the map (not ln 1)
        logebv[rows], logebv_err[rows] = _summaries(log_ebv, propagate_nan)
    return logebv, logebv_err
