"""Training rows/s, sampling draws/s and peak memory of stardiff; prints one JSON record.

    python -m benchmarks.speed --config california            # the bundled California recipe
    python -m benchmarks.speed --config paper --device cuda --bf16 --compile
    python -m benchmarks.speed --config paper --distilled 4,2,1 --sample-rows 16 --sample-draws 200

``paper`` is the paper's configuration (118 columns, D=192, 24 heads, ff 2048, head
512 × 5, 120 steps, context 64, batch 1024) on ``synthetic_stars`` with 118 columns;
``small`` is a reduced configuration for a quick CPU check of the same code path.
The keys of the printed record are stable so that results compare across commits.
``--distilled K,...`` also times ``sampler="distilled"`` with students of ``K`` steps, side by
side with the others in the same run: each is distilled from the benchmark's own (barely
trained) network for two batches, which is enough for speed (the student's cost does not
depend on its weights); what distillation reaches in quality is ``benchmarks.samplers``'.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stardata.tokens import Vocabulary
from stardiff.recipe import recipe_from_dict
from stardiff.train import Prepared, prepare
from stardiff.train.loop import TrainingRun
from stardiff.transforms import Preprocessor

CONFIGS = {
    "paper": {
        "model": {
            "dim": 192,
            "n_heads": 24,
            "ff_dim": 2048,
            "n_layers": 2,
            "head_width": 512,
            "head_layers": 5,
            "steps": 120,
        },
        "columns": 118,
        "context": 64,
        "batch": 1024,
    },
    "small": {
        "model": {
            "dim": 64,
            "n_heads": 8,
            "ff_dim": 256,
            "n_layers": 2,
            "head_width": 128,
            "head_layers": 3,
            "steps": 50,
        },
        "columns": 40,
        "context": 32,
        "batch": 256,
    },
}


def _synthetic_prepared(cfg: dict, rows: int, args) -> Prepared:
    """A prepared synthetic_stars table (numpy only, no file) for the given configuration."""
    from stardiff.datasets.synthetic import synthetic_stars_model

    sm = synthetic_stars_model(cfg["columns"] - 7)
    rng = np.random.default_rng(0)
    values, _ = sm.sample(rows, rng)
    values[rng.random(values.shape) < 0.1] = np.nan
    recipe = recipe_from_dict(
        {
            "data": {"table": "synthetic"},
            "model": {**cfg["model"], "dropout": 0.1},
            "train": {
                "batch_size": args.batch or cfg["batch"],
                "context": cfg["context"],
                "lr": 1e-3,
                "bf16": args.bf16,
                "compile": args.compile,
                "device": args.device,
                "epochs": 1,
                "length_buckets": args.buckets,
                "noise_draws": args.noise_draws,
            },
        },
        name=f"speed-{args.config}",
    )
    vocab = Vocabulary(sm.columns)
    pre = Preprocessor.fit(values, vocab, {})
    n_val = min(2048, rows // 10)
    return Prepared(
        recipe,
        pre,
        list(sm.columns),
        pre.encode(values),
        np.arange(n_val, rows),
        np.arange(n_val),
        np.arange(0),
    )


def _california_prepared(args) -> Prepared:
    from stardiff.recipe import load_recipe, override

    root = Path(__file__).resolve().parents[1]
    r = load_recipe(root / "recipes" / "california.toml")
    r = override(
        r,
        "train",
        device=args.device,
        bf16=args.bf16,
        compile=args.compile,
        batch_size=args.batch or None,
    )
    return prepare(r)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _peak_memory_gb(device: torch.device) -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB → GiB
    out = {"peak_rss_gb": round(rss, 3)}
    if device.type == "cuda":
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / 1024**3, 3)
    return out


def train_speed(prep: Prepared, device: torch.device, steps: int, warmup: int):
    """Rows per second of the full training step (batch building included)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = TrainingRun(prep, Path(tmp), device)
        bs = run.t.batch_size
        need = bs * (steps + warmup)
        reps = -(-need // run.train_rows.numel())
        run.train_rows = run.train_rows.repeat(reps)[:need]  # one "epoch" = warmup + steps
        rows_w = run.train_rows[: bs * warmup]
        timed = run.train_rows[bs * warmup :]
        run.train_rows = rows_w
        run.train_epoch()  # warm-up (and compilation)
        _sync(device)
        run.train_rows = timed
        t0 = time.perf_counter()
        run.train_epoch()
        _sync(device)
        return timed.numel() / (time.perf_counter() - t0), run.model().to(device)


def sample_speed(
    model, prep: Prepared, device, rows: int, draws: int, steps, bf16: bool, method=None
):
    """Draws per second for ``rows`` rows × ``draws`` draws of one requested column.

    ``method``/``steps`` are the ``sampler``/``steps`` arguments of ``DensityModel.sample``.
    """
    given = {
        c: prep.pre.decode(prep.z[:rows, j].astype(np.float64), j)
        for j, c in enumerate(model.columns[:-1])
    }
    request = model.requestable[-1]
    model.bf16 = bf16  # explicit either way (the model's own default is bf16 on CUDA only)
    how = {"seed": 0, "sampler": method, "steps": steps}
    model.sample({k: v[:2] for k, v in given.items()}, request, 8, **how)
    _sync(device)
    t0 = time.perf_counter()
    model.sample(given, request, draws, **how)
    _sync(device)
    return rows * draws / (time.perf_counter() - t0)


def distilled_students(model, ks: list[int], folder: Path, prep: Prepared) -> None:
    """Save ``model`` to ``folder`` and distil a student of each ``K`` for two small batches
    (speed only: the student's cost does not depend on its weights). A synthetic table has no
    file: its rows are written beside the folder for the distillation's conditions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from stardiff.train import distill

    model.save(folder)
    table = None
    if prep.recipe.data.table == "synthetic":
        z = prep.z[:512]
        cols = {c: prep.pre.decode(z[:, j], j) for j, c in enumerate(prep.pre.vocab.names)}
        table = folder.parent / "rows.parquet"
        pq.write_table(pa.table(cols), table)
    for k in ks:
        distill(model, k, table=table, batches=2, batch_size=8, draws=2, progress=False)


def gemm_rate(device: torch.device, width: int = 512, rows: int = 4096) -> float:
    """Multiply-accumulates per second of a (rows × width) @ (width × width) fp32 matmul:
    the ceiling of the head's work per sampling step at this width."""
    a = torch.randn(rows, width, device=device)
    w = torch.randn(width, width, device=device)
    for _ in range(3):
        a @ w
    _sync(device)
    n, t0 = 20, time.perf_counter()
    for _ in range(n):
        a @ w
    _sync(device)
    return n * rows * width * width / (time.perf_counter() - t0)


def _head_macs(model) -> int:
    """Multiply-accumulates of one head evaluation per draw (the condition is projected
    once per chain and not counted)."""
    c = model.network.config
    return c.head_width * (1 + (c.head_layers - 1) * c.head_width + 1)


def _default_sampler() -> str:
    from stardiff import infer

    if infer.DEFAULT_SAMPLER == "ancestral":
        return "ancestral"
    return f"{infer.DEFAULT_SAMPLER}_{infer.DEFAULT_STEPS}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=["california", *CONFIGS], default="california")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=50, help="timed training steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=0, help="override the batch size")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--sample-rows", type=int, default=64)
    p.add_argument("--sample-draws", type=int, default=1000)
    p.add_argument("--fast-steps", type=int, default=20, help="K of the few-step samplers")
    p.add_argument(
        "--distilled", default="", help="also time distilled students of these K (e.g. 4,2,1)"
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--buckets", type=int, default=1, help="train.length_buckets")
    p.add_argument(
        "--noise-draws", type=int, default=8, help="train.noise_draws (paper/small; as the recipes)"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.config == "california":
        prep = _california_prepared(args)
    else:
        prep = _synthetic_prepared(CONFIGS[args.config], 20_000, args)
    rows_s, model = train_speed(prep, device, args.steps, args.warmup)
    k = args.fast_steps
    runs = [
        ("ancestral", "ancestral", None),
        (f"ddim{k}", "ddim", k),
        (f"dpm2_{k}", "dpm2", k),
        ("default", None, None),
    ]
    ks = [int(x) for x in args.distilled.split(",") if x]
    runs += [(f"distilled_{d}", "distilled", d) for d in ks]
    with tempfile.TemporaryDirectory() as tmp:
        if ks:
            distilled_students(model, ks, Path(tmp) / "model", prep)
        speeds = {
            name: sample_speed(
                model, prep, device, args.sample_rows, args.sample_draws, steps, args.bf16, method
            )
            for name, method, steps in runs
        }
    record = {
        "benchmark": "speed",
        "config": args.config,
        "device": _device_name(device),
        "torch": torch.__version__,
        "n_parameters": model.n_parameters(),
        "batch_size": prep.recipe.train.batch_size,
        "bf16": args.bf16,
        "compile": args.compile,
        "length_buckets": args.buckets,
        "noise_draws": prep.recipe.train.noise_draws,
        "train_rows_per_s": round(rows_s, 1),
        **{f"sample_draws_per_s_{name}": round(v, 1) for name, v in speeds.items()},
        "default_sampler": _default_sampler(),
        "head_mac_per_step": _head_macs(model),
        "gemm_fp32_gmac_per_s": round(gemm_rate(device, model.network.config.head_width) / 1e9, 1),
        **_peak_memory_gb(device),
    }
    json.dump(record, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
