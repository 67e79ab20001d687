"""Leak check: a prediction never sees its own answer, on any path (issue 25, req. 1).

    python -m benchmarks.predict_leak [--epochs 5] [--stars 1500] [--draws 200] [--table PATH]

Trains a small model (the ``[model]`` keys of ``recipes/xp_apogee_cpu.toml``, ``--epochs``
epochs) on the real stars' ``train`` split, then predicts ``teff`` for ``--stars`` test stars
that carry their own ``teff`` through every path: an in-memory table, a Parquet file, a CSV
file and a HATS catalogue on Dask (random sky positions: the model does not use them), and
once more from the same stars without the ``teff`` column. For each path it prints the median
``|median − own teff|`` [K]: equal on every path, with or without the answers present, unless
the answer is given on purpose (``requested_as_inputs=True``, the last line, which is what
the HATS path did before).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.real_stars import COLUMNS, ROOT, TABLE, recipe_sections

REQUEST = "teff"


def train(tmp: Path, table: Path, epochs: int):
    """A small model of the 65 columns on the train split; returns it."""
    import polars as pl

    from stardiff import fit
    from stardiff.recipe import recipe_from_dict

    model_keys, _, _ = recipe_sections(ROOT / "recipes" / "xp_apogee_cpu.toml")
    rows = pl.read_parquet(table).filter(pl.col("split") == "train").select(COLUMNS)
    rows.write_parquet(tmp / "train.parquet")
    raw = {
        "data": {"table": str(tmp / "train.parquet"), "columns": list(COLUMNS)},
        "model": model_keys,
        "train": {"epochs": epochs, "batch_size": 128, "lr": 2e-3, "context": 64,
                  "requests": 8, "noise_draws": 2, "out": str(tmp / "model"), "device": "cpu",
                  "threads": 2, "seed": 0},
    }  # fmt: skip
    return fit(recipe_from_dict(raw, name="leak"), progress=False, figures=False)


def stars(table: Path, n: int):
    """``n`` test stars with their own teff, an id and random sky positions (pandas)."""
    import polars as pl

    t = pl.read_parquet(table).filter(pl.col("split") == "test").head(n).select(COLUMNS)
    frame = t.to_pandas()
    rng = np.random.default_rng(0)
    frame.insert(0, "source_id", np.arange(len(frame), dtype=np.int64) * 3 + 5)
    frame["ra"] = rng.uniform(0, 360, len(frame))
    frame["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, len(frame))))
    return frame


def offsets(got, truth) -> float:
    """Median |median − own value| [K], rows matched on ``source_id``."""
    got = got if hasattr(got, "set_index") else got.to_pandas()  # polars from a mapping
    got = got.set_index("source_id").loc[truth.index]
    return round(float(np.nanmedian(np.abs(got[f"{REQUEST}_median"] - truth))), 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=TABLE)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--stars", type=int, default=1500)
    p.add_argument("--draws", type=int, default=200)
    a = p.parse_args(argv)

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stardata.hats import write_hats
    from stardiff.predict import predict, predict_catalog

    t0 = time.perf_counter()
    rec: dict = {"what": "benchmarks.predict_leak", "request": REQUEST, "stars": a.stars}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = train(tmp, a.table, a.epochs)
        frame = stars(a.table, a.stars)
        truth = frame.set_index("source_id")[REQUEST]
        bare = frame.drop(columns=[REQUEST])
        kw = {"n": a.draws, "seed": 1, "progress": False}
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / "with.parquet")
        pq.write_table(pa.Table.from_pandas(bare, preserve_index=False), tmp / "bare.parquet")
        frame.to_csv(tmp / "with.csv", index=False)
        res = {}
        mem = {"keep": ["source_id"], **kw}
        res["memory, answers present"] = predict(model, frame, REQUEST, **mem)
        res["memory, answers removed"] = predict(model, bare, REQUEST, **mem)
        for name in ("with.parquet", "with.csv"):
            out = tmp / f"p-{name}.parquet"
            predict(model, tmp / name, REQUEST, out=out, keep=["source_id"], **kw)
            res[f"{name.split('.')[1]} file, answers present"] = pd.read_parquet(out)
        sky = {"scheduler": "synchronous", "keep": ["source_id"], **kw}
        for label, src in (("present", "with"), ("removed", "bare")):
            cat = write_hats(tmp / f"{src}.parquet", tmp / f"hats-{src}", pixel_threshold=2000,
                             sort_column="source_id", highest_order=6)  # fmt: skip
            got = predict_catalog(model, cat, [REQUEST], tmp / f"hp-{src}", **sky)
            res[f"HATS, answers {label}"] = pq.read_table(got / "dataset").to_pandas()
        got = predict_catalog(
            model, tmp / "hats-with", [REQUEST], tmp / "hp-leak", requested_as_inputs=True, **sky
        )
        res["HATS, answers given on purpose"] = pq.read_table(got / "dataset").to_pandas()
        rec["median_abs_offset_K"] = {k: offsets(v, truth) for k, v in res.items()}
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
