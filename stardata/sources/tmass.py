"""2MASS J, H, Ks through Gaia DR3's 2MASS best-neighbour table, compared with APOGEE's own.

Gaia DR3 links each source to its best 2MASS neighbour in ``gaiadr3.tmass_psc_xsc_best_neighbour``
(``source_id``, ``original_ext_source_id`` = the 2MASS designation); the photometry is in
``gaiadr1.tmass_original_valid`` (``designation``, ``j_m``, ``j_msigcom``, ..., ``ph_qual``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from stardata.columns import MISSING_MAG, missing_magnitude
from stardata.sources.tap import (
    GAIA_TAP_URL,
    cached_chunks,
    clean_source_ids,
    merge_chunks,
    upload_query,
)

__all__ = [
    "APOGEE_BAD_MAG",
    "BAD_PH_QUAL",
    "JHK_BANDS",
    "PREFER",
    "TMASS_COLUMNS",
    "choose_band",
    "combine_tmass",
    "compare_band",
    "compare_jhk",
    "query_tmass",
    "usable_tmass",
]

log = logging.getLogger(__name__)

TMASS_COLUMNS: tuple[str, ...] = (
    "source_id",
    "tmass_designation",
    "j_m",
    "j_msigcom",
    "h_m",
    "h_msigcom",
    "ks_m",
    "ks_msigcom",
    "ph_qual",
)
"""Columns returned by :func:`query_tmass`."""

APOGEE_BAD_MAG = MISSING_MAG
"""APOGEE writes 99.999 for a missing 2MASS magnitude (the shared rule:
:func:`stardata.columns.missing_magnitude`)."""

BAD_PH_QUAL = "UX"
"""2MASS ``ph_qual`` letters whose magnitude is not a measurement (U: upper limit, X: no valid
brightness estimate); such a band counts as missing."""

PREFER = ("apogee", "tmass")
"""The two sources of J, H, K (APOGEE's allStar columns, or 2MASS through Gaia's best neighbour)."""

#: (output band, APOGEE magnitude, APOGEE error, 2MASS magnitude, 2MASS error), in ph_qual order
JHK_BANDS = (
    ("j", "J", "J_ERR", "j_m", "j_msigcom"),
    ("h", "H", "H_ERR", "h_m", "h_msigcom"),
    ("k", "K", "K_ERR", "ks_m", "ks_msigcom"),
)


def _tmass_query() -> str:
    photometry = ", ".join(f"t.{c}" for c in TMASS_COLUMNS[2:])
    return (
        f"SELECT u.source_id AS source_id, t.designation AS tmass_designation, {photometry} "
        "FROM tap_upload.ids AS u "
        "JOIN gaiadr3.tmass_psc_xsc_best_neighbour AS x ON x.source_id = u.source_id "
        "JOIN gaiadr1.tmass_original_valid AS t ON t.designation = x.original_ext_source_id"
    )


def query_tmass(
    source_ids: Sequence[int] | np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    tap_url: str = GAIA_TAP_URL,
    chunk_size: int = 50_000,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 600,
) -> pl.DataFrame:
    """2MASS photometry of the best 2MASS neighbour of each Gaia DR3 source.

    Parameters
    ----------
    source_ids : array-like of int
        Gaia DR3 source ids (duplicates, 0 and negatives dropped).
    cache_dir : path-like
        Folder for the per-chunk Parquet cache.
    tap_url : str, optional
        TAP service.
    chunk_size : int, optional
        Ids uploaded per job.
    progress, retries, backoff, timeout : optional
        As for :func:`stardata.sources.gaia.query_gaia_source`.

    Returns
    -------
    polars.DataFrame
        :data:`TMASS_COLUMNS`, one row per source with a 2MASS neighbour, sorted by
        ``source_id``.
    """
    ids = clean_source_ids(source_ids)
    query = _tmass_query()
    frames = list(
        cached_chunks(
            ids,
            cache_dir,
            prefix="tmass",
            chunk_size=chunk_size,
            salt=query,
            fetch=lambda chunk: upload_query(
                chunk, query, tap_url, columns=TMASS_COLUMNS, timeout=timeout
            ),
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
    )
    frame = merge_chunks(frames, ids, "drop", "tmass")
    if frame.height == 0:
        return pl.DataFrame(schema={c: pl.Float64 for c in TMASS_COLUMNS}).with_columns(
            pl.col("source_id").cast(pl.Int64),
            pl.col("tmass_designation").cast(pl.String),
            pl.col("ph_qual").cast(pl.String),
        )
    return frame


def usable_tmass(mag, err, ph_qual, band: int, *, bad: str = BAD_PH_QUAL):
    """A 2MASS band's magnitude and error, NaN where it is not a usable measurement.

    Parameters
    ----------
    mag, err : array-like
        ``j_m``/``h_m``/``ks_m`` and their ``*_msigcom`` (NaN or null where absent).
    ph_qual : array-like of str or None
        The 3-letter 2MASS photometric quality (J, H, Ks); None where the star has no match.
    band : int
        0, 1 or 2 for J, H, Ks (the letter of ``ph_qual`` to look at).
    bad : str, optional
        Quality letters that make the band missing (:data:`BAD_PH_QUAL`).

    Returns
    -------
    mag, err : numpy.ndarray of float64
        NaN where the magnitude or its error is missing or the band's quality letter is bad.
    """
    m = np.asarray(mag, dtype=np.float64).copy()
    e = np.asarray(err, dtype=np.float64).copy()
    quality = np.asarray(ph_qual, dtype=object)
    flagged = np.fromiter(
        (isinstance(q, str) and len(q) > band and q[band] in bad for q in quality),
        dtype=bool,
        count=quality.size,
    )
    missing = flagged | ~np.isfinite(m) | ~np.isfinite(e)
    m[missing], e[missing] = np.nan, np.nan
    return m, e


def choose_band(apogee_mag, apogee_err, tmass_mag, tmass_err, *, prefer: str = "apogee"):
    """One band from the preferred source where it has the band, else from the other.

    Parameters
    ----------
    apogee_mag, apogee_err, tmass_mag, tmass_err : array-like
        Both sources' magnitudes and errors, NaN where missing (APOGEE's 99.999 already NaN).
    prefer : {"apogee", "tmass"}, optional
        Which source wins where both have the band (LB24 used APOGEE's).

    Returns
    -------
    mag, err : numpy.ndarray of float64
        NaN where neither source has the band.
    source : numpy.ndarray of str
        ``"apogee"``, ``"tmass"`` or ``""`` (neither) per row.
    """
    if prefer not in PREFER:
        raise ValueError(f"prefer must be 'apogee' or 'tmass', not {prefer!r}")
    a = (np.asarray(apogee_mag, dtype=np.float64), np.asarray(apogee_err, dtype=np.float64))
    t = (np.asarray(tmass_mag, dtype=np.float64), np.asarray(tmass_err, dtype=np.float64))
    (first, first_name), (second, second_name) = ((a, "apogee"), (t, "tmass"))[
        :: 1 if prefer == "apogee" else -1
    ]
    use_first = np.isfinite(first[0])
    use_second = ~use_first & np.isfinite(second[0])
    mag = np.where(use_first, first[0], np.where(use_second, second[0], np.nan))
    err = np.where(use_first, first[1], np.where(use_second, second[1], np.nan))
    source = np.where(use_first, first_name, np.where(use_second, second_name, ""))
    return mag, err, source


def compare_band(apogee_mag, tmass_mag) -> dict:
    """How one band's APOGEE and 2MASS magnitudes agree (NaN where a source lacks it).

    Returns
    -------
    dict
        ``n_both``, ``n_apogee_only``, ``n_tmass_only``, ``median_diff`` (APOGEE minus 2MASS,
        mag) and ``max_abs_diff``; the last two NaN when no star has both.
    """
    a = np.asarray(apogee_mag, dtype=np.float64)
    t = np.asarray(tmass_mag, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(t)
    diff = a[both] - t[both]
    return {
        "n_both": int(both.sum()),
        "n_apogee_only": int((np.isfinite(a) & ~np.isfinite(t)).sum()),
        "n_tmass_only": int((~np.isfinite(a) & np.isfinite(t)).sum()),
        "median_diff": float(np.median(diff)) if diff.size else float("nan"),
        "max_abs_diff": float(np.max(np.abs(diff))) if diff.size else float("nan"),
    }


def _apogee_frame(apogee: Mapping | pl.DataFrame) -> pl.DataFrame:
    frame = apogee if isinstance(apogee, pl.DataFrame) else pl.DataFrame(dict(apogee))
    if "source_id" not in frame.columns:
        if "GAIAEDR3_SOURCE_ID" not in frame.columns:
            raise KeyError("apogee table needs GAIAEDR3_SOURCE_ID (or source_id)")
        frame = frame.with_columns(pl.col("GAIAEDR3_SOURCE_ID").alias("source_id"))
    missing = [c for band in JHK_BANDS for c in band[1:3] if c not in frame.columns]
    if missing:
        raise KeyError(f"apogee table lacks column(s): {', '.join(missing)}")
    return frame


def _clean(values: pl.Series, *, sentinel: bool) -> np.ndarray:
    out = values.cast(pl.Float64).fill_null(np.nan).to_numpy().copy()
    if sentinel:
        out[missing_magnitude(out)] = np.nan
    return out


def _joined(apogee: Mapping | pl.DataFrame, tmass: pl.DataFrame) -> pl.DataFrame:
    frame = (
        _apogee_frame(apogee)
        .select("source_id", *[c for band in JHK_BANDS for c in band[1:3]])
        .with_row_index("_row")
    )
    if tmass["source_id"].is_duplicated().any():
        raise ValueError("tmass table has duplicate source_id rows")
    keep = [c for c in TMASS_COLUMNS if c in tmass.columns]
    right = tmass.select(keep).with_columns(pl.col("source_id").cast(frame["source_id"].dtype))
    joined = frame.join(right, on="source_id", how="left").sort("_row")
    missing = [c for c in TMASS_COLUMNS[1:] if c not in joined.columns]
    return joined.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in missing)


def _bands(joined: pl.DataFrame, bad_ph_qual: str):
    """Per band: (name, APOGEE mag, APOGEE err, usable 2MASS mag, 2MASS err), all cleaned."""
    quality = joined["ph_qual"].cast(pl.String).to_numpy()
    for index, (band, a_mag, a_err, t_mag, t_err) in enumerate(JHK_BANDS):
        a = _clean(joined[a_mag], sentinel=True)
        ae = np.where(np.isfinite(a), _clean(joined[a_err], sentinel=True), np.nan)
        t, te = usable_tmass(
            _clean(joined[t_mag], sentinel=False),
            _clean(joined[t_err], sentinel=False),
            quality,
            index,
            bad=bad_ph_qual,
        )
        yield band, a, ae, t, te


def compare_jhk(
    apogee: Mapping | pl.DataFrame, tmass: pl.DataFrame, *, bad_ph_qual: str = BAD_PH_QUAL
) -> dict[str, dict]:
    """Compare APOGEE's J/H/K with the Gaia-linked 2MASS magnitudes, band by band.

    Returns
    -------
    dict
        For each of ``j``, ``h``, ``k``: :func:`compare_band` of the two sources (2MASS bands
        whose ``ph_qual`` letter is in ``bad_ph_qual`` count as missing).
    """
    joined = _joined(apogee, tmass)
    return {band: compare_band(a, t) for band, a, _, t, _ in _bands(joined, bad_ph_qual)}


def combine_tmass(
    apogee: Mapping | pl.DataFrame,
    tmass: pl.DataFrame,
    *,
    prefer: str = "apogee",
    bad_ph_qual: str = BAD_PH_QUAL,
    report: dict | None = None,
) -> pl.DataFrame:
    """J, H, K per APOGEE row from the preferred source, falling back to the other.

    Parameters
    ----------
    apogee : dict or polars.DataFrame
        allStar columns ``GAIAEDR3_SOURCE_ID`` (or ``source_id``), ``J``, ``J_ERR``, ``H``,
        ``H_ERR``, ``K``, ``K_ERR``; magnitudes >= 99 (APOGEE's 99.999) are missing.
    tmass : polars.DataFrame
        :func:`query_tmass` output.
    prefer : {"apogee", "tmass"}, optional
        Which source to use where both have a band (LB24 used APOGEE's).
    bad_ph_qual : str, optional
        2MASS quality letters that make a band missing (see :func:`usable_tmass`).
    report : dict, optional
        Filled with the :func:`compare_jhk` comparison (also logged).

    Returns
    -------
    polars.DataFrame
        In APOGEE row order: ``source_id``, ``tmass_designation``, ``ph_qual``, ``j``,
        ``j_err``, ``h``, ``h_err``, ``k``, ``k_err`` (NaN when neither source has the band)
        and ``j_src``, ``h_src``, ``k_src`` (``"apogee"``, ``"tmass"`` or ``""``).
    """
    if prefer not in PREFER:
        raise ValueError(f"prefer must be 'apogee' or 'tmass', not {prefer!r}")
    joined = _joined(apogee, tmass)
    out = {name: joined[name] for name in ("source_id", "tmass_designation", "ph_qual")}
    comparison = {}
    for band, a, ae, t, te in _bands(joined, bad_ph_qual):
        comparison[band] = compare_band(a, t)
        out[band], out[f"{band}_err"], out[f"{band}_src"] = choose_band(a, ae, t, te, prefer=prefer)
    if report is not None:
        report.update(comparison)
    log.info("APOGEE vs 2MASS J/H/K: %s", comparison)
    return pl.DataFrame(out)
