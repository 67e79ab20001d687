"""Positional matching against the Gaia archive: upload positions, let ADQL propagate epochs.

The archive's ADQL has ``EPOCH_PROP_POS(ra, dec, parallax, pmra, pmdec, radial_velocity,
ref_epoch, target_epoch)``, which returns a source's POINT moved to ``target_epoch`` (ESA 1997's
rigorous propagation; Gaia archive documentation, section "Epoch propagation functions"). As the
archive advises, the join selects candidates around the J2016.0 positions within the match radius
plus the largest proper motion times the epoch difference (so the sky index is used), and returns
each candidate's separation after propagation; the nearest within the radius is picked here.
Chunks of positions are cached and resumed like every other TAP query
(:func:`stardata.sources.tap.cached_chunks`).
"""

from __future__ import annotations

import hashlib
import os
import socket

import numpy as np
import polars as pl

from stardata.errors import ArchiveError
from stardata.sources.tap import GAIA_TAP_URL, cached_chunks, require_columns, to_polars

__all__ = ["CONE_QUERY", "match_archive"]

#: Candidates of each uploaded position, with their separation at the position's epoch [deg].
CONE_QUERY = (
    "SELECT u.row_id AS row_id, g.source_id AS source_id, "
    "DISTANCE(POINT('ICRS', u.ra, u.dec), EPOCH_PROP_POS(g.ra, g.dec, g.parallax, g.pmra, "
    "g.pmdec, g.radial_velocity, g.ref_epoch, u.epoch)) AS sep "
    "FROM tap_upload.pos AS u JOIN gaiadr3.gaia_source AS g "
    "ON 1 = CONTAINS(POINT('ICRS', g.ra, g.dec), CIRCLE('ICRS', u.ra, u.dec, u.search))"
)
_COLUMNS = ("row_id", "source_id", "sep")


def _upload(table, tap_url: str, timeout: float) -> pl.DataFrame:
    """Run :data:`CONE_QUERY` as an asynchronous job with ``table`` uploaded as ``pos``."""
    from astroquery.utils.tap.core import TapPlus

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # astroquery's connections have no time-out of their own
    try:
        # columns by VOTable name, not ID: the archive's IDs are upper case
        job = TapPlus(url=tap_url, verbose=False, use_names_over_ids=True).launch_job_async(
            CONE_QUERY,
            upload_resource=table,
            upload_table_name="pos",
            output_format="votable",
            verbose=False,
            dump_to_file=False,
        )
        return require_columns(to_polars(job.get_results()), _COLUMNS, CONE_QUERY)
    except SystemError as exc:  # astroquery's signal for a job in phase ERROR
        raise ArchiveError(" ".join(str(exc).split())) from exc
    finally:
        socket.setdefaulttimeout(previous)


def match_archive(
    ra: np.ndarray,
    dec: np.ndarray,
    epoch: np.ndarray,
    radius: float,
    cache_dir: str | os.PathLike,
    *,
    tap_url: str = GAIA_TAP_URL,
    max_pm: float = 11.0,
    chunk_size: int = 20_000,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 600,
) -> dict[str, np.ndarray]:
    """Nearest Gaia DR3 source within ``radius`` of each position at its epoch (archive TAP).

    Parameters
    ----------
    ra, dec, epoch : numpy.ndarray
        Positions [deg] and their epochs [Julian yr]; NaN positions are not uploaded.
    radius : float
        Match radius [arcsec].
    cache_dir : path-like
        Per-chunk cache (keyed by the rows, their positions and the radius).
    max_pm : float
        Largest proper motion searched for [arcsec/yr]; Barnard's star has 10.4.
    chunk_size : int
        Positions uploaded per job.

    Returns
    -------
    dict of numpy.ndarray
        As :func:`stardata.crossmatch.sky.match_local` (``reference_row`` is -1 throughout).
    """
    from astropy.table import Table

    n = ra.size
    usable = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    search = (radius + max_pm * np.abs(epoch - 2016.0)) / 3600.0
    # the cache hashes the uploaded row numbers; the salt adds everything else they carry
    digest = hashlib.sha256()
    for v in (ra[usable], dec[usable], epoch[usable], search[usable]):
        digest.update(np.ascontiguousarray(v, dtype="<f8").tobytes())
    salt = f"{CONE_QUERY}|{radius}|{digest.hexdigest()}"

    def fetch(rows: np.ndarray) -> pl.DataFrame:
        i = rows - 1
        upload = Table(
            {"row_id": rows, "ra": ra[i], "dec": dec[i], "epoch": epoch[i], "search": search[i]}
        )
        got = _upload(upload, tap_url, timeout)
        # cached_chunks checks the ``source_id`` column against the uploaded keys: the rows
        return got.rename({"source_id": "gaia_source_id", "row_id": "source_id"})

    frames = list(
        cached_chunks(
            usable.astype(np.int64) + 1,
            cache_dir,
            prefix="gaia_cone",
            chunk_size=chunk_size,
            fetch=fetch,
            salt=salt,
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
    )
    return _nearest(frames, n, radius)


def _nearest(frames: list[pl.DataFrame], n: int, radius: float) -> dict[str, np.ndarray]:
    out = {
        "source_id": np.zeros(n, np.int64),
        "reference_row": np.full(n, -1, np.int64),
        "separation_arcsec": np.full(n, np.nan),
        "n_candidates": np.zeros(n, np.int32),
    }
    frames = [f for f in frames if f.height]
    if frames:
        cand = pl.concat(frames, how="vertical_relaxed").with_columns(
            (pl.col("sep").cast(pl.Float64) * 3600.0).alias("sep")
        )
        cand = cand.filter(pl.col("sep") <= radius)
        best = (
            cand.sort(["source_id", "sep", "gaia_source_id"])
            .group_by("source_id", maintain_order=True)
            .agg(
                pl.col("gaia_source_id").first(),
                pl.col("sep").first(),
                pl.len().alias("n"),
            )
        )
        rows = best["source_id"].to_numpy().astype(np.int64) - 1
        out["source_id"][rows] = best["gaia_source_id"].to_numpy()
        out["separation_arcsec"][rows] = best["sep"].to_numpy()
        out["n_candidates"][rows] = best["n"].to_numpy()
    out["ambiguous"] = out["n_candidates"] > 1
    return out
