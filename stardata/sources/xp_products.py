"""Parsers of the Gaia archive's XP_CONTINUOUS DataLink products (any format, any structure).

:func:`parse_xp_continuous` reads one product file (FITS, VOTable, ECSV or CSV) with astropy;
:func:`parse_xp_csv` reads many CSV products at once with polars (the fast path);
:func:`parse_xp_zip` reads a whole DataLink answer, telling an error page from a cut-off zip.
Both give the same table: ``source_id`` and, per band, the coefficients and their errors as
``Array(Float64, 55)`` (NaN where absent), ``n_parameters``, ``n_relevant_bases`` and
``standard_deviation``.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from stardata.errors import ArchiveError, IncompleteDownload
from stardata.sources.http import is_permanent_message, service_message
from stardata.sources.tap import to_polars

__all__ = ["XP_N_COEFFICIENTS", "parse_xp_continuous", "parse_xp_csv", "parse_xp_zip"]

XP_N_COEFFICIENTS = 55
_PRODUCT_EXT = (".csv", ".ecsv", ".fits", ".xml", ".vot", ".votable")
_XP_ARRAYS = ("coefficients", "coefficient_errors")
_XP_SCALARS = {
    "n_parameters": pl.Int16,
    "n_relevant_bases": pl.Int16,
    "standard_deviation": pl.Float64,
}


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
            series = to_polars(_single(column, values))[column]
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


def parse_xp_zip(payload: bytes, what: str, correlations: bool = False) -> pl.DataFrame:
    """Parse a DataLink answer: the XP_CONTINUOUS members of its zip (other products ignored).

    Raises
    ------
    ArchiveError
        The answer is an error page stating a problem with the request (not retried).
    IncompleteDownload
        Empty, a cut-off zip, or another error page (e.g. maintenance): worth retrying.
    """
    if not payload:
        raise IncompleteDownload(f"{what}: empty answer")
    if not payload.startswith(b"PK"):  # an error page (some services send it with HTTP 200)
        message = f"{what} answered an error page, not a zip: {service_message(payload)}"
        if is_permanent_message(message):  # the request itself is wrong: never retried
            raise ArchiveError(message)
        raise IncompleteDownload(message)  # e.g. a maintenance page: retried
    try:
        bundle = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as exc:
        raise IncompleteDownload(f"{what}: DataLink answer is not a complete zip") from exc
    with bundle:
        names = [m for m in bundle.namelist() if m.lower().endswith(_PRODUCT_EXT)]
        xp = [m for m in names if Path(m).name.startswith("XP_CONTINUOUS")]
        blobs = [(member, bundle.read(member)) for member in (xp or names)]
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
