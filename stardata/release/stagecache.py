"""The stage cache of a release build: stage keys, verified block parts, and block I/O.

Every stage file has one row per deduplicated allStar row, in allStar order, in row groups of
``Settings.chunk_rows`` rows, so stage ``k``-th row groups line up and later stages stream one
block at a time (bounded memory). :func:`chunked_stage` caches each finished block under
``<stage>.parts/`` with its SHA-256, so an interrupted stage resumes where it stopped and a
damaged part is recomputed; records and their checks are in :mod:`stardata.release.context`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardata.errors import BuildError
from stardata.io import ParquetRowWriter, atomic_path, sha256_file, write_parquet
from stardata.release.context import Context

__all__ = [
    "chunked_stage",
    "parquet_file",
    "n_groups",
    "read_group",
    "stage_key",
    "to_numpy",
    "to_table",
]


def stage_key(*parts) -> str:
    """Hex digest of JSON-serializable parts (a stage's inputs and settings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parquet_file(path: Path) -> pq.ParquetFile:
    """Open a stage (or part) file, naming it if it is not a readable Parquet file."""
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BuildError(f"{path}: not a readable Parquet file ({exc})") from None


def n_groups(path: Path) -> int:
    """Number of row groups (blocks) of a stage file."""
    return parquet_file(path).metadata.num_row_groups


def read_group(path: Path, k: int, columns=None) -> dict[str, np.ndarray]:
    """Row group ``k`` of a stage file as NumPy arrays (fixed-size lists → 2-D arrays)."""
    try:
        group = parquet_file(path).read_row_group(k, columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BuildError(f"{path}: cannot read row group {k} ({exc})") from None
    return to_numpy(group)


def to_numpy(table: pa.Table | pa.RecordBatch) -> dict[str, np.ndarray]:
    """Columns as NumPy arrays: fixed-size lists → 2-D arrays, strings → object arrays."""
    out = {}
    for name in table.column_names:
        col = table[name]
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = np.asarray(col.to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def to_table(cols: dict) -> pa.Table:
    """Arrow table from NumPy columns; 2-D float arrays become fixed-size lists, None null."""
    arrays = {}
    for name, v in cols.items():
        v = np.asarray(v)
        if v.ndim == 2:
            flat = pa.array(np.ascontiguousarray(v, dtype=np.float64).ravel())
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, v.shape[1])
        elif v.dtype.kind == "O":  # strings, None → null
            arrays[name] = pa.array([None if x is None else str(x) for x in v], type=pa.string())
        elif v.dtype.kind in "US":
            arrays[name] = pa.array(v.astype(str).tolist(), type=pa.string())
        else:
            arrays[name] = pa.array(v)
    return pa.table(arrays)


def chunked_stage(ctx: Context, name: str, key: str, n: int, make: Callable[[int], dict]) -> int:
    """Run ``make(k)`` for blocks ``0..n-1`` and merge them into the stage file.

    Each finished block is kept under ``<stage>.parts/`` with its SHA-256 until the merge, so
    an interrupted stage resumes from its finished blocks; a part that no longer matches its
    hash is recomputed. Returns the number of rows written (the caller writes the record).
    """
    if n == 0:
        raise BuildError(f"stage {name}: no allStar rows to process")
    parts = ctx.stage_dir / f"{name}.parts"
    keyfile = parts / "KEY"
    if parts.exists() and (not keyfile.exists() or keyfile.read_text() != key):
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    with atomic_path(keyfile) as tmp:
        tmp.write_text(key)
    for k in ctx.bar(range(n), desc=name):
        part = parts / f"{k:06d}.parquet"
        if not _part_intact(part):
            table = to_table(make(k))
            write_parquet(part, table, row_group_size=max(1, table.num_rows))
            with atomic_path(_part_hash(part)) as tmp:
                tmp.write_text(sha256_file(part))
    schema = parquet_file(parts / f"{0:06d}.parquet").schema_arrow
    with ParquetRowWriter(ctx.path(name), schema, row_group_size=ctx.s.chunk_rows) as w:
        for k in range(n):
            part = parts / f"{k:06d}.parquet"
            w.write(parquet_file(part).read())
    shutil.rmtree(parts)
    return w.rows


def _part_hash(part: Path) -> Path:
    return part.with_name(part.name + ".sha256")


def _part_intact(part: Path) -> bool:
    """Whether a cached block exists and still has the SHA-256 written beside it."""
    sidecar = _part_hash(part)
    if not part.exists() or not sidecar.exists():
        return False
    return sidecar.read_text().strip() == sha256_file(part)
