"""APOGEE DR17 ``allStar-dr17-synspec_rev1.fits``: download and memory-mapped column reading.

The allStar file has one row per star and telescope combination (~733k rows, several GB). Only
the columns the pipeline needs are copied out of the memory-mapped table, a bounded block of
rows at a time, so the table is never loaded whole.

The download is verified against the SHA-1 that astroNN pins for this file
(:data:`ALLSTAR_SHA1`) when it comes from the SDSS URL, and its FITS structure is walked before
it is accepted (an HTML page served with HTTP 200, or a cut-off file, is never cached). A column
may have any type that converts to the data model's without loss (32- or 64-bit integers, either
byte order, any string width); only an unusable kind stops the read, naming the column.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from stardata.errors import IncompleteDownload, InputFileError
from stardata.sources.download import DownloadResult, download, verify_file

__all__ = [
    "ALLSTAR_COLUMNS",
    "ALLSTAR_DTYPES",
    "ALLSTAR_HDU",
    "ALLSTAR_SHA1",
    "ALLSTAR_URL",
    "PUBLISHED",
    "check_fits",
    "fetch_allstar",
    "iter_allstar",
    "read_allstar",
]

ALLSTAR_URL = (
    "https://data.sdss.org/sas/dr17/apogee/spectro/aspcap/dr17/synspec_rev1/"
    "allStar-dr17-synspec_rev1.fits"
)
"""Where SDSS serves the DR17 allStar file."""

ALLSTAR_SHA1 = "7aa2f381de0e8e246f9833cc7da540ef45096702"
"""SHA-1 of the DR17 allStar file, as pinned by astroNN (``astroNN.apogee.downloader.allstar``)."""

PUBLISHED = "published"
"""``sha1=PUBLISHED``: use :data:`ALLSTAR_SHA1` for the SDSS URL (no pin for other URLs)."""

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
    sha1: str | None = PUBLISHED,
    offline: bool = False,
    **download_kwargs,
) -> DownloadResult:
    """Download (or reuse) the allStar file in ``cache_dir``, verified.

    Parameters
    ----------
    cache_dir : path-like
        Folder that keeps the file between runs.
    url : str, optional
        Source URL (point it at a local mirror in tests).
    expected_size, sha256 : optional
        Checks the file must pass; a failing file is fetched again.
    sha1 : str or None, optional
        SHA-1 the file must have; :data:`PUBLISHED` (default) means :data:`ALLSTAR_SHA1` when
        ``url`` is the SDSS URL and ``sha256`` is not given, None means no SHA-1 check.
    offline : bool, optional
        Only check the cached file (raise :class:`InputFileError` naming it if missing or bad).
    **download_kwargs
        Passed to :func:`stardata.sources.download.download` (``retries``, ``timeout``,
        ``progress``...).

    Returns
    -------
    DownloadResult
        Path, URL, size and SHA-256 of the file.
    """
    if sha1 == PUBLISHED:
        sha1 = ALLSTAR_SHA1 if url == ALLSTAR_URL and not sha256 else None
    if not offline:
        return download(
            url,
            cache_dir,
            expected_size=expected_size,
            sha256=sha256,
            sha1=sha1,
            check=check_fits,
            **download_kwargs,
        )
    from urllib.parse import urlparse

    path = Path(cache_dir) / Path(urlparse(url).path).name
    if not path.exists():
        raise InputFileError(f"offline: allStar file {path} is not cached (from {url})")
    try:
        digest = verify_file(
            path, expected_size=expected_size, hashes={"sha256": sha256, "sha1": sha1},
            check=check_fits,
        )  # fmt: skip
    except IncompleteDownload as exc:
        raise InputFileError(str(exc)) from exc
    return DownloadResult(path=path, url=url, size=path.stat().st_size, sha256=digest)


def _header(handle, path: Path, index: int) -> tuple[dict[str, str], int]:
    """Keyword values of one FITS header and its length in bytes (whole 2,880-byte blocks)."""
    cards: dict[str, str] = {}
    length = 0
    while True:
        block = handle.read(2880)
        length += len(block)
        if len(block) < 2880:
            raise IncompleteDownload(f"{path}: cut short in the header of HDU {index}")
        for start in range(0, 2880, 80):
            card = block[start : start + 80].decode("ascii", errors="replace")
            key = card[:8].strip()
            if key == "END":
                return cards, length
            if card[8:10] == "= ":
                cards[key] = card[10:].split("/")[0].strip()


def check_fits(path: str | os.PathLike) -> None:
    """Walk a FITS file's headers: it must be FITS, hold a table HDU and not be cut short.

    Reads only the headers (a few blocks of a multi-GB file).

    Raises
    ------
    InputFileError
        Not a FITS file (e.g. an HTML error page), or no extension after the primary HDU.
    IncompleteDownload
        The file ends before the data its headers announce.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        start = handle.read(80)
        if not start.startswith(b"SIMPLE  ="):
            shown = " ".join(start[:60].decode("utf-8", errors="replace").split())
            raise InputFileError(f"{path}: not a FITS file (it starts with {shown!r})")
        handle.seek(0)
        offset, index = 0, 0
        while offset < size:
            cards, length = _header(handle, path, index)
            axes = [int(cards.get(f"NAXIS{k}", 0)) for k in range(1, int(cards["NAXIS"]) + 1)]
            count = int(np.prod(axes)) if axes else 0
            data = abs(int(cards["BITPIX"])) // 8 * int(cards.get("GCOUNT", 1))
            data *= count + int(cards.get("PCOUNT", 0))
            end = offset + length + data
            if end > size:
                raise IncompleteDownload(
                    f"{path}: cut short ({size} bytes; HDU {index} ends at byte {end})"
                )
            offset = offset + length + -(-data // 2880) * 2880
            handle.seek(offset)
            index += 1
    if index < 2:
        raise InputFileError(f"{path}: a FITS file without a table extension; not an allStar file")


def _table_hdu(hdul: fits.HDUList, path: Path) -> fits.BinTableHDU:
    if len(hdul) <= ALLSTAR_HDU or not isinstance(hdul[ALLSTAR_HDU], fits.BinTableHDU):
        raise InputFileError(
            f"{path}: HDU {ALLSTAR_HDU} is not a binary table; not an allStar file"
        )
    return hdul[ALLSTAR_HDU]


def _usable(got: np.dtype, want: str) -> np.dtype | None:
    """The dtype a column is read as (the model's, or wider if that is lossless); None: unusable."""
    if want == "U":
        return got if got.kind in "SU" else None
    want_dt = np.dtype(want)
    if got.kind not in "iuf" or (want_dt.kind in "iu" and got.kind == "f"):
        return None
    if np.can_cast(got, want_dt, casting="safe"):
        return want_dt
    out = np.result_type(got, want_dt)
    if want_dt.kind in "iu" and out.kind == "f":  # uint64 vs int64: values are checked on read
        return np.dtype(np.int64)
    return out.newbyteorder("=")


def _check_columns(hdu: fits.BinTableHDU, columns: Sequence[str], path: Path) -> dict:
    """The dtype to read each column as; raises :class:`InputFileError` naming a bad column."""
    present = set(hdu.columns.names)
    missing = [name for name in columns if name not in present]
    if missing:
        raise InputFileError(f"{path}: allStar column(s) missing: {', '.join(missing)}")
    types = {}
    for name in columns:
        got = hdu.columns[name].dtype
        want = ALLSTAR_DTYPES.get(name)
        out = got if want is None else _usable(got, want)
        if out is None:
            kind = {"U": "a string", "i": "an integer", "f": "a number"}[want[0]]
            raise InputFileError(
                f"{path}: allStar column {name} has type {got.name}; it must be {kind} type"
            )
        types[name] = out
    return types


def _native(values: np.ndarray, dtype: np.dtype, name: str, path: Path) -> np.ndarray:
    """A FITS field copied to a native-endian array of ``dtype``; strings decoded and stripped."""
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return np.char.strip(np.char.decode(values, "ascii")).astype(str)
    if values.dtype.kind == "U":
        return np.char.strip(values).astype(str)
    out = values.astype(np.dtype(dtype).newbyteorder("="), copy=True)
    if out.dtype.kind in "iu" and values.dtype != out.dtype and not np.array_equal(out, values):
        raise InputFileError(
            f"{path}: allStar column {name} has values that do not fit {out.dtype}"
        )
    return out


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
    InputFileError
        Naming the file and column when a column is missing or has an unusable type.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        hdu = _table_hdu(hdul, path)
        types = _check_columns(hdu, columns, path)
        selected = _row_range(hdu.header["NAXIS2"], rows)
        data = hdu.data
        for first in range(0, len(selected), chunk_rows):
            block = selected[first : first + chunk_rows]
            view = data[block.start : block.stop : block.step]
            yield {name: _native(view.field(name), types[name], name, path) for name in columns}
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
