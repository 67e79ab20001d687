"""``stardiff predict`` speed and memory; prints one JSON record per measurement.

    python -m benchmarks.predict speed --config california --rows 2048
    python -m benchmarks.predict speed --config paper --rows 128
    python -m benchmarks.predict memory --rows 400000

``speed``: rows/s of :func:`stardiff.predict.predict` on a Parquet file, ``-n`` draws (default
200), one requested column, for an *untrained* network of the California recipe's size
(9 columns) or the paper's (118 columns; ``synthetic_stars`` values as inputs). Untrained
weights cost the same as trained ones. ``memory``: peak RSS of a ``predict`` run in a fresh
process on a file larger than that peak: the 118-column vocabulary plus an incompressible
``payload`` column (64 KiB a row by default) that ``--keep`` copies through, read and written a
window at a time (California-size network, 1 draw, ``max_memory`` 256 MiB); next to the RSS of
the same process before the run. Run on an idle machine; a shared one moves the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import rss_gb


def _model_config(name: str) -> dict:
    """The [model] section of a bundled recipe (so the sizes follow the recipes)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    recipe = {"california": "california.toml", "paper": "xp_apogee.toml"}[name]
    with open(root / "recipes" / recipe, "rb") as f:
        return tomllib.load(f)["model"]


def _untrained(columns: list[str], values: np.ndarray, model_cfg: dict, folder: Path):
    import torch

    from stardata.tokens import Vocabulary
    from stardiff.infer import DensityModel
    from stardiff.model import DensityNetwork, NetworkConfig
    from stardiff.transforms import Preprocessor

    torch.manual_seed(0)
    fields = set(NetworkConfig.__dataclass_fields__)
    cfg = {k: v for k, v in model_cfg.items() if k in fields}
    net = DensityNetwork(NetworkConfig(n_kinds=len(columns), **cfg))
    pre = Preprocessor.fit(values, Vocabulary(columns), {})
    model = DensityModel(net, pre, columns)
    model.save(folder)
    return folder


def _table(config: str, rows: int) -> tuple[list[str], np.ndarray]:
    if config == "california":
        import polars as pl

        from stardiff.datasets import __path__ as ds

        t = pl.read_parquet(Path(ds[0]) / "california_housing.parquet")
        reps = -(-rows // t.height)
        values = np.tile(t.to_numpy().astype(np.float64), (reps, 1))[:rows]
        return list(t.columns), values
    from stardiff.datasets.synthetic import synthetic_stars_model

    sm = synthetic_stars_model(111 if config in ("paper", "wide") else 0)
    values, _ = sm.sample(rows, np.random.default_rng(0))
    return list(sm.columns), values


def _write(columns, values, path: Path, row_group: int = 50_000) -> None:
    pq.write_table(pa.table({c: values[:, j] for j, c in enumerate(columns)}), path,
                   row_group_size=row_group)  # fmt: skip


def speed(a) -> dict:
    from stardiff.infer import load
    from stardiff.predict import predict

    columns, values = _table(a.config, a.rows)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = _untrained(columns, values, _model_config(a.config), tmp / "model")
        model = load(folder)
        src = tmp / "in.parquet"
        _write(columns, values, src)
        request = columns[-1] if a.config == "california" else "teff"
        t0 = time.perf_counter()
        predict(model, src, request, n=a.n, out=tmp / "out.parquet", progress=False)
        wall = time.perf_counter() - t0
        # the same draws through DensityModel.sample alone: what predict adds is the rest
        j = columns.index(request)
        given = {c: values[:, i] for i, c in enumerate(columns) if i != j}
        t0 = time.perf_counter()
        model.sample(given, request, a.n, seed=0)
        sample_wall = time.perf_counter() - t0
    return {
        "benchmark": "predict_speed",
        "config": a.config,
        "parameters": model.n_parameters(),
        "columns": len(columns),
        "rows": a.rows,
        "draws": a.n,
        "request": request,
        "wall_s": round(wall, 2),
        "rows_per_s": round(a.rows / wall, 1),
        "draws_per_s": round(a.rows * a.n / wall),
        "sample_only_draws_per_s": round(a.rows * a.n / sample_wall),
        "torch_threads": __import__("torch").get_num_threads(),
    }


def memory_child(a) -> dict:
    """Run in a fresh process: load the model, then predict the whole file."""
    from stardiff.infer import load
    from stardiff.predict import predict

    model = load(a.model)
    model.max_memory = 256 * 1024**2
    before = rss_gb()
    t0 = time.perf_counter()
    predict(
        model, Path(a.input), "teff", n=a.n, out=a.output, chunk_rows=a.chunk_rows,
        keep=["payload"], progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "rss_before_gb": round(before, 3),
        "peak_rss_gb": round(peak, 3),
        "wall_s": round(wall, 1),
    }


def _write_wide(columns, values, payload_kb: int, path: Path, row_group: int) -> None:
    """The table plus an incompressible ``payload`` column that predict copies through."""
    rng = np.random.default_rng(1)
    with pq.ParquetWriter(path, _schema(columns)) as w:
        for r0 in range(0, len(values), row_group):
            block = values[r0 : r0 + row_group]
            data = {c: block[:, j] for j, c in enumerate(columns)}
            blobs = [rng.bytes(payload_kb * 1024) for _ in range(len(block))]
            data["payload"] = pa.array(blobs, type=pa.binary())
            w.write_table(pa.table(data, schema=_schema(columns)))


def _schema(columns) -> pa.Schema:
    return pa.schema([(c, pa.float64()) for c in columns] + [("payload", pa.binary())])


def memory(a) -> dict:
    columns, values = _table("wide", a.rows)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = _model_config("california")
        folder = _untrained(columns, values[:20_000], cfg, tmp / "model")
        src = tmp / "in.parquet"
        _write_wide(columns, values, a.payload_kb, src, a.row_group)
        table_gb = (values.nbytes + a.rows * a.payload_kb * 1024) / 1024**3
        del values
        cmd = [sys.executable, "-m", "benchmarks.predict", "memory-child", "--model",
               str(folder), "--input", str(src), "--output", str(tmp / "out.parquet"),
               "-n", str(a.n), "--chunk-rows", str(a.chunk_rows)]  # fmt: skip
        child = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        out_gb = (tmp / "out.parquet").stat().st_size / 1024**3
        return {
            "benchmark": "predict_memory",
            "rows": a.rows,
            "columns": len(columns),
            "payload_kb_per_row": a.payload_kb,
            "draws": a.n,
            "chunk_rows": a.chunk_rows,
            "input_row_group": a.row_group,
            "file_gb": round(src.stat().st_size / 1024**3, 3),
            "output_gb": round(out_gb, 3),
            "table_in_memory_gb": round(table_gb, 3),
            **child,
            "rows_per_s": round(a.rows / child["wall_s"], 1),
        }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--config", choices=["california", "paper"], default="california")
    s.add_argument("--rows", type=int, default=2048)
    s.add_argument("-n", type=int, default=200)
    m = sub.add_parser("memory")
    m.add_argument("--rows", type=int, default=20_000)
    m.add_argument("-n", type=int, default=1)
    m.add_argument("--payload-kb", type=int, default=64, help="pass-through bytes per row")
    m.add_argument("--row-group", type=int, default=2048, help="input rows per row group")
    m.add_argument("--chunk-rows", type=int, default=1024)
    c = sub.add_parser("memory-child")
    c.add_argument("--model")
    c.add_argument("--input")
    c.add_argument("--output")
    c.add_argument("-n", type=int, default=1)
    c.add_argument("--chunk-rows", type=int, default=1024)
    a = p.parse_args(argv)
    record = {"speed": speed, "memory": memory, "memory-child": memory_child}[a.what](a)
    if a.what != "memory-child":
        record["machine"] = f"{platform.machine()} cpu, shared with other jobs"
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
