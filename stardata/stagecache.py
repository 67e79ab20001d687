"""The stage cache of a release build: where stages live, their records, and block I/O.

Every stage file has one row per deduplicated allStar row, in allStar order, in row groups of
``Settings.chunk_rows`` rows, so stage ``k``-th row groups line up and later stages stream one
block at a time (bounded memory). :func:`chunked_stage` caches each finished block under
``<stage>.parts/``, so an interrupted stage resumes where it stopped; a stage's JSON record holds
the key of its inputs and settings, so a rerun skips every stage whose key matches.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardata.io import ParquetRowWriter, read_json, sha256_file, write_json, write_parquet

__all__ = [
    "Context",
    "chunked_stage",
    "n_groups",
    "read_group",
    "stage_key",
    "to_numpy",
    "to_table",
]


@dataclass
class Context:
    """Everything a stage needs: where, which settings, which sources, and what happened."""

    release: str
    data_dir: Path
    s: object
    src: object
    offline: bool = False
    progress: bool = True
    inputs: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def stage_dir(self) -> Path:
        return self.data_dir / "stages" / self.release

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw" / self.release

    def cache_dir(self, name: str) -> Path:
        return self.data_dir / "cache" / self.release / name

    def remote(self) -> dict:
        """The retry policy every remote call of the build uses (from the settings)."""
        return {"retries": self.s.retries, "backoff": self.s.backoff, "timeout": self.s.timeout}

    def path(self, name: str) -> Path:
        return self.stage_dir / f"{name}.parquet"

    def done(self, name: str, key: str) -> dict | None:
        """The stage's record if its output exists and was made from the same inputs."""
        rec_path = self.stage_dir / f"{name}.json"
        if not rec_path.exists() or not self.path(name).exists():
            return None
        rec = read_json(rec_path)
        if rec.get("key") != key or rec.get("size") != self.path(name).stat().st_size:
            return None
        return rec

    def record(self, name: str, key: str, **info) -> dict:
        """Write the stage's record (key, size, SHA-256 and ``info``) and return it."""
        p = self.path(name)
        rec = {"key": key, "size": p.stat().st_size, "sha256": sha256_file(p), **info}
        write_json(self.stage_dir / f"{name}.json", rec)
        return rec

    def bar(self, iterable, desc: str, total: int | None = None):
        """``iterable`` with a progress bar (unless ``progress`` is off)."""
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=not self.progress, unit="block")


def stage_key(*parts) -> str:
    """Hex digest of JSON-serializable parts (a stage's inputs and settings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def n_groups(path: Path) -> int:
    """Number of row groups (blocks) of a stage file."""
    return pq.ParquetFile(path).metadata.num_row_groups


def read_group(path: Path, k: int, columns=None) -> dict[str, np.ndarray]:
    """Row group ``k`` of a stage file as NumPy arrays (fixed-size lists → 2-D arrays)."""
    return to_numpy(pq.ParquetFile(path).read_row_group(k, columns=columns))


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


def chunked_stage(ctx: Context, name: str, key: str, n: int, make: Callable[[int], dict], **info):
    """Run ``make(k)`` for blocks ``0..n-1`` (cached as parts), then merge into the stage file."""
    rec = ctx.done(name, key)
    if rec is not None:
        return rec
    if n == 0:
        from stardata.release import BuildError

        raise BuildError(f"stage {name}: no allStar rows to process")
    parts = ctx.stage_dir / f"{name}.parts"
    keyfile = parts / "KEY"
    if parts.exists() and (not keyfile.exists() or keyfile.read_text() != key):
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    keyfile.write_text(key)
    for k in ctx.bar(range(n), desc=name):
        part = parts / f"{k:06d}.parquet"
        if not part.exists():
            table = to_table(make(k))
            write_parquet(part, table, row_group_size=max(1, table.num_rows))
    schema = pq.read_schema(parts / f"{0:06d}.parquet")
    with ParquetRowWriter(ctx.path(name), schema, row_group_size=ctx.s.chunk_rows) as w:
        for k in range(n):
            w.write(pq.read_table(parts / f"{k:06d}.parquet"))
    rec = ctx.record(name, key, rows=w.rows, **info)
    shutil.rmtree(parts)
    return rec
