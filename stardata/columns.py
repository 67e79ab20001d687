"""Derived columns of the training table, as pure functions on arrays.

Every function takes and returns NumPy arrays (no I/O, no hidden state) so each formula can be
checked on hand-computed rows. Missing values are NaN throughout. The formulas follow the
project's data recipe (``shared/notes/data-recipe.md``) and Leung & Bovy (2024), "LB24".
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "BP_ZP_ERR",
    "G_FLUX_ZP",
    "LB24_RELEVANCY_FROM",
    "MAG_PER_FLUX_FRAC",
    "MISSING_MAG",
    "N_XP",
    "RP_ZP_ERR",
    "XP_KINDS",
    "apogee_labels",
    "band_mag_error",
    "bits_set",
    "bprp",
    "clean_tmass",
    "colour",
    "corrected_parallax",
    "g_fakemag",
    "g_flux",
    "missing_magnitude",
    "normalize_xp",
    "parallax_zero_point",
    "relevancy_mask",
    "tmass_colours",
]

#: Gaia DR3 G-band photometric zero point (Vega mag); flux_G = 10^((ZP − G)/2.5).
G_FLUX_ZP = 25.6873668671
#: Gaia DR3 BP and RP zero-point uncertainties (mag), added in quadrature to the band errors.
BP_ZP_ERR = 0.0027901700
RP_ZP_ERR = 0.0037793818
#: 2.5 / ln(10): magnitude error per unit fractional flux error (the recipe's 1.0857).
MAG_PER_FLUX_FRAC = 1.0857
#: Number of XP coefficients per band.
N_XP = 55
#: A magnitude at or above this is a missing value (APOGEE writes 99.999 for a missing 2MASS band).
MISSING_MAG = 99.0
#: LB24 give XP coefficients 52-54 of each band the relevancy of coefficient 51 (``training.py``:
#: "propagate to deal with 53, 54, 108, 109 NaN issues").
LB24_RELEVANCY_FROM = 51
#: Names of the G-normalized XP kinds, in vocabulary order.
XP_KINDS = tuple(f"bp{i}" for i in range(N_XP)) + tuple(f"rp{i}" for i in range(N_XP))


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def g_flux(g_mag) -> np.ndarray:
    """G-band flux ``10^((25.6873668671 − G)/2.5)`` in e⁻/s; NaN where G is NaN."""
    return 10.0 ** ((G_FLUX_ZP - _f64(g_mag)) / 2.5)


def relevancy_mask(n_relevant, n_coeffs: int = N_XP, *, propagate_from: int | None = None):
    """Boolean ``(N, n_coeffs)`` mask, True for coefficient index ``< n_relevant``.

    A missing (negative or NaN-cast) ``n_relevant`` marks no coefficient relevant. With
    ``propagate_from=k`` every coefficient after ``k`` takes coefficient ``k``'s relevancy (LB24:
    ``k = 51``, :data:`LB24_RELEVANCY_FROM`).
    """
    if propagate_from is not None and not 0 <= propagate_from < n_coeffs:
        raise ValueError(f"propagate_from must be in 0..{n_coeffs - 1}, got {propagate_from}")
    n = np.asarray(n_relevant)
    n = np.where(np.isfinite(n.astype(np.float64)), n, 0).astype(np.int64)
    mask = np.arange(n_coeffs)[None, :] < n[:, None]
    if propagate_from is not None:
        mask[:, propagate_from + 1 :] = mask[:, propagate_from : propagate_from + 1]
    return mask


def missing_magnitude(mag) -> np.ndarray:
    """True where a magnitude is missing: NaN, infinite or ``>= 99`` (:data:`MISSING_MAG`).

    The one rule for every magnitude the build reads (APOGEE's 99.999, as float32 or float64).
    """
    m = _f64(mag)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(m) | (m >= MISSING_MAG)


def normalize_xp(
    coeffs, errors, g_mag, n_relevant=None, *, mask_irrelevant: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Divide one band's XP coefficients (and errors) by the G-band flux.

    Parameters
    ----------
    coeffs, errors : array_like, shape (N, 55)
        Raw coefficients and their errors (NaN where the star has no XP spectrum).
    g_mag : array_like, shape (N,)
        ``phot_g_mean_mag``.
    n_relevant : array_like of int, shape (N,), optional
        ``bp_n_relevant_bases`` or ``rp_n_relevant_bases``.
    mask_irrelevant : bool
        Set coefficients at index ``>= n_relevant`` to NaN (they are padding).

    Returns
    -------
    norm, norm_err : ndarray of float64, shape (N, 55)
        Coefficients exactly 0 are NaN (value and error).
    """
    c = _f64(coeffs)
    e = _f64(errors)
    if c.ndim != 2 or c.shape != e.shape:
        raise ValueError(
            f"XP coefficients and errors must be (N, K) of equal shape, got {c.shape}, {e.shape}"
        )
    flux = g_flux(g_mag)[:, None]
    bad = c == 0.0
    if mask_irrelevant and n_relevant is not None:
        bad |= ~relevancy_mask(n_relevant, c.shape[1])
    norm = np.where(bad, np.nan, c / flux)
    norm_err = np.where(bad, np.nan, e / flux)
    return norm, norm_err


def band_mag_error(flux_over_error, zp_err: float) -> np.ndarray:
    """Magnitude error of one Gaia band: ``sqrt((1.0857/flux_over_error)^2 + zp_err^2)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((MAG_PER_FLUX_FRAC / _f64(flux_over_error)) ** 2 + zp_err**2)


def colour(m1, e1, m2, e2) -> tuple[np.ndarray, np.ndarray]:
    """A colour ``m1 − m2`` and its error ``sqrt(e1² + e2²)``."""
    return _f64(m1) - _f64(m2), np.sqrt(_f64(e1) ** 2 + _f64(e2) ** 2)


def bprp(
    bp_mag,
    rp_mag,
    bp_flux_over_error,
    rp_flux_over_error,
    *,
    bp_zp_err: float = BP_ZP_ERR,
    rp_zp_err: float = RP_ZP_ERR,
) -> tuple[np.ndarray, np.ndarray]:
    """``BP − RP`` with the per-band errors (flux error and zero point) in quadrature."""
    bp_err = band_mag_error(bp_flux_over_error, bp_zp_err)
    rp_err = band_mag_error(rp_flux_over_error, rp_zp_err)
    return colour(bp_mag, bp_err, rp_mag, rp_err)


def clean_tmass(mag, err) -> tuple[np.ndarray, np.ndarray]:
    """Missing magnitudes (:func:`missing_magnitude`) become NaN, and their errors too."""
    m = _f64(mag).copy()
    e = _f64(err).copy()
    bad = missing_magnitude(m)
    m[bad] = np.nan
    e[bad] = np.nan
    return m, e


def tmass_colours(j, j_err, h, h_err, k, k_err):
    """``(jh, jh_err, jk, jk_err)`` from 2MASS J, H, Ks; missing magnitudes give NaN."""
    j, j_err = clean_tmass(j, j_err)
    h, h_err = clean_tmass(h, h_err)
    k, k_err = clean_tmass(k, k_err)
    jh, jh_err = colour(j, j_err, h, h_err)
    jk, jk_err = colour(j, j_err, k, k_err)
    return jh, jh_err, jk, jk_err


def parallax_zero_point(
    g_mag,
    nu_eff,
    pseudocolour,
    ecl_lat,
    params_solved,
    *,
    extra_slope: float = 0.005,
    extra_g_min: float = 13.0,
    extra_g_max: float = 17.0,
) -> np.ndarray:
    """Parallax zero point in mas: Lindegren+21 plus LB24's ``0.005·clip(G − 13, 0, 4)``.

    The Lindegren+21 term (package ``gaiadr3-zeropoint``) is computed only for
    ``astrometric_params_solved`` 31 (5-p) or 95 (6-p); it is 0 for other solutions and NaN
    where the recipe is out of its validity range (as LB24 did, ``_warnings=False``). LB24's
    extra term is added for every star. Corrected parallax = parallax − zero point.
    """
    from zero_point import zpt

    g = _f64(g_mag)
    solved = np.asarray(params_solved)
    solved = np.where(np.isfinite(solved.astype(np.float64)), solved, 0).astype(np.int64)
    zp = np.zeros(g.shape, dtype=np.float64)
    ok = (solved == 31) | (solved == 95)
    if ok.any():
        zpt.load_tables()  # cheap; the coefficient tables are module globals
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zp[ok] = zpt.get_zpt(
                g[ok],
                _f64(nu_eff)[ok],
                _f64(pseudocolour)[ok],
                _f64(ecl_lat)[ok],
                solved[ok],
                _warnings=False,
            )
    span = extra_g_max - extra_g_min
    return zp + extra_slope * np.clip(g - extra_g_min, 0.0, span)


def corrected_parallax(
    parallax,
    parallax_error,
    ruwe,
    zero_point,
    *,
    max_error: float = 0.1,
    max_ruwe: float = 1.4,
) -> np.ndarray:
    """``parallax − zero_point``, NaN where ``parallax_error > max_error`` or ``ruwe > max_ruwe``.

    A missing RUWE or parallax error (no Gaia match) also gives NaN.
    """
    plx = _f64(parallax) - _f64(zero_point)
    err = _f64(parallax_error)
    r = _f64(ruwe)
    with np.errstate(invalid="ignore"):
        bad = ~(err <= max_error) | ~(r <= max_ruwe)
    return np.where(bad, np.nan, plx)


def g_fakemag(g_mag, parallax, parallax_error) -> tuple[np.ndarray, np.ndarray]:
    """``parallax·10^(0.2 G)`` (= 10^(0.2 M_G + 2)) and ``|parallax_error/parallax|·fakemag|``.

    Negative parallaxes give negative fakemags (kept, as LB24 did); NaN parallax gives NaN.
    """
    plx = _f64(parallax)
    fm = plx * 10.0 ** (0.2 * _f64(g_mag))
    with np.errstate(divide="ignore", invalid="ignore"):
        fm_err = np.abs(_f64(parallax_error) / plx * fm)
    return fm, fm_err


def apogee_labels(
    values,
    errors,
    aspcapflag,
    starflag,
    *,
    bad_aspcap_bits: tuple[int, ...] = (19, 23),
    require_starflag_zero: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flag APOGEE labels: NaN where any ``bad_aspcap_bits`` is set or STARFLAG ≠ 0.

    Parameters
    ----------
    values, errors : array_like, shape (N,) or (N, L)
        Label values (e.g. TEFF, LOGG, M_H) and errors.
    aspcapflag, starflag : array_like of int, shape (N,)

    Returns
    -------
    values, errors : ndarray of float64, flagged entries NaN
    bad : ndarray of bool, shape (N,)
        True where the row's labels were flagged.
    """
    v = _f64(values).copy()
    e = _f64(errors).copy()
    bad = bits_set(aspcapflag, bad_aspcap_bits)
    if require_starflag_zero:
        bad |= np.asarray(starflag).astype(np.int64) != 0
    v[bad] = np.nan
    e[bad] = np.nan
    return v, e, bad


def bits_set(flags, bits: tuple[int, ...]) -> np.ndarray:
    """True where any of ``bits`` is set in an integer bitmask array."""
    mask = 0
    for b in bits:
        mask |= 1 << int(b)
    return (np.asarray(flags).astype(np.int64) & mask) != 0
