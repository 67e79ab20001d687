"""File output with no half-written results and reproducible bytes.

* :func:`atomic_path` writes to a temporary sibling and renames it into place only on success.
* :class:`ParquetRowWriter` streams Arrow tables into a Parquet file with a fixed row-group
  size (independent of how the rows were chunked when computed) and fixed writer options, so the
  same rows give the same bytes with the same pyarrow version (Parquet stores no timestamps; the
  ``created_by`` string names the pyarrow version, which the manifest records).
* :func:`h5_file` opens an HDF5 file for deterministic writing (no object timestamps, fixed
  library format bounds); use :func:`h5_dataset` to create datasets in it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "CsvRowWriter",
    "LazyWriter",
    "ParquetRowWriter",
    "atomic_path",
    "content_digest",
    "file_digests",
    "finite_json",
    "h5_dataset",
    "h5_file",
    "read_json",
    "recover_folder",
    "remove_partials",
    "replace_folder",
    "sha256_file",
    "temp_sibling",
    "write_json",
    "write_parquet",
]

#: Writer options fixed once, so outputs do not depend on pyarrow's defaults changing.
PARQUET_OPTIONS = dict(
    version="2.6",
    compression="zstd",
    compression_level=3,
    use_dictionary=False,
    write_statistics=True,
    data_page_version="1.0",
    store_schema=True,
)
DEFAULT_ROW_GROUP = 65536


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {path}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def file_digests(path: str | os.PathLike, names=("sha256",), *, block: int = 1 << 22) -> dict:
    """Hex digests of a file's bytes in one read (``hashlib`` names, e.g. sha1, sha256)."""
    digests = {name: hashlib.new(name) for name in names}
    with open(path, "rb") as f:
        while chunk := f.read(block):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def sha256_file(path: str | os.PathLike, *, block: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    return file_digests(path, ("sha256",), block=block)["sha256"]


def content_digest(path: str | os.PathLike) -> tuple[int, str]:
    """``(size, sha256)`` of a file, or of a folder's files (hidden ones excepted).

    A folder's digest is the SHA-256 of its sorted ``relative/path<TAB>sha256`` lines, and its
    size the sum of its files' sizes, so any changed, added or removed file changes it.
    """
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_size, sha256_file(path)
    lines, size = [], 0
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            size += f.stat().st_size
            lines.append(f"{rel.as_posix()}\t{sha256_file(f)}\n")
    return size, hashlib.sha256("".join(lines).encode()).hexdigest()


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def finite_json(obj):
    """``obj`` with every non-finite float (NaN, ±inf; NumPy's too) replaced by None: what
    JSON can hold (``json.dumps(..., allow_nan=False)`` then never fails)."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float | np.floating) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    return obj


def write_json(path: str | os.PathLike, obj, *, sort_keys: bool = True) -> Path:
    """Write ``obj`` as indented JSON (stable bytes), atomically.

    Keys are sorted unless ``sort_keys=False`` (files meant to be read top-down keep the
    order of ``obj``). JSON has no NaN or infinity: a non-finite float is written as ``null``,
    so every file this writes is valid JSON for any reader.
    """
    text = json.dumps(
        finite_json(obj), indent=2, sort_keys=sort_keys, default=_json_default, allow_nan=False
    )
    text += "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file, naming the file in the error if it is missing or not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"missing {path.name} in {path.parent}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


class ParquetRowWriter:
    """Stream tables into one Parquet file with exactly ``row_group_size`` rows per group.

    Use as a context manager; the file appears at ``path`` only when the block exits cleanly.

    Parameters
    ----------
    path : path-like
    schema : pyarrow.Schema
        Every written table is cast to it (same column order); schema metadata is dropped.
    row_group_size : int
    metadata : dict, optional
        Key-value metadata of the file (e.g. :data:`stardata.outpaths.MARK`); nothing else of
        the tables' schema metadata is kept.
    """

    def __init__(
        self,
        path,
        schema: pa.Schema,
        *,
        row_group_size: int = DEFAULT_ROW_GROUP,
        metadata: dict | None = None,
    ):
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be positive, got {row_group_size}")
        self.path = Path(path)
        self.schema = schema.remove_metadata()
        if metadata:
            self.schema = self.schema.with_metadata(metadata)
        self.row_group_size = int(row_group_size)
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._ctx = None
        self._writer = None

    def __enter__(self) -> ParquetRowWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()  # an OSError here (no such folder) leaves nothing behind
        try:
            self._writer = pq.ParquetWriter(tmp, self.schema, **PARQUET_OPTIONS)
        except BaseException as exc:  # the temporary goes; the real error is raised
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def write(self, table: pa.Table) -> None:
        """Append rows (a table with the writer's column names)."""
        have = set(table.column_names)
        missing = [n for n in self.schema.names if n not in have]
        if missing:
            raise KeyError(f"{self.path.name}: missing column(s) {missing}")
        table = table.select(self.schema.names).cast(self.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.row_group_size:
            self._flush(self.row_group_size)

    def _flush(self, n: int) -> None:
        buf = pa.concat_tables(self._pending).combine_chunks()
        head, tail = buf.slice(0, n), buf.slice(n)
        self._writer.write_table(head, row_group_size=n)
        self.rows += head.num_rows
        self._pending = [tail] if tail.num_rows else []
        self._pending_rows = tail.num_rows

    def __exit__(self, exc_type, exc, tb) -> bool:
        def finish():
            try:
                if exc_type is None and self._pending_rows:
                    self._flush(self._pending_rows)
                if exc_type is None and self.rows == 0:
                    # an empty file still needs its schema
                    self._writer.write_table(self.schema.empty_table())
            finally:
                self._writer.close()

        return _close_then_rename(finish, self._ctx, exc_type, exc, tb)


class CsvRowWriter:
    """Stream tables into one CSV file (a header line, then the rows), written atomically.

    The CSV twin of :class:`ParquetRowWriter`: use as a context manager; the file appears at
    ``path`` only when the block exits cleanly. Columns must be flat (numbers, text, booleans).
    """

    def __init__(self, path, schema: pa.Schema):
        self.path, self.schema = Path(path), schema.remove_metadata()
        self.rows = 0
        self._ctx = None
        self._writer = None

    def __enter__(self) -> CsvRowWriter:
        import pyarrow.csv as pacsv

        nested = [f.name for f in self.schema if pa.types.is_nested(f.type)]
        if nested:
            raise ValueError(f"{self.path.name}: column {nested[0]!r} cannot be written as CSV")
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        try:
            self._writer = pacsv.CSVWriter(tmp, self.schema)
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def write(self, table: pa.Table) -> None:
        """Append rows (a table with the writer's column names)."""
        self._writer.write_table(table.select(self.schema.names).cast(self.schema))
        self.rows += table.num_rows

    def __exit__(self, exc_type, exc, tb) -> bool:
        return _close_then_rename(self._writer.close, self._ctx, exc_type, exc, tb)


def _close_then_rename(close, ctx, exc_type, exc, tb) -> bool:
    """Close a writer, then finish its :func:`atomic_path` (rename, or remove on an error).

    An error while closing (a full disk) counts as the block's error: nothing is renamed.
    """
    try:
        close()
    except BaseException as err:
        if exc_type is not None:  # the block's own error is the one to report
            return bool(ctx.__exit__(exc_type, exc, tb))
        ctx.__exit__(type(err), err, err.__traceback__)
        raise
    return bool(ctx.__exit__(exc_type, exc, tb))


class LazyWriter:
    """A table writer whose schema is that of the first table written.

    Use as a context manager; on an exception nothing is left at ``path``.

    Parameters
    ----------
    path : Path
    row_group_size : int
        Parquet row-group size.
    fmt : {"parquet", "csv"}
        The file format (:func:`stardata.outpaths.output_format` picks it from the name).
    metadata : dict, optional
        Parquet key-value metadata (CSV has none).
    """

    def __init__(self, path: Path, row_group_size: int, fmt: str = "parquet", metadata=None):
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"{Path(path).name}: cannot write format {fmt!r}")
        self.path, self.row_group_size = path, row_group_size
        self.fmt, self.metadata = fmt, metadata
        self._w: ParquetRowWriter | CsvRowWriter | None = None

    def __enter__(self) -> LazyWriter:
        return self

    def write(self, table: pa.Table) -> None:
        if self._w is None:
            if self.fmt == "csv":
                w = CsvRowWriter(self.path, table.schema)
            else:
                w = ParquetRowWriter(
                    self.path,
                    table.schema,
                    row_group_size=self.row_group_size,
                    metadata=self.metadata,
                )
            self._w = w.__enter__()  # kept only once it is open: __exit__ closes what opened
        self._w.write(table)

    @property
    def rows(self) -> int:
        return 0 if self._w is None else self._w.rows

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._w is not None:
            return self._w.__exit__(exc_type, exc, tb)
        if exc_type is None:
            raise ValueError(f"{Path(self.path).name}: no rows were written")
        return False


def write_parquet(path, table: pa.Table, *, row_group_size: int = DEFAULT_ROW_GROUP) -> Path:
    """Write one table deterministically (see :class:`ParquetRowWriter`)."""
    with ParquetRowWriter(path, table.schema, row_group_size=row_group_size) as w:
        w.write(table)
    return Path(path)


@contextlib.contextmanager
def h5_file(path: str | os.PathLike):
    """Open a new HDF5 file for deterministic writing; it appears at ``path`` only on success.

    The file uses fixed format bounds (``libver=("v110", "v110")``) and insertion-ordered
    attributes; create datasets with :func:`h5_dataset` (no object timestamps).
    """
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=("v110", "v110"), track_order=True) as f:
            yield f


def h5_dataset(group, name: str, shape, dtype, *, data=None, chunk_rows: int = 4096, **kwargs):
    """Create a gzip-compressed, row-chunked dataset with ``track_times=False``."""
    shape = tuple(int(s) for s in shape)
    chunks = None
    if shape and shape[0] > 0 and all(s > 0 for s in shape):
        chunks = (min(chunk_rows, shape[0]),) + shape[1:]
    opts = dict(compression="gzip", compression_opts=4, shuffle=True) if chunks else {}
    return group.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        data=data,
        chunks=chunks,
        track_times=False,
        **opts,
        **kwargs,
    )


# ---------------------------------------------------------------------------
# Folder swaps with no moment without a valid copy (one writer per folder: stardata.locks).

_PART = ".part-"


def remove_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files and folders that killed runs left in ``folder``.

    Only names this toolkit writes are touched: ``.NAME.part-PID`` (:func:`atomic_path`,
    :func:`replace_folder`). Call it while holding the folder's
    :class:`stardata.locks.FolderLock`, so no live writer's temporary is removed. Returns what
    was removed.
    """
    import shutil

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.glob(f".*{_PART}*")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        removed.append(p)
    return removed


def temp_sibling(path: str | os.PathLike) -> Path:
    """The temporary name :func:`atomic_path` and :func:`replace_folder` use beside ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}{_PART}{os.getpid()}")


def _old(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover_folder(final: str | os.PathLike) -> Path:
    """Finish or undo a :func:`replace_folder` that a kill interrupted.

    A kill between its two renames leaves no ``final`` but a complete ``.final.old``: that copy
    is moved back. A kill after both leaves a stale ``.final.old``: it is removed.
    """
    import shutil

    final = Path(final)
    old = _old(final)
    if old.is_dir() and not old.is_symlink():  # only ever a folder this module moved aside
        if final.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, final)
    return final


def replace_folder(new: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Rename the complete folder ``new`` to ``final``, replacing any folder there.

    Two renames (``final`` → ``.final.old``, ``new`` → ``final``); at every moment either
    ``final`` or ``.final.old`` is a complete copy, and :func:`recover_folder` (which this calls
    first) puts things right after a kill between them.
    """
    import shutil

    new, final = Path(new), Path(final)
    if final.exists() and not final.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file where a folder belongs", str(final))
    recover_folder(final)
    old = _old(final)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old)
    return final
