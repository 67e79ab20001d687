"""Tables in: a file as a float matrix, and the fixed train/validation/test split.

:func:`read_table` loads a Parquet, CSV, FITS or VOTable file (through
:func:`stardata.tables.read_rows`) or a ``stardata`` ``tokens.h5`` file as a float matrix
(NaN = missing). :func:`split_rows` makes the fixed, seeded split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stardata.tables import read_rows
from stardata.tables import table_columns as stardata_table_columns
from stardiff.errors import InputTypeError, warn_infinite

__all__ = ["Table", "read_table", "read_errors", "table_columns", "split_rows"]


@dataclass
class Table:
    """Column names, an (N, V) float64 matrix with NaN for missing, optional split labels."""

    names: list[str]
    values: np.ndarray
    split: np.ndarray | None = None
    ignored: dict[str, str] = field(default_factory=dict)  # column → why it is not used


def read_table(path: str | Path, columns: list[str] | None = None, split_column: str = ""):
    """Read a table file (Parquet, CSV, FITS, VOTable, or ``stardata``'s ``tokens.h5``).

    Files other than ``tokens.h5`` are read by the toolkit's one reader,
    :func:`stardata.tables.read_rows`.

    Parameters
    ----------
    path : str or Path
        The file.
    columns : list of str, optional
        Columns to keep, in this order; default every numeric column. A text column whose
        cells are all numbers counts as numeric; one that mixes numbers with other cells
        (``?``, ``n/a``) is an error naming the column, a bad cell and its row, never
        dropped; a column of text only, or of integers beyond 2**53 (identifiers), is ignored
        and listed in ``Table.ignored`` (named in ``columns``: an error naming it). An
        infinite cell is missing, with a warning naming its column and first row.
    split_column : str
        Name of a column of ``train``/``validation``/``test`` labels to return as ``split``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path, columns, split_column)
    import pyarrow as pa
    import pyarrow.compute as pc

    tbl = read_rows(path)
    for c in columns or []:
        if c not in tbl.column_names:
            raise KeyError(
                f"{path.name}: no column {c!r}; columns are: {', '.join(tbl.column_names)}"
            )
    numeric, ignored = {}, {}
    for name in columns or [c for c in tbl.column_names if c != split_column]:
        x, why = _numeric_column(path.name, name, tbl[name])
        if x is None and columns:
            raise InputTypeError(f"{path.name}: column {name!r} is {why}")
        if x is None:
            ignored[name] = why
        else:
            warn_infinite(x, name, path.name)  # missing, said once with its first row
            numeric[name] = np.where(np.isinf(x), np.nan, x)
    names = list(numeric)
    if not names:
        raise ValueError(f"{path.name}: no numeric column ({', '.join(tbl.column_names)})")
    values = np.column_stack([numeric[c] for c in names]).astype(np.float64)
    split = None
    if split_column:
        if split_column not in tbl.column_names:
            raise KeyError(f"{path.name}: no split column {split_column!r}")
        split = np.asarray(pc.cast(tbl[split_column], pa.string()).to_pylist(), dtype=object)
    return Table(names, values, split, ignored)


def table_columns(path: str | Path) -> list[str]:
    """Every column name of a table file (as :func:`read_table` reads), in file order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table file not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if "vocabulary" not in f:
                raise ValueError(f"{path.name}: not a stardata tokens file (no 'vocabulary')")
            return [v.decode() if isinstance(v, bytes) else str(v) for v in f["vocabulary"][()]]
    return stardata_table_columns(path)


def _to_float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _numeric_column(file: str, name: str, col) -> tuple[np.ndarray | None, str]:
    """A column as float64 (NaN = missing), or ``(None, why it is not numeric)``.

    Text cells that all read as numbers make a numeric column; text that mixes numbers with
    other cells is a one-line error naming a bad cell and its row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_integer(t):
        return _integer_column(file, name, col)
    if pa.types.is_floating(t):
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), ""
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None, f"not numeric ({t})"
    enc = pc.dictionary_encode(col).combine_chunks()
    words = enc.dictionary.to_pylist()
    nums = [_to_float(w) if w.strip() else np.nan for w in words]
    bad = [w for w, v in zip(words, nums, strict=True) if v is None]
    if len(bad) == len(words):
        return None, "not numeric (text)"
    idx = enc.indices.to_numpy(zero_copy_only=False)
    if bad:
        codes = {i for i, v in enumerate(nums) if v is None}
        rows = np.flatnonzero(np.isin(idx, list(codes)) & ~np.asarray(enc.is_null()))
        raise ValueError(
            f"{file}: column {name!r} mixes numbers with non-numeric cells "
            f"({words[idx[rows[0]]]!r} in row {rows[0]}, {rows.size} cell(s) in all); "
            "fix or blank them"
        )
    lookup = np.array([np.nan if v is None else v for v in nums], dtype=np.float64)
    out = lookup[np.where(np.asarray(enc.is_null()), 0, idx)]
    out[np.asarray(enc.is_null())] = np.nan
    return out, ""


#: The largest integer a float64 holds exactly: larger ones (identifiers such as Gaia's
#: ``source_id``) are not quantities a model can learn.
EXACT_INT = 2**53


def _integer_column(file: str, name: str, col) -> tuple[np.ndarray | None, str]:
    """An integer column as float64, or ``(None, why)`` if it holds integers beyond 2**53."""
    x = col.to_numpy(zero_copy_only=False)  # nulls: float NaN
    with np.errstate(invalid="ignore"):
        big = np.flatnonzero(np.abs(x.astype(np.float64)) >= EXACT_INT)
    if big.size:
        return None, (
            f"not a quantity (integers beyond 2**53 such as {int(x[big[0]])} in row {big[0]}: "
            "an identifier?)"
        )
    return x.astype(np.float64), ""


def _read_h5(path: Path, columns, split_column):
    from stardata.tokens import read_tokens_h5

    tokens, values, _, vocab, extra = read_tokens_h5(
        path, extra=[split_column] if split_column else []
    )
    values = values.astype(np.float64)
    values[tokens == 0] = np.nan
    names = list(columns) if columns else list(vocab.names)
    missing = [c for c in names if c not in vocab]
    if missing:
        raise KeyError(
            f"{path.name}: no column {missing[0]!r}; vocabulary: {', '.join(vocab.names)}"
        )
    idx = vocab.ids(names) - 1
    return Table(names, values[:, idx], extra.get(split_column) if split_column else None)


def read_errors(path: str | Path, names: list[str], template: str):
    """The measurement errors of columns ``names``: ``(sigmas (N, V), {column: error column})``.

    Each column's error column is ``template.format(column)`` (``data.errors``); columns
    without one have NaN errors. ``stardata``'s ``tokens.h5`` holds every column's error
    beside its value, read for every column whatever the template.
    """
    from stardiff.uncertainty import error_columns

    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        from stardata.tokens import read_tokens_h5

        tokens, _, errors, vocab, _ = read_tokens_h5(path, extra=[])
        errors = np.where(tokens > 0, errors.astype(np.float64), np.nan)
        idx = vocab.ids(names) - 1
        return errors[:, idx], {c: template.format(c) for c in names}
    cols = error_columns(template, names, table_columns(path))
    sig = np.full((0, len(names)), np.nan)
    if cols:
        t = read_table(path, list(cols.values()))
        sig = np.full((len(t.values), len(names)), np.nan)
        for j, c in enumerate(names):
            if c in cols:
                sig[:, j] = t.values[:, t.names.index(cols[c])]
    return sig, cols


def split_rows(
    n: int,
    *,
    test_rows: int = 0,
    validation_fraction: float = 0.1,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed train/validation/test row indices (each sorted).

    With ``labels`` (a split column), rows labelled ``train``/``validation``/``test`` are
    used as given. Otherwise ``perm = default_rng(seed).permutation(n)``; test is
    ``perm[:test_rows]`` and validation the next ``validation_fraction`` of the rest.
    """
    if labels is not None:
        labels = np.asarray(labels).astype(str)
        unknown = sorted(set(labels) - {"train", "validation", "test"})
        if unknown:
            raise ValueError(f"split column has unknown label(s) {unknown[:5]}")
        return tuple(np.flatnonzero(labels == s) for s in ("train", "validation", "test"))
    if not 0 <= test_rows < n:
        raise ValueError(f"data.test_rows must be in 0..{n - 1} for a table of {n} rows")
    perm = np.random.default_rng(seed).permutation(n)
    rest = perm[test_rows:]
    n_val = int(round(validation_fraction * rest.size))
    parts = perm[:test_rows], rest[:n_val], rest[n_val:]
    return np.sort(parts[2]), np.sort(parts[1]), np.sort(parts[0])
