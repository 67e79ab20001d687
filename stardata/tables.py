"""Any table in, as Arrow: a file by its extension, or a table already in memory.

One reader for every place a user hands the toolkit rows: the crossmatch's catalogue and
reference, ``stardiff predict`` and ``stardiff sample --table``, a recipe's training table.
Files: ``.parquet``/``.pq``, ``.csv``, ``.fits``/``.fit``/``.fits.gz``, VOTable
``.xml``/``.vot``/``.votable``. In memory: an Arrow, polars, pandas or astropy table, or a
mapping of column → array. Columns and rows come out as given; masked FITS/VOTable values
become null (NaN in float columns).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from stardata.errors import TableError

__all__ = ["SUFFIXES", "from_astropy", "read_rows", "table_columns", "table_format"]

#: File name endings → format.
SUFFIXES = {
    ".csv": "csv",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xml": "votable",
    ".vot": "votable",
    ".votable": "votable",
}


def table_format(path: str | os.PathLike, owner: str = "table", error=TableError) -> str:
    """The format of a table file, from its name: ``"csv"``, ``"fits"``, ``"parquet"`` or
    ``"votable"``; ``error`` (one line naming the file) for any other name."""
    name = Path(path).name.lower()
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    raise error(f"{path}: unknown {owner} format (expected .csv, .fits, .parquet or .xml/.vot)")


def from_astropy(table, owner: str = "table", error=TableError) -> pa.Table:
    """An astropy table as Arrow: masked values become null (NaN for floats)."""
    arrays = {}
    for name in table.colnames:
        col = table[name]
        if getattr(col, "ndim", 1) > 1:
            raise error(f"{owner} column {name!r} is multidimensional; flatten it first")
        data = np.ma.getdata(col)
        mask = np.ma.getmaskarray(col)
        if data.dtype.kind == "S":
            data = np.char.decode(data, "utf-8")
        elif data.dtype.byteorder not in ("=", "|"):  # FITS is big-endian; Arrow is not
            data = data.astype(data.dtype.newbyteorder("="))
        if data.dtype.kind == "f":
            arrays[name] = pa.array(np.where(mask, np.nan, data))
        else:
            arrays[name] = pa.array(data.tolist() if data.dtype.kind == "U" else data, mask=mask)
    return pa.table(arrays)


def read_rows(source, owner: str = "table", error=TableError) -> pa.Table:
    """Rows of a table file or an in-memory table, as one Arrow table.

    Parameters
    ----------
    source : path-like, Arrow / polars / pandas / astropy table, or mapping
        A path is read by its extension (see :data:`SUFFIXES`).
    owner : str
        What the table is, as messages name it ("catalogue", "reference", ...).
    error : type of Exception
        Raised, with a one-line message naming the file or ``owner``, for a missing or
        unreadable file, an unknown format or type, or a table without rows.
    """
    if isinstance(source, str | os.PathLike):
        table = _read_file(Path(source), owner, error)
    elif isinstance(source, pa.Table):
        table = source
    elif hasattr(source, "to_arrow"):  # polars
        table = source.to_arrow()
    elif hasattr(source, "colnames"):  # astropy
        table = from_astropy(source, owner, error)
    elif hasattr(source, "iloc"):  # pandas
        table = pa.Table.from_pandas(source, preserve_index=False)
    elif isinstance(source, Mapping):
        table = pa.table({str(k): np.asarray(v) for k, v in source.items()})
    else:
        raise error(
            f"{owner} of type {type(source).__name__} not understood; give an astropy Table, "
            "a pandas/polars DataFrame, an Arrow table, a mapping or a file path"
        )
    if table.num_rows == 0:
        raise error(f"the {owner} has no rows")
    return table.combine_chunks()


def _read_file(path: Path, owner: str, error) -> pa.Table:
    if not path.is_file():
        raise error(f"{path}: no such {owner} file")
    kind = table_format(path, owner, error)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if kind == "csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        from astropy.table import Table

        return from_astropy(Table.read(path, format=kind), owner, error)
    except error:
        raise
    except Exception as exc:  # a parser's own message, on one line
        msg = " ".join(str(exc).split())[:200]
        raise error(f"{path}: cannot read as {kind}: {msg}") from None


def table_columns(path: str | os.PathLike, owner: str = "table", error=TableError) -> list[str]:
    """Column names of a table file, in file order (a Parquet file's schema only; other
    formats are read)."""
    path = Path(path)
    if table_format(path, owner, error) == "parquet" and path.is_file():
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise error(f"{path}: cannot read as parquet: {msg}") from None
    return list(read_rows(path, owner, error).column_names)
