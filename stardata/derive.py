"""One block of the training table from its aligned inputs (allStar, Gaia, XP, 2MASS).

:func:`derive` applies the formulas of :mod:`stardata.columns` to one block of rows (its Gaia,
XP and 2MASS part, :func:`derive_gaia`, is shared with :mod:`stardata.crossmatch`); the
``*_RAW`` tables name the input columns each stage provides and the table keeps.
"""

from __future__ import annotations

import numpy as np

from stardata.columns import (
    N_XP,
    apogee_labels,
    bprp,
    clean_tmass,
    colour,
    corrected_parallax,
    g_fakemag,
    normalize_xp,
    parallax_zero_point,
    relevancy_mask,
)

__all__ = [
    "APOGEE_RAW",
    "GAIA_INT",
    "GAIA_RAW",
    "TMASS_RAW",
    "TMASS_STR",
    "XP_INT",
    "XP_RAW",
    "XP_VECTORS",
    "derive",
    "derive_gaia",
    "mask_xp",
    "jhk_columns",
]


#: allStar columns copied to the table as they are (lower-cased; labels get an ``apogee_`` prefix).
APOGEE_RAW = {
    "APOGEE_ID": "apogee_id",
    "TELESCOPE": "telescope",
    "FIELD": "field",
    "GAIAEDR3_SOURCE_ID": "gaia_source_id",
    "RA": "ra",
    "DEC": "dec",
    "GLON": "glon",
    "GLAT": "glat",
    "SNR": "snr",
    "STARFLAG": "starflag",
    "ASPCAPFLAG": "aspcapflag",
    "EXTRATARG": "extratarg",
    "TEFF": "apogee_teff",
    "TEFF_ERR": "apogee_teff_err",
    "LOGG": "apogee_logg",
    "LOGG_ERR": "apogee_logg_err",
    "M_H": "apogee_m_h",
    "M_H_ERR": "apogee_m_h_err",
}
#: gaia_source columns the table keeps (float unless listed in GAIA_INT).
GAIA_RAW = (
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error",
    "phot_bp_rp_excess_factor",
    "parallax",
    "parallax_error",
    "ruwe",
    "astrometric_params_solved",
    "nu_eff_used_in_astrometry",
    "pseudocolour",
    "ecl_lat",
)
GAIA_INT = ("astrometric_params_solved",)
#: Gaia-linked 2MASS columns (``stardata.sources.tmass.query_tmass``) the table keeps.
TMASS_RAW = (
    "tmass_designation",
    "ph_qual",
    "j_m",
    "j_msigcom",
    "h_m",
    "h_msigcom",
    "ks_m",
    "ks_msigcom",
)
TMASS_STR = ("tmass_designation", "ph_qual")
#: XP_CONTINUOUS columns the table keeps (coefficients as (N, 55) arrays).
XP_RAW = (
    "bp_coefficients",
    "bp_coefficient_errors",
    "bp_n_relevant_bases",
    "rp_coefficients",
    "rp_coefficient_errors",
    "rp_n_relevant_bases",
)
XP_INT = ("bp_n_relevant_bases", "rp_n_relevant_bases")
#: XP_RAW's (N, 55) array columns
XP_VECTORS = tuple(n for n in XP_RAW if n not in XP_INT)


def derive(apogee: dict, gaia: dict, xp: dict, tmass: dict, s) -> dict[str, np.ndarray]:
    """All derived columns of one block of stars (rows aligned across the four inputs).

    Parameters
    ----------
    apogee : dict
        allStar columns (upper-case names, see :data:`APOGEE_RAW`, plus J, H, K and errors).
    gaia : dict
        gaia_source columns :data:`GAIA_RAW`, NaN (0 for integers) where no match.
    xp : dict
        :data:`XP_RAW`, coefficient arrays (N, 55), NaN where the star has no XP spectrum.
    tmass : dict
        :data:`TMASS_RAW` of the Gaia-linked 2MASS star, NaN (None for strings) where no match.
    s : stardata.release.Settings
        Thresholds and constants.

    Returns
    -------
    dict of str to ndarray
        Raw columns (renamed), the columns of :func:`derive_gaia`, ``teff``, ``logg``, ``m_h``
        (with ``_err``) and the flags ``has_gaia``, ``labels_good``.
    """
    out = {new: apogee[old] for old, new in APOGEE_RAW.items()}
    out.update(derive_gaia(gaia, xp, tmass, s, apogee_jhk=apogee))
    labels = np.stack([apogee["TEFF"], apogee["LOGG"], apogee["M_H"]], axis=1)
    label_err = np.stack([apogee["TEFF_ERR"], apogee["LOGG_ERR"], apogee["M_H_ERR"]], axis=1)
    v, e, bad = apogee_labels(
        labels,
        label_err,
        apogee["ASPCAPFLAG"],
        apogee["STARFLAG"],
        bad_aspcap_bits=tuple(s.label_bad_aspcap_bits),
        require_starflag_zero=s.label_require_starflag_zero,
    )
    for j, name in enumerate(("teff", "logg", "m_h")):
        out[name], out[f"{name}_err"] = v[:, j], e[:, j]
    out["has_gaia"] = np.asarray(apogee["GAIAEDR3_SOURCE_ID"]).astype(np.int64) > 0
    out["labels_good"] = ~bad & np.isfinite(v).any(axis=1)
    return out


def derive_gaia(
    gaia: dict, xp: dict, tmass: dict, s, *, apogee_jhk: dict | None = None
) -> dict[str, np.ndarray]:
    """The columns that come from Gaia, its XP spectra and 2MASS alone (no spectroscopic labels).

    Used by :func:`derive` (the release build) and by :func:`stardata.crossmatch.crossmatch`
    (anyone's catalogue), so both compute every derived column the same way.

    Parameters
    ----------
    gaia, xp, tmass : dict
        As for :func:`derive`.
    s : stardata.release.Settings
    apogee_jhk : dict, optional
        allStar ``J``, ``J_ERR``, ``H``, ``H_ERR``, ``K``, ``K_ERR``; without it J/H/K come
        from 2MASS alone.

    Returns
    -------
    dict of str to ndarray
        :data:`GAIA_RAW`, :data:`XP_RAW`, ``bp{i}``/``rp{i}`` G-normalized *without* relevancy
        masking (with ``_err``; exact zeros NaN), the J/H/K columns of :func:`jhk_columns`,
        ``bprp``, ``jh``, ``jk``, ``g_fakemag`` (all with ``_err``), ``parallax_zero_point`` and
        ``parallax_corrected``.
    """
    out = {name: gaia[name] for name in GAIA_RAW}
    out.update({name: xp[name] for name in XP_RAW})
    g = np.asarray(gaia["phot_g_mean_mag"], dtype=np.float64)
    for band in ("bp", "rp"):
        norm, err = normalize_xp(
            xp[f"{band}_coefficients"], xp[f"{band}_coefficient_errors"], g, mask_irrelevant=False
        )
        for i in range(norm.shape[1]):
            out[f"{band}{i}"] = norm[:, i]
            out[f"{band}{i}_err"] = err[:, i]
    out["bprp"], out["bprp_err"] = bprp(
        gaia["phot_bp_mean_mag"],
        gaia["phot_rp_mean_mag"],
        gaia["phot_bp_mean_flux_over_error"],
        gaia["phot_rp_mean_flux_over_error"],
        bp_zp_err=s.bp_zp_err,
        rp_zp_err=s.rp_zp_err,
    )
    if apogee_jhk is None:
        nan = np.full(g.size, np.nan)
        apogee_jhk = {k: nan for k in ("J", "J_ERR", "H", "H_ERR", "K", "K_ERR")}
    out.update(jhk_columns(apogee_jhk, tmass, s))
    out["jh"], out["jh_err"] = colour(out["j"], out["j_err"], out["h"], out["h_err"])
    out["jk"], out["jk_err"] = colour(out["j"], out["j_err"], out["k"], out["k_err"])
    zp = parallax_zero_point(
        g,
        gaia["nu_eff_used_in_astrometry"],
        gaia["pseudocolour"],
        gaia["ecl_lat"],
        gaia["astrometric_params_solved"],
        extra_slope=s.zp_extra_slope,
        extra_g_min=s.zp_extra_g_min,
        extra_g_max=s.zp_extra_g_max,
    )
    plx = corrected_parallax(
        gaia["parallax"],
        gaia["parallax_error"],
        gaia["ruwe"],
        zp,
        max_error=s.parallax_error_max,
        max_ruwe=s.parallax_ruwe_max,
    )
    out["parallax_zero_point"], out["parallax_corrected"] = zp, plx
    out["g_fakemag"], out["g_fakemag_err"] = g_fakemag(g, plx, gaia["parallax_error"])
    return out


def jhk_columns(apogee: dict, tmass: dict, s) -> dict[str, np.ndarray]:
    """J, H, K from APOGEE's allStar columns or the Gaia-linked 2MASS star, per band.

    ``s.jhk_prefer`` picks the source used where both have a band; the other fills in where the
    preferred one is missing. APOGEE's 99.999 and 2MASS bands whose ``ph_qual`` letter is in
    ``s.tmass_bad_ph_qual`` (upper limits) are missing.

    Returns
    -------
    dict of str to ndarray
        For each band ``b`` in ``j``, ``h``, ``k``: the chosen ``b``, ``b_err`` and ``b_src``
        (``"apogee"``, ``"tmass"`` or ``""``), both sources' cleaned ``apogee_b(_err)`` and
        ``tmass_b(_err)``; and ``tmass_designation``, ``ph_qual`` (None where no 2MASS match).
    """
    from stardata.sources.tmass import JHK_BANDS, choose_band, usable_tmass

    out = {"tmass_designation": tmass["tmass_designation"], "ph_qual": tmass["ph_qual"]}
    for index, (band, a_mag, a_err, t_mag, t_err) in enumerate(JHK_BANDS):
        a, ae = clean_tmass(apogee[a_mag], apogee[a_err])
        t, te = usable_tmass(
            tmass[t_mag], tmass[t_err], tmass["ph_qual"], index, bad=s.tmass_bad_ph_qual
        )
        mag, err, src = choose_band(a, ae, t, te, prefer=s.jhk_prefer)
        out[band], out[f"{band}_err"], out[f"{band}_src"] = mag, err, src
        out[f"apogee_{band}"], out[f"apogee_{band}_err"] = a, ae
        out[f"tmass_{band}"], out[f"tmass_{band}_err"] = t, te
    return out


def mask_xp(
    cols: dict, xp_good: np.ndarray, *, mask_irrelevant: bool = True, propagate_from=None
) -> None:
    """Blank (NaN, float32) the ``bp{i}``/``rp{i}`` values and errors a row may not use, in place.

    A row keeps its XP coefficients only where ``xp_good`` (it passed every XP quality cut) and,
    with ``mask_irrelevant``, only its relevant ones (:func:`stardata.columns.relevancy_mask`
    with ``propagate_from``, the setting ``xp_relevancy_propagate_from``). The release build
    (``stardata.release.outputs``) and :mod:`stardata.crossmatch` both mask through this function.
    """
    good = np.asarray(xp_good, dtype=bool)
    for band in ("bp", "rp"):
        rel = relevancy_mask(cols[f"{band}_n_relevant_bases"], propagate_from=propagate_from)
        if not mask_irrelevant:
            rel[:] = True
        for i in range(N_XP):
            ok = good & rel[:, i]
            for name in (f"{band}{i}", f"{band}{i}_err"):
                cols[name] = np.where(ok, cols[name], np.nan).astype(np.float32)
