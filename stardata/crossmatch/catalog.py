"""Reading and checking a user's catalogue for :func:`stardata.crossmatch.crossmatch`.

Any table goes in (astropy, pandas, polars, Arrow, or a CSV/FITS/Parquet/VOTable path; the
toolkit's one reader, :mod:`stardata.tables`) and comes out as an Arrow table with the user's
columns untouched; :func:`positions` and
:func:`source_ids` pull the matching keys out of it, each bad value explained in one line.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stardata.errors import CatalogError
from stardata.tables import read_rows

__all__ = ["CatalogError", "epochs", "floats", "positions", "read_catalog", "source_ids"]


def read_catalog(catalog, owner: str = "catalogue") -> pa.Table:
    """The user's catalogue as an Arrow table, rows and columns as given.

    Parameters
    ----------
    catalog : astropy Table, pandas or polars DataFrame, pyarrow Table, mapping, or path-like
        A path is read by its extension: ``.csv``, ``.fits``, ``.parquet``, ``.xml``/``.vot``
        (VOTable); see :func:`stardata.tables.read_rows`.
    owner : str
        What the table is, as error messages name it (e.g. ``"reference"``).

    Raises
    ------
    CatalogError
        For a missing or unreadable file, an unknown format or an empty catalogue.
    """
    return read_rows(catalog, owner, CatalogError)


def _column(table: pa.Table, name: str, what: str, owner: str = "catalogue") -> pa.ChunkedArray:
    if name not in table.column_names:
        have = ", ".join(table.column_names[:12])
        raise CatalogError(f"{owner} has no {what} column {name!r} (columns: {have})")
    return table[name]


def floats(table: pa.Table, name: str, what: str, owner: str = "catalogue") -> np.ndarray:
    """A numeric column as float64 (nulls become NaN).

    Raises
    ------
    CatalogError
        The column is missing or not numeric (naming ``owner``, the column and ``what`` it is).
    """
    col = _column(table, name, what, owner)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise CatalogError(f"{owner} column {name!r} ({what}) is {col.type}, not numeric")
    return col.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN


def positions(
    table: pa.Table, ra: str, dec: str, owner: str = "catalogue"
) -> tuple[np.ndarray, np.ndarray]:
    """Right ascension and declination [deg] as float64; NaN where a row has none.

    Raises
    ------
    CatalogError
        A missing or non-numeric column, |dec| > 90, a right ascension outside -360..720 or an
        infinite value (naming ``owner``, the column and one row).
    """
    a = floats(table, ra, "right ascension", owner)
    d = floats(table, dec, "declination", owner)
    for name, v in ((ra, a), (dec, d)):
        bad = np.flatnonzero(np.isinf(v))
        if bad.size:
            raise CatalogError(f"{owner} column {name!r}: row {bad[0]} is infinite")
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero((a < -360) | (a > 720))
    if bad.size:
        raise CatalogError(
            f"{owner} column {ra!r}: row {bad[0]} has right ascension {a[bad[0]]:g}, not an "
            "angle in degrees"
        )
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(np.abs(d) > 90)
    if bad.size:
        raise CatalogError(
            f"{owner} column {dec!r}: row {bad[0]} has declination {d[bad[0]]} outside ±90 deg"
        )
    return np.mod(a, 360.0), d


def epochs(table: pa.Table, epoch, n: int) -> np.ndarray:
    """Per-row epochs [Julian years]: a number for all rows, or the name of a column."""
    if epoch is None:
        return np.full(n, 2016.0)
    if isinstance(epoch, str):
        e = floats(table, epoch, "epoch")
        bad = np.flatnonzero(~np.isfinite(e) | (e < 1000) | (e > 3000))
        if bad.size:
            raise CatalogError(
                f"catalogue column {epoch!r}: row {bad[0]} has epoch {e[bad[0]]}, expected a "
                "Julian year such as 2000.0"
            )
        return e
    value = float(epoch)
    if not 1000 <= value <= 3000:
        raise CatalogError(f"epoch {value} is not a Julian year such as 2000.0")
    return np.full(n, value)


def source_ids(table: pa.Table, name: str, owner: str = "catalogue") -> np.ndarray:
    """Gaia DR3 source ids as int64 (0 where a row has none).

    Raises
    ------
    CatalogError
        A missing, non-integer or negative column, or an id given on two rows (naming
        ``owner`` and the column).
    """
    col = _column(table, name, "source id", owner)
    if pa.types.is_floating(col.type):
        raise CatalogError(
            f"{owner} column {name!r} is {col.type}; Gaia source ids need an integer column "
            "(floats lose digits)"
        )
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            col = col.cast(pa.int64())
        except pa.ArrowInvalid:
            raise CatalogError(f"{owner} column {name!r} holds text that is not an id") from None
    if not pa.types.is_integer(col.type):
        raise CatalogError(f"{owner} column {name!r} is {col.type}, not an integer id")
    ids = col.fill_null(0).to_numpy().astype(np.int64)
    neg = np.flatnonzero(ids < 0)
    if neg.size:
        raise CatalogError(f"{owner} column {name!r}: row {neg[0]} has negative id {ids[neg[0]]}")
    given = ids[ids > 0]
    uniq, counts = np.unique(given, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise CatalogError(
            f"{owner} column {name!r}: {dup.size} id(s) appear on more than one row "
            f"(e.g. {dup[0]}); remove the duplicates"
        )
    return ids
