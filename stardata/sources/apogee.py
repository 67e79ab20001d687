"""APOGEE DR17 ``allStar-dr17-synspec_rev1.fits``: download and memory-mapped column reading.

The allStar file has one row per star and telescope combination (~733k rows, several GB). Only
the columns the pipeline needs are copied out of the memory-mapped table, a bounded block of
rows at a time, so the table is never loaded whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from stardata.sources.download import DownloadResult, download

__all__ = [
    "ALLSTAR_COLUMNS",
    "ALLSTAR_DTYPES",
    "ALLSTAR_URL",
    "ALLSTAR_HDU",
    "fetch_allstar",
    "iter_allstar",
    "read_allstar",
]

ALLSTAR_URL = (
    "https://data.sdss.org/sas/dr17/apogee/spectro/aspcap/dr17/synspec_rev1/"
    "allStar-dr17-synspec_rev1.fits"
)
"""Where SDSS serves the DR17 allStar file."""

ALLSTAR_HDU = 1
"""The extension holding the star table (HDU0 is empty; HDU2/3 hold auxiliary tables)."""

#: Numpy types of the DR17 allStar columns the pipeline reads (from the DR17 data model:
#: coordinates double, photometry and ASPCAP labels float, STARFLAG/ASPCAPFLAG 64-bit,
#: EXTRATARG 32-bit, the Gaia EDR3 id 64-bit). ``U`` marks a FITS character column.
ALLSTAR_DTYPES: dict[str, str] = {
    "APOGEE_ID": "U",
    "TELESCOPE": "U",
    "FIELD": "U",
    "GAIAEDR3_SOURCE_ID": "i8",
    "RA": "f8",
    "DEC": "f8",
    "GLON": "f8",
    "GLAT": "f8",
    "SNR": "f4",
    "J": "f4",
    "J_ERR": "f4",
    "H": "f4",
    "H_ERR": "f4",
    "K": "f4",
    "K_ERR": "f4",
    "STARFLAG": "i8",
    "ASPCAPFLAG": "i8",
    "EXTRATARG": "i4",
    "TEFF": "f4",
    "TEFF_ERR": "f4",
    "LOGG": "f4",
    "LOGG_ERR": "f4",
    "M_H": "f4",
    "M_H_ERR": "f4",
}

ALLSTAR_COLUMNS: tuple[str, ...] = tuple(ALLSTAR_DTYPES)
"""The allStar columns the pipeline needs."""

_DEFAULT_CHUNK_ROWS = 65_536


def fetch_allstar(
    cache_dir: str | os.PathLike,
    *,
    url: str = ALLSTAR_URL,
    expected_size: int | None = None,
    sha256: str | None = None,
    **download_kwargs,
) -> DownloadResult:
    """Download (or reuse) the allStar file in ``cache_dir``.

    Parameters
    ----------
    cache_dir : path-like
        Folder that keeps the file between runs.
    url : str, optional
        Source URL (point it at a local mirror in tests).
    expected_size, sha256 : optional
        Checks the file must pass; a failing file is fetched again.
    **download_kwargs
        Passed to :func:`stardata.sources.http.download` (``retries``, ``timeout``,
        ``progress``...).

    Returns
    -------
    DownloadResult
        Path, URL, size and SHA-256 of the file.
    """
    return download(url, cache_dir, expected_size=expected_size, sha256=sha256, **download_kwargs)


def _table_hdu(hdul: fits.HDUList, path: Path) -> fits.BinTableHDU:
    if len(hdul) <= ALLSTAR_HDU or not isinstance(hdul[ALLSTAR_HDU], fits.BinTableHDU):
        raise ValueError(f"{path}: HDU {ALLSTAR_HDU} is not a binary table; not an allStar file")
    return hdul[ALLSTAR_HDU]


def _check_columns(hdu: fits.BinTableHDU, columns: Sequence[str], path: Path) -> None:
    present = set(hdu.columns.names)
    missing = [name for name in columns if name not in present]
    if missing:
        raise KeyError(f"{path}: allStar column(s) missing: {', '.join(missing)}")
    for name in columns:
        want = ALLSTAR_DTYPES.get(name)
        if want is None:
            continue
        got = hdu.columns[name].dtype
        if want == "U":
            ok = got.kind in "SU"
        else:
            ok = got.kind == np.dtype(want).kind and got.itemsize == np.dtype(want).itemsize
        if not ok:
            raise TypeError(f"{path}: allStar column {name} has type {got}, expected {want}")


def _native(values: np.ndarray) -> np.ndarray:
    """Copy a FITS field into a plain native-endian array; strings decoded and stripped."""
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return np.char.strip(np.char.decode(values, "ascii")).astype(str)
    if values.dtype.kind == "U":
        return np.char.strip(values).astype(str)
    return values.astype(values.dtype.newbyteorder("="), copy=True)


def _row_range(n_rows: int, rows: slice | None) -> range:
    if rows is None:
        return range(n_rows)
    if not isinstance(rows, slice):
        raise TypeError(f"rows must be a slice or None, not {type(rows).__name__}")
    if rows.step is not None and rows.step < 1:
        raise ValueError(f"rows must have a positive step, got {rows.step}")
    return range(n_rows)[rows]


def iter_allstar(
    path: str | os.PathLike,
    columns: Sequence[str] = ALLSTAR_COLUMNS,
    chunk_rows: int = _DEFAULT_CHUNK_ROWS,
    *,
    rows: slice | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the requested columns of an allStar file in blocks of ``chunk_rows`` rows.

    Parameters
    ----------
    path : path-like
        An allStar FITS file.
    columns : sequence of str, optional
        Column names (upper case, as in the file).
    chunk_rows : int, optional
        Rows per block; memory use is about ``chunk_rows`` times the row size of the *selected*
        columns plus the pages the OS maps in.
    rows : slice, optional
        Restrict to these rows (step 1 or more).

    Yields
    ------
    dict of str to numpy.ndarray
        Native-endian copies; strings decoded and stripped.

    Raises
    ------
    KeyError, TypeError, ValueError
        Naming the file and column when a column is missing or has an unexpected type.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        hdu = _table_hdu(hdul, path)
        _check_columns(hdu, columns, path)
        selected = _row_range(hdu.header["NAXIS2"], rows)
        data = hdu.data
        for first in range(0, len(selected), chunk_rows):
            block = selected[first : first + chunk_rows]
            view = data[block.start : block.stop : block.step]
            yield {name: _native(view.field(name)) for name in columns}
            del view
        del data


def read_allstar(
    path: str | os.PathLike,
    columns: Sequence[str] = ALLSTAR_COLUMNS,
    *,
    rows: slice | None = None,
    chunk_rows: int = _DEFAULT_CHUNK_ROWS,
) -> dict[str, np.ndarray]:
    """Read selected allStar columns through a memory map.

    Parameters
    ----------
    path : path-like
        An allStar FITS file.
    columns : sequence of str, optional
        Column names; defaults to :data:`ALLSTAR_COLUMNS`.
    rows : slice, optional
        Only these rows.
    chunk_rows : int, optional
        Rows copied per step (bounds the transient memory).

    Returns
    -------
    dict of str to numpy.ndarray
        One native-endian array per column, in file row order.
    """
    parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    for block in iter_allstar(path, columns, chunk_rows, rows=rows):
        for name, values in block.items():
            parts[name].append(values)
    out = {}
    for name, blocks in parts.items():
        if blocks:
            out[name] = np.concatenate(blocks)
        else:  # no rows selected
            kind = ALLSTAR_DTYPES.get(name, "f8")
            out[name] = np.empty(0, dtype=str if kind == "U" else kind)
    return out
