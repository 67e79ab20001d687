"""Gaia DR3 ``gaiadr3.gaia_source`` columns through the archive's TAP service (upload and join).

The TAP plumbing (id upload, chunk cache, merging) is in :mod:`stardata.sources.tap`; the XP
spectra are fetched by :mod:`stardata.sources.xp`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import polars as pl

from stardata.sources.tap import (
    GAIA_TAP_URL,
    cached_chunks,
    clean_source_ids,
    merge_chunks,
    upload_query,
)

__all__ = ["GAIA_SOURCE_COLUMNS", "query_gaia_source"]

GAIA_SOURCE_COLUMNS: tuple[str, ...] = (
    "source_id",
    "ra",
    "dec",
    "l",
    "b",
    "parallax",
    "parallax_error",
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error",
    "phot_bp_rp_excess_factor",
    "ruwe",
    "astrometric_params_solved",
    "nu_eff_used_in_astrometry",
    "pseudocolour",
    "ecl_lat",
    "has_xp_continuous",
)
"""The ``gaiadr3.gaia_source`` columns the pipeline needs."""


def _source_query(columns: Sequence[str]) -> str:
    select = ", ".join(f"g.{c}" for c in columns)
    return (
        f"SELECT {select} FROM tap_upload.ids AS u "
        "JOIN gaiadr3.gaia_source AS g ON g.source_id = u.source_id"
    )


def query_gaia_source(
    source_ids: Sequence[int] | np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    tap_url: str = GAIA_TAP_URL,
    columns: Sequence[str] = GAIA_SOURCE_COLUMNS,
    chunk_size: int = 50_000,
    progress: bool = True,
    on_missing: str = "drop",
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 600,
) -> pl.DataFrame:
    """Fetch ``gaiadr3.gaia_source`` columns for ``source_ids`` by TAP upload and join.

    Parameters
    ----------
    source_ids : array-like of int
        Gaia DR3 (= EDR3) source ids; duplicates, 0 and negatives are dropped first.
    cache_dir : path-like
        Folder for the per-chunk Parquet cache.
    tap_url : str, optional
        TAP service (point it at :class:`stardata.testing.MirrorServer` in tests).
    columns : sequence of str, optional
        Columns to fetch; ``source_id`` is always included.
    chunk_size : int, optional
        Ids uploaded per job.
    progress : bool, optional
        Show a progress bar.
    on_missing : {"drop", "null", "raise"}, optional
        Ids absent from the archive: leave them out, keep them as null rows, or fail.
    retries, backoff, timeout : optional
        Retry policy and per-job socket time-out.

    Returns
    -------
    polars.DataFrame
        One row per found id, sorted by ``source_id``.

    Raises
    ------
    RemoteError
        Naming the failing chunk; or for duplicate/unrequested rows from the archive.
    """
    if on_missing not in ("drop", "null", "raise"):
        raise ValueError(f"on_missing must be 'drop', 'null' or 'raise', not {on_missing!r}")
    columns = ["source_id", *[c for c in columns if c != "source_id"]]
    ids = clean_source_ids(source_ids)
    query = _source_query(columns)
    frames = list(
        cached_chunks(
            ids,
            cache_dir,
            prefix="gaia_source",
            chunk_size=chunk_size,
            salt=query,
            fetch=lambda chunk: upload_query(
                chunk, query, tap_url, columns=columns, timeout=timeout
            ),
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
    )
    return merge_chunks(frames, ids, on_missing, "gaia_source")
