"""Streaming, resumable ``predict`` of a table file (see :func:`stardiff.predict.predict`).

Work folder ``.OUT.predict/`` beside the output: ``state.json`` (what the run computes: input
file size and time, row count, model weights' hash, every option) and one Parquet part per
finished window, each written atomically. A rerun with the same state skips the parts that
exist; any other state starts over. When every window is done the parts are concatenated into
``OUT`` through a temporary sibling and one rename, and the work folder is removed. A kill at any
moment thus leaves either complete parts (resumed) or a complete ``OUT``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardata.tables import read_rows, table_format
from stardiff.errors import PredictError
from stardiff.predict.windows import (
    check_numeric,
    check_output,
    error_inputs,
    plan,
    table_writer,
    window,
    windows,
)

__all__ = ["STATE", "predict_file"]

STATE = "state.json"


def _part(work: Path, k: int) -> Path:
    return work / f"part-{k:06d}.parquet"


def _state(model, path: Path, n_rows: int, request, keep, chunk_rows, opts) -> dict:
    from stardata.io import sha256_file

    st = path.stat()
    weights = None
    if model.folder is not None and (model.folder / "model.safetensors").exists():
        weights = sha256_file(model.folder / "model.safetensors")
    return {
        "input": {
            "path": str(path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "rows": n_rows,
        },
        "model": {"folder": str(model.folder), "weights_sha256": weights},
        "request": request,
        "keep": keep,
        "chunk_rows": chunk_rows,
        "options": {**opts, "quantiles": [float(q) for q in opts["quantiles"]]},
    }


def _open(path: Path) -> tuple[pq.ParquetFile | pa.Table, pa.Schema, int]:
    """(source of windows, schema, rows) of a table file: a Parquet file is read one row group
    at a time; CSV, FITS and VOTable are read whole by the toolkit's one reader."""
    if not path.is_file():
        raise PredictError(f"{path}: no such table")
    if table_format(path, "table", PredictError) != "parquet":
        table = read_rows(path, "table", PredictError)
        return table, table.schema, table.num_rows
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise PredictError(f"{path}: not a Parquet file ({' '.join(str(exc).split())})") from None
    return pf, pf.schema_arrow, pf.metadata.num_rows


def predict_file(model, path: Path, request, out: Path, keep, chunk_rows: int, opts, progress):
    """Stream ``path`` through :func:`stardiff.predict.windows.window` into ``out``; resumable."""
    from stardata.errors import LockedError
    from stardata.io import read_json, write_json, write_parquet
    from stardata.locks import FolderLock

    source, schema, n_rows = _open(path)
    given, keep = plan(model, schema.names, request, keep, str(path), opts["requested_as_inputs"])
    opts = opts | {"errors": error_inputs(model, schema.names, given)}
    errs = list(opts["errors"].values())
    check_numeric(schema, given + errs, str(path))
    fmt = check_output(out, [path], keep, request, opts)
    if n_rows == 0:
        raise PredictError(f"{path}: table has no rows")
    n_windows = -(-n_rows // chunk_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.with_name(f".{out.name}.predict")
    _check_work(work)
    try:
        lock = FolderLock(work, "stardiff predict").acquire()
    except LockedError as exc:
        raise PredictError(str(exc)) from None
    try:
        for stale in out.parent.glob(f".{out.name}.part-*"):  # a killed final write
            stale.unlink()
        state = _state(model, path, n_rows, request, keep, chunk_rows, opts)
        state_file = work / STATE
        if not state_file.exists() or read_json(state_file) != _jsonable(state):
            for old in work.glob("part-*.parquet"):
                old.unlink()
            write_json(state_file, state)
        done = 0
        while done < n_windows and _part(work, done).exists():
            done += 1
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = n_rows
            start = min(done * chunk_rows, total)
            bar = tqdm(total=total, initial=start, desc="predict", unit="row")
        try:
            for k, block in windows(source, given + keep + errs, chunk_rows, done):
                result = window(model, block, given, keep, request, k, opts)
                write_parquet(_part(work, k), result, row_group_size=max(1, result.num_rows))
                if bar is not None:
                    bar.update(block.num_rows)
        finally:
            if bar is not None:
                bar.close()
        _concatenate(work, n_windows, out, fmt, chunk_rows)
    finally:
        lock.release()
    shutil.rmtree(work, ignore_errors=True)
    return out


def _check_work(work: Path) -> None:
    """The work folder holds only a run's own files (it is removed at the end), or is refused."""
    from stardata.outpaths import check_folder

    own = lambda p: p.name == STATE or p.name.startswith("part-")  # noqa: E731
    check_folder(work, own_entry=own, what="stardiff predict", option="work folder")


def _concatenate(work: Path, n_windows: int, out: Path, fmt: str, chunk_rows: int) -> None:
    """The parts, in order, as one file of ``fmt`` (one row group a part), renamed into place."""
    first = pq.read_schema(_part(work, 0)).remove_metadata()
    with table_writer(out, fmt, first, chunk_rows) as writer:
        for k in range(n_windows):
            writer.write(pq.read_table(_part(work, k)).cast(first))


def _jsonable(state: dict) -> dict:
    import json

    return json.loads(json.dumps(state, default=lambda o: np.asarray(o).tolist()))
