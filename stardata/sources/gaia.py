"""Gaia DR3 through the archive: ``gaia_source`` columns by TAP upload, XP spectra by DataLink.

Both connectors split the ids into chunks, cache each chunk's result as a Parquet file named by
the chunk index and a hash of its ids (so a rerun resumes where it stopped, and a changed id list
never reuses a stale chunk), retry transient failures and join on ``source_id`` (the archive's
row order is never relied upon).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import socket
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from stardata.sources.http import (
    ArchiveError,
    IncompleteDownload,
    RemoteError,
    http_post,
    retry_call,
)

__all__ = [
    "GAIA_DATALINK_URL",
    "GAIA_SOURCE_COLUMNS",
    "GAIA_TAP_URL",
    "XP_N_COEFFICIENTS",
    "cached_chunks",
    "clean_source_ids",
    "fetch_xp_continuous",
    "merge_chunks",
    "parse_xp_continuous",
    "parse_xp_csv",
    "query_gaia_source",
    "upload_query",
]

log = logging.getLogger(__name__)

GAIA_TAP_URL = "https://gea.esac.esa.int/tap-server/tap"
"""The Gaia archive TAP service."""
GAIA_DATALINK_URL = "https://gea.esac.esa.int/data-server/data"
"""The Gaia archive DataLink data server (what ``Gaia.load_data`` posts to)."""

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

XP_N_COEFFICIENTS = 55
_XP_ARRAYS = ("coefficients", "coefficient_errors")
_XP_SCALARS = {
    "n_parameters": pl.Int16,
    "n_relevant_bases": pl.Int16,
    "standard_deviation": pl.Float64,
}


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


def _write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


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
            if path.exists():
                frame = pl.read_parquet(path)
            else:
                what = f"{prefix} chunk {index} ({len(chunk)} ids, {chunk[0]}..{chunk[-1]})"
                frame = retry_call(
                    lambda c=chunk: fetch(c), what=what, retries=retries, backoff=backoff
                )
                _check_ids(frame, chunk, what)
                _write_parquet_atomic(frame, path)
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
    ids: np.ndarray, query: str, tap_url: str = GAIA_TAP_URL, *, timeout: float = 600
) -> pl.DataFrame:
    """Run an asynchronous ADQL job on ``tap_url`` with ``ids`` uploaded as ``tap_upload.ids``.

    The uploaded VOTable has one int64 column ``source_id``. Asynchronous jobs are used because
    synchronous ones are capped at 2,000 rows (astroquery's ``launch_job`` adds ``TOP 2000``).

    Raises
    ------
    ArchiveError
        When the job ends in phase ERROR (e.g. an ADQL error); not retried.
    """
    from astropy.table import Table
    from astroquery.utils.tap.core import TapPlus

    upload = Table({"source_id": np.asarray(ids, dtype=np.int64)})
    with _socket_timeout(timeout):
        tap = TapPlus(url=tap_url, verbose=False)
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
    return _to_polars(table)


def _to_polars(table) -> pl.DataFrame:
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


def _source_query(columns: Sequence[str]) -> str:
    select = ", ".join(f"g.{c}" for c in columns)
    return (
        f"SELECT {select} FROM tap_upload.ids AS u "
        "JOIN gaiadr3.gaia_source AS g ON g.source_id = u.source_id"
    )


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
        What to do with ids absent from the results (see :func:`query_gaia_source`).
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
        TAP service (point it at :class:`stardata.mirror.MirrorServer` in tests).
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
            fetch=lambda chunk: upload_query(chunk, query, tap_url, timeout=timeout),
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
    )
    return merge_chunks(frames, ids, on_missing, "gaia_source")


# -- XP continuous through DataLink -------------------------------------------------------------
def _vector(cell, length: int) -> np.ndarray:
    """One array cell from any archive format as float64 of ``length`` (NaN padded)."""
    if cell is None or (np.ma.isMaskedArray(cell) and np.ma.getmaskarray(cell).all()):
        return np.full(length, np.nan)
    if isinstance(cell, bytes | str):
        text = cell.decode() if isinstance(cell, bytes) else cell
        text = text.strip().strip("()[]")
        parts = [p.strip() for p in text.split(",")] if text else []
        values = np.array([np.nan if p in ("", "null", "nan", "NaN") else float(p) for p in parts])
    else:
        values = np.ma.filled(np.ma.asarray(cell, dtype=np.float64), np.nan).ravel()
    out = np.full(length, np.nan)
    out[: min(length, values.size)] = values[:length]
    return out


def _read_table(source, name: str):
    from astropy.table import Table

    lower = name.lower()
    if lower.endswith(".fits"):
        return Table.read(source, format="fits", hdu=1)
    if lower.endswith((".xml", ".vot", ".votable")):
        return Table.read(source, format="votable")
    text = source.read().decode("utf-8")
    if lower.endswith(".ecsv"):
        return Table.read(text, format="ascii.ecsv")
    if lower.endswith(".csv"):
        return Table.read(text, format="ascii.csv", fast_reader=False)
    raise ValueError(f"{name}: unknown XP product format (expected fits, xml, ecsv or csv)")


def parse_xp_continuous(source, name: str, *, correlations: bool = False) -> pl.DataFrame:
    """Parse one XP_CONTINUOUS product file (FITS, VOTable, ECSV or CSV, as the archive serves).

    Parameters
    ----------
    source : path-like or binary file object
        The product file.
    name : str
        Its file name; the extension selects the format.
    correlations : bool, optional
        Also keep ``bp/rp_coefficient_correlations`` (1,485 values per band).

    Returns
    -------
    polars.DataFrame
        ``source_id``; for each band ``bp``/``rp``: ``*_coefficients`` and
        ``*_coefficient_errors`` (Array(Float64, 55), NaN where absent), ``*_n_parameters``,
        ``*_n_relevant_bases``, ``*_standard_deviation`` (and ``*_coefficient_correlations``).
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return parse_xp_continuous(io.BytesIO(handle.read()), name, correlations=correlations)
    try:
        table = _read_table(source, name)
    except Exception as exc:
        raise ValueError(f"{name}: cannot parse XP_CONTINUOUS product: {exc}") from exc
    if "source_id" not in table.colnames:
        raise ValueError(f"{name}: no source_id column; not an XP_CONTINUOUS product")
    data = {"source_id": pl.Series(np.asarray(table["source_id"], dtype=np.int64))}
    n_corr = XP_N_COEFFICIENTS * (XP_N_COEFFICIENTS - 1) // 2
    for band in ("bp", "rp"):
        arrays = list(_XP_ARRAYS) + (["coefficient_correlations"] if correlations else [])
        for field in arrays:
            column = f"{band}_{field}"
            if column not in table.colnames:
                raise ValueError(f"{name}: column {column} missing")
            size = n_corr if field == "coefficient_correlations" else XP_N_COEFFICIENTS
            matrix = (
                np.stack([_vector(cell, size) for cell in table[column]])
                if len(table)
                else np.empty((0, size))
            )
            data[column] = pl.Series(matrix).cast(pl.Array(pl.Float64, size))
        for field, dtype in _XP_SCALARS.items():
            column = f"{band}_{field}"
            values = table[column] if column in table.colnames else np.ma.masked_all(len(table))
            series = _to_polars(_single(column, values))[column]
            data[column] = series.cast(dtype, strict=False)
    return pl.DataFrame(data)


def _single(name: str, values):
    from astropy.table import Table

    return Table({name: values})


def _csv_vectors(series: pl.Series, size: int) -> pl.Series:
    """Archive CSV array cells ``"(a, b, ...)"`` as Array(Float64, size), NaN for missing."""
    lists = (
        series.str.strip_chars("()[] ")
        .str.split(",")
        .list.eval(pl.element().str.strip_chars().cast(pl.Float64, strict=False))
    )
    if lists.null_count() == 0 and (lists.list.len() == size).all():
        return lists.list.eval(pl.element().fill_null(np.nan)).list.to_array(size)
    matrix = np.stack([_vector(cell, size) for cell in lists.to_list()]) if len(lists) else None
    matrix = matrix if matrix is not None else np.empty((0, size))
    return pl.Series(matrix).cast(pl.Array(pl.Float64, size))


def parse_xp_csv(blobs: Sequence[tuple[str, bytes]], *, correlations: bool = False) -> pl.DataFrame:
    """Parse many archive CSV XP_CONTINUOUS products at once (fast path of the DataLink reader).

    Parameters
    ----------
    blobs : sequence of (name, bytes)
        CSV product files with identical header lines (one per source, or one for many).
    correlations : bool, optional
        As in :func:`parse_xp_continuous`, whose output this matches.

    Returns
    -------
    polars.DataFrame
        Same columns and types as :func:`parse_xp_continuous`.
    """
    header, rows = None, []
    for name, data in blobs:
        head, _, body = data.decode("utf-8").partition("\n")
        if header is None:
            header = head.strip()
        elif head.strip() != header:
            raise ValueError(f"{name}: CSV header differs from the other XP products")
        rows.extend(line for line in body.splitlines() if line.strip())
    if header is None:
        return parse_xp_continuous(*_empty_product(), correlations=correlations)
    wanted = [
        name
        for name in header.split(",")
        if name == "source_id"
        or name[3:] in _XP_SCALARS
        or name[3:] in _XP_ARRAYS
        or (correlations and "correlations" in name)
    ]
    text = "\n".join([header, *rows])
    table = pl.read_csv(io.StringIO(text), infer_schema=False, columns=wanted or None)
    if "source_id" not in table.columns:
        raise ValueError(f"{blobs[0][0]}: no source_id column; not an XP_CONTINUOUS product")
    data = {"source_id": table["source_id"].cast(pl.Int64)}
    n_corr = XP_N_COEFFICIENTS * (XP_N_COEFFICIENTS - 1) // 2
    for band in ("bp", "rp"):
        arrays = list(_XP_ARRAYS) + (["coefficient_correlations"] if correlations else [])
        for field in arrays:
            column = f"{band}_{field}"
            if column not in table.columns:
                raise ValueError(f"{blobs[0][0]}: column {column} missing")
            size = n_corr if field == "coefficient_correlations" else XP_N_COEFFICIENTS
            data[column] = _csv_vectors(table[column], size).alias(column)
        for field, dtype in _XP_SCALARS.items():
            column = f"{band}_{field}"
            values = table[column] if column in table.columns else pl.Series([None] * len(table))
            series = values.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
            if dtype == pl.Float64:
                series = series.fill_null(np.nan)
            data[column] = series.cast(dtype, strict=False).alias(column)
    return pl.DataFrame(data)


def _parse_xp_zip(payload: bytes, what: str, correlations: bool) -> pl.DataFrame:
    try:
        bundle = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as exc:
        raise IncompleteDownload(f"{what}: DataLink answer is not a complete zip") from exc
    with bundle:
        blobs = [
            (member, bundle.read(member))
            for member in bundle.namelist()
            if Path(member).name.startswith("XP_CONTINUOUS")
        ]
    if not blobs or all(name.lower().endswith(".csv") for name, _ in blobs):
        return parse_xp_csv(blobs, correlations=correlations)
    frames = [
        parse_xp_continuous(io.BytesIO(data), name, correlations=correlations)
        for name, data in blobs
    ]
    return pl.concat(frames, how="vertical")


def _empty_product() -> tuple[io.BytesIO, str]:
    """An empty XP_CONTINUOUS table (for chunks where no star has XP spectra)."""
    names = ["source_id"] + [
        f"{b}_{f}"
        for b in ("bp", "rp")
        for f in (*_XP_ARRAYS, "coefficient_correlations", *_XP_SCALARS)
    ]
    return io.BytesIO((",".join(names) + "\n").encode()), "empty.csv"


def fetch_xp_continuous(
    source_ids: Sequence[int] | np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    datalink_url: str = GAIA_DATALINK_URL,
    chunk_size: int = 5000,
    progress: bool = True,
    data_format: str = "csv",
    data_structure: str = "INDIVIDUAL",
    release: str = "Gaia DR3",
    correlations: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 600,
) -> pl.DataFrame:
    """Fetch XP continuous mean-spectrum coefficients through the archive's DataLink service.

    Parameters
    ----------
    source_ids : array-like of int
        Gaia DR3 source ids (duplicates, 0 and negatives dropped).
    cache_dir : path-like
        Folder for the per-chunk Parquet cache.
    datalink_url : str, optional
        DataLink endpoint (``Gaia.load_data`` posts to the same URL with the same fields:
        ``ID``, ``RETRIEVAL_TYPE=XP_CONTINUOUS``, ``FORMAT``, ``DATA_STRUCTURE``, ``RELEASE``).
    chunk_size : int, optional
        Ids per request; the archive allows at most 5,000.
    data_format : {"csv", "fits", "votable", "ecsv"}, optional
        Product format requested; all are parsed to the same table. CSV (the default) is parsed
        for a whole chunk at once with polars (about 1 ms a star, against 3-12 ms for astropy
        reading single-row files) and is lossless (the archive prints round-trip decimals).
    data_structure : str, optional
        ``INDIVIDUAL`` (one file per source) or ``RAW`` (one file for all).
    correlations : bool, optional
        Keep the coefficient correlations too (large: 1,485 floats per band and star).
    retries, backoff, timeout : optional
        Retry policy and per-request time-out.

    Returns
    -------
    polars.DataFrame
        One row per source with XP spectra, sorted by ``source_id``; see
        :func:`parse_xp_continuous` for the columns. Ids without XP are simply absent.
    """
    if chunk_size > 5000:
        raise ValueError(f"chunk_size {chunk_size} exceeds the archive's DataLink limit of 5000")
    ids = clean_source_ids(source_ids)
    fields = {
        "RETRIEVAL_TYPE": "XP_CONTINUOUS",
        "FORMAT": data_format,
        "RELEASE": release,
        "DATA_STRUCTURE": data_structure,
        "VALID_DATA": "false",
        "USE_ZIP_ALWAYS": "true",
    }

    def fetch(chunk: np.ndarray) -> pl.DataFrame:
        body = http_post(datalink_url, {**fields, "ID": ",".join(map(str, chunk))}, timeout=timeout)
        return _parse_xp_zip(body, f"DataLink {datalink_url}", correlations)

    salt = f"{sorted(fields.items())}|{correlations}"
    frames = list(
        cached_chunks(
            ids,
            cache_dir,
            prefix="xp_continuous",
            chunk_size=chunk_size,
            fetch=fetch,
            salt=salt,
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
    )
    frame = merge_chunks(frames, ids, "drop", "xp_continuous")
    return frame
