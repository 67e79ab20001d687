"""Gaia archive TAP: upload a table of source ids, run an ADQL join, cache each chunk.

Every TAP connector (:mod:`stardata.sources.gaia`, :mod:`stardata.sources.tmass`) and the XP
DataLink connector (:mod:`stardata.sources.xp`) split the ids into chunks and cache each chunk's
result as a Parquet file named by the chunk index and a hash of its ids (so a rerun resumes where
it stopped, and a changed id list never reuses a stale chunk), retry transient failures and join
on ``source_id`` (the archive's row order is never relied upon).

A cached chunk is reused only if its bytes still have the SHA-256 recorded next to it
(``<chunk>.parquet.sha256``) and Parquet can read it; a damaged or unrecorded chunk is logged,
removed and fetched again.

The archive's VOTables give some columns an ``ID`` attribute that differs from their ``name``
(``<FIELD ID="SOURCE_ID" name="source_id">``, for its DataLink service descriptors); columns are
read by ``name`` (astroquery's ``use_names_over_ids``), and a result lacking an expected column
is a one-line :class:`ArchiveError` naming the column and the query.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from stardata.errors import ArchiveError, RemoteError
from stardata.io import atomic_path, sha256_file
from stardata.sources.http import retry_call

__all__ = [
    "GAIA_TAP_URL",
    "align_on_ids",
    "cached_chunks",
    "clean_source_ids",
    "merge_chunks",
    "require_columns",
    "to_polars",
    "upload_query",
]

log = logging.getLogger(__name__)

GAIA_TAP_URL = "https://gea.esac.esa.int/tap-server/tap"
"""The Gaia archive TAP service."""


# -- ids and chunk cache ------------------------------------------------------------------------
def clean_source_ids(source_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Unique, sorted, positive int64 source ids (0, negative and masked ids are dropped)."""
    ids = np.ma.filled(np.ma.asarray(source_ids), 0)
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        raise TypeError("source ids must be integers, not floats (precision would be lost)")
    ids = ids.astype(np.int64, copy=False)
    return np.unique(ids[ids > 0])


def _chunk_hash(ids: np.ndarray, salt: str) -> str:
    digest = hashlib.sha256(ids.astype("<i8").tobytes())
    digest.update(salt.encode())
    return digest.hexdigest()[:16]


def _write_chunk(frame: pl.DataFrame, path: Path) -> None:
    """Write a chunk atomically, then its SHA-256 (a chunk without one is never reused)."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)
    with atomic_path(_sidecar(path)) as tmp:
        tmp.write_text(f"{sha256_file(path)}  {path.name}\n")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_chunk(path: Path) -> pl.DataFrame | None:
    """A cached chunk if it is intact, else None (after removing it and saying why)."""
    record = _sidecar(path)
    try:
        recorded = record.read_text().split()[0] if record.exists() else None
    except (OSError, IndexError):
        recorded = None
    if recorded is None:
        problem = "has no recorded SHA-256"
    elif sha256_file(path) != recorded:
        problem = "does not match its recorded SHA-256 (damaged)"
    else:
        try:
            return pl.read_parquet(path)
        except (OSError, pl.exceptions.ComputeError) as exc:
            problem = f"cannot be read ({' '.join(str(exc).split())[:120]})"
    log.warning("cached chunk %s %s; fetching it again", path, problem)
    path.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    return None


def cached_chunks(
    ids: np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    prefix: str,
    chunk_size: int,
    fetch: Callable[[np.ndarray], pl.DataFrame],
    salt: str = "",
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
) -> Iterator[pl.DataFrame]:
    """Yield ``fetch(chunk)`` for each chunk of ``ids``, cached as Parquet under ``cache_dir``.

    Parameters
    ----------
    ids : numpy.ndarray
        Ids, already cleaned (see :func:`clean_source_ids`).
    cache_dir : path-like
        Folder of the per-chunk files ``<prefix>-<index>-<hash>.parquet``.
    prefix : str
        Name of the query (also used in error messages).
    chunk_size : int
        Ids per remote call.
    fetch : callable
        The remote call for one chunk.
    salt : str, optional
        Anything else the result depends on (columns, format), mixed into the hash.
    progress : bool, optional
        Show a progress bar over chunks.
    retries, backoff : optional
        See :func:`stardata.sources.http.retry_call`.

    Raises
    ------
    RemoteError
        Naming the chunk, after its retries; completed chunks stay cached.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(ids), chunk_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(starts), desc=prefix, unit="chunk")
    try:
        for index, start in enumerate(starts):
            chunk = ids[start : start + chunk_size]
            path = cache / f"{prefix}-{index:05d}-{_chunk_hash(chunk, salt)}.parquet"
            frame = _read_chunk(path) if path.exists() else None
            if frame is None:
                what = f"{prefix} chunk {index} ({len(chunk)} ids, {chunk[0]}..{chunk[-1]})"
                frame = retry_call(
                    lambda c=chunk: fetch(c), what=what, retries=retries, backoff=backoff
                )
                _check_ids(frame, chunk, what)
                _write_chunk(frame, path)
            if bar is not None:
                bar.update(1)
            yield frame
    finally:
        if bar is not None:
            bar.close()


def _check_ids(frame: pl.DataFrame, chunk: np.ndarray, what: str) -> None:
    got = frame["source_id"].to_numpy()
    unknown = np.setdiff1d(got, chunk)
    if unknown.size:
        raise RemoteError(f"{what}: archive returned {unknown.size} ids not requested")


# -- TAP upload ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _socket_timeout(seconds: float | None) -> Iterator[None]:
    """astroquery's TAP connections have no time-out; bound them with the default one."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def upload_query(
    ids: np.ndarray,
    query: str,
    tap_url: str = GAIA_TAP_URL,
    *,
    columns: Sequence[str] | None = None,
    timeout: float = 600,
) -> pl.DataFrame:
    """Run an asynchronous ADQL job on ``tap_url`` with ``ids`` uploaded as ``tap_upload.ids``.

    The uploaded VOTable has one int64 column ``source_id``. Asynchronous jobs are used because
    synchronous ones are capped at 2,000 rows (astroquery's ``launch_job`` adds ``TOP 2000``).
    Result columns are read by their VOTable ``name``, not their ``ID``.

    Parameters
    ----------
    columns : sequence of str, optional
        Columns the result must have (see :func:`require_columns`); only these are returned.

    Raises
    ------
    ArchiveError
        When the job ends in phase ERROR (e.g. an ADQL error), or its result lacks one of
        ``columns``; not retried.
    """
    from astropy.table import Table
    from astroquery.utils.tap.core import TapPlus

    upload = Table({"source_id": np.asarray(ids, dtype=np.int64)})
    with _socket_timeout(timeout):
        tap = TapPlus(url=tap_url, verbose=False, use_names_over_ids=True)
        try:
            job = tap.launch_job_async(
                query,
                upload_resource=upload,
                upload_table_name="ids",
                output_format="votable",
                verbose=False,
                dump_to_file=False,
            )
            table = job.get_results()
        except SystemError as exc:  # astroquery's signal for a job in phase ERROR
            raise ArchiveError(" ".join(str(exc).split())) from exc
    frame = to_polars(table)
    return frame if columns is None else require_columns(frame, columns, query)


def require_columns(frame: pl.DataFrame, columns: Sequence[str], query: str) -> pl.DataFrame:
    """``frame[columns]``, matching names case-insensitively; one-line error if one is absent.

    Parameters
    ----------
    frame : polars.DataFrame
        A query result.
    columns : sequence of str
        The columns the query asks for.
    query : str
        The ADQL, named in the error.

    Raises
    ------
    ArchiveError
        Naming the missing column(s), what the answer has instead and the query.
    """
    by_lower = {name.lower(): name for name in frame.columns}
    found, missing = {}, []
    for name in columns:
        actual = name if name in frame.columns else by_lower.get(name.lower())
        if actual is None:
            missing.append(name)
        else:
            found[actual] = name
    if missing:
        has = ", ".join(frame.columns[:8]) + (", ..." if frame.width > 8 else "")
        raise ArchiveError(
            f"the archive's answer lacks column(s) {', '.join(missing)} (it has: {has or 'none'})"
            f"; query: {' '.join(query.split())}"
        )
    return frame.select([pl.col(actual).alias(name) for actual, name in found.items()])


def to_polars(table) -> pl.DataFrame:
    """An astropy table as polars: masked floats become NaN, other masked values null."""
    columns = {}
    for name in table.colnames:
        column = table[name]
        mask = np.ma.getmaskarray(column)
        values = np.ma.getdata(column)
        if values.dtype.kind in "SO":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
        if values.dtype.kind == "f":
            columns[name] = pl.Series(name, np.where(mask, np.nan, values))
        elif mask.any():
            columns[name] = pl.Series(name, values).scatter(np.flatnonzero(mask), None)
        else:
            columns[name] = pl.Series(name, values)
    return pl.DataFrame(columns)


def merge_chunks(
    frames: list[pl.DataFrame], ids: np.ndarray, on_missing: str, what: str
) -> pl.DataFrame:
    """Concatenate per-chunk results, sorted by ``source_id``, refusing duplicate rows.

    Parameters
    ----------
    frames : list of polars.DataFrame
        Chunk results.
    ids : numpy.ndarray
        The (clean) ids that were asked for.
    on_missing : {"drop", "null", "raise"}
        What to do with ids absent from the results: leave them out, keep them as null rows
        (only ``source_id`` set), or raise :class:`RemoteError`.
    what : str
        Query name for messages.
    """
    frame = pl.concat(frames, how="vertical_relaxed") if frames else None
    if frame is None or frame.width == 0:
        frame = pl.DataFrame({"source_id": np.empty(0, dtype=np.int64)})
    frame = frame.sort("source_id")
    dup = frame["source_id"].is_duplicated()
    if dup.any():
        first = frame["source_id"].filter(dup)[0]
        raise RemoteError(f"{what}: archive returned duplicate rows (e.g. source_id {first})")
    missing = ids.size - frame.height
    if missing:
        log.warning("%s: %d of %d ids not found", what, missing, ids.size)
        if on_missing == "raise":
            raise RemoteError(f"{what}: {missing} of {ids.size} ids not found in the archive")
        if on_missing == "null":
            frame = pl.DataFrame({"source_id": ids}).join(frame, on="source_id", how="left")
    return frame


def align_on_ids(
    ids: np.ndarray, frame: pl.DataFrame, names, ints=(), strings=(), vectors=None
) -> tuple[dict, np.ndarray]:
    """Rows of ``frame`` (with ``source_id``) placed at the positions of ``ids`` (join on id).

    Missing values are NaN, 0 for ``ints`` and None for ``strings``; ``vectors`` maps the
    names of array columns to their width, so that they stay 2-D when no id is found. Also
    returns which ids were found. The first row of a repeated id wins.
    """
    has = frame.height > 0 and "source_id" in frame.columns
    fid = frame["source_id"].to_numpy().astype(np.int64) if has else np.zeros(0, np.int64)
    fid, first = np.unique(fid, return_index=True)
    pos = np.clip(np.searchsorted(fid, ids), 0, max(len(fid) - 1, 0))
    found = (ids > 0) & (len(fid) > 0) & (fid[pos] == ids if len(fid) else False)
    src = first[pos[found]]
    vectors = vectors or {}
    out = {}
    for name in names:
        values = frame[name].to_numpy() if has and name in frame.columns else None
        if values is not None and values.ndim == 2:
            arr = np.full((ids.size, values.shape[1]), np.nan)
        elif name in vectors:
            arr = np.full((ids.size, vectors[name]), np.nan)
        elif name in ints:
            arr = np.zeros(ids.size, dtype=np.int64)
        elif name in strings:
            arr = np.full(ids.size, None, dtype=object)
        else:
            arr = np.full(ids.size, np.nan)
        if values is not None and found.any():
            picked = values[src]
            if name in ints:
                picked = np.nan_to_num(picked.astype(np.float64), nan=0).astype(np.int64)
            arr[found] = picked
        out[name] = arr
    return out, found
