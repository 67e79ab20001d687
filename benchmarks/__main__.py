"""``python -m benchmarks``: speed and quality of stardiff in one JSON record.

Runs, on whatever machine it is started on (about 10-15 minutes on 2 CPU cores):

1. training rows/s and sampling draws/s at the California configuration (the bundled
   recipe) and at the paper's configuration on ``synthetic_stars`` with 118 columns;
2. the fixed California quality protocol (``benchmarks.california_protocol``) for a model
   trained with the California recipe for a fixed budget of ``--epochs`` epochs, with the
   full ancestral sampler and with the few-step DDIM sampler, next to the two baselines.

The record's keys are stable so results compare across commits; store quoted results
under ``benchmarks/results/`` with the machine they ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import subprocess
import sys
import tempfile
import time

import torch

from benchmarks import california_protocol as cp
from benchmarks import speed
from benchmarks.samplers import model_sampler, score

__all__ = ["main", "model_sampler"]


def _speed(argv: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        speed.main(argv)
    return json.loads(buf.getvalue())


def _quality(epochs: int, fast_steps: int, device: str = "cpu") -> dict:
    from pathlib import Path

    from stardiff import fit
    from stardiff.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "california.toml")
    table = cp.load_table()
    train = table[cp.split_indices(table.shape[0])[0]]
    out: dict = {"quality_epochs": epochs}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = fit(recipe, out=tmp, epochs=epochs, device=device, progress=False, figures=False)
        out["quality_train_seconds"] = round(time.perf_counter() - t0, 1)
        model.to(device)
        for name, method, steps in (
            ("ancestral", "ancestral", None),
            (f"ddim{fast_steps}", "ddim", fast_steps),
            (f"dpm2_{fast_steps}", "dpm2", fast_steps),
        ):
            res = score(model, method, steps, seeds=1)
            out[f"quality_{name}_seconds"] = res["seconds"]
            out.update({f"california_{name}_{k}": res[k] for k in cp.SCORES})
    for name, make in (("marginal", cp.empirical_marginal_sampler), ("knn", cp.knn_sampler)):
        res = cp.run_protocol(make(train))
        out.update({f"baseline_{name}_{k}": round(res[k], 4) for k in cp.SCORES})
    return out


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=64, help="training budget of the quality run")
    p.add_argument("--paper-steps", type=int, default=3, help="timed paper-size training steps")
    p.add_argument("--fast-steps", type=int, default=20)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--device", default="cpu", help="device of the quality run")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    record = {
        "benchmark": "stardiff",
        "commit": _commit(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
    }
    if not args.skip_speed:
        record.update(_speed_record(args))
    if not args.skip_quality:
        record.update(_quality(args.epochs, args.fast_steps, args.device))
    record["peak_rss_gb"] = speed._peak_memory_gb(torch.device("cpu"))["peak_rss_gb"]
    record["seconds"] = round(time.perf_counter() - t0, 1)
    json.dump(record, sys.stdout)
    print()
    return 0


def _speed_record(args) -> dict:
    cal = _speed(
        [
            "--config",
            "california",
            "--steps",
            "100",
            "--fast-steps",
            str(args.fast_steps),
            "--sample-rows",
            "256",
            "--sample-draws",
            "1000",
        ]
    )
    paper = _speed(
        [
            "--config",
            "paper",
            "--steps",
            str(args.paper_steps),
            "--warmup",
            "1",
            "--fast-steps",
            str(args.fast_steps),
            "--sample-rows",
            "16",
            "--sample-draws",
            "200",
            "--buckets",
            "4",
        ]
    )
    record = {}
    for prefix, r in (("california", cal), ("paper", paper)):
        for k in (
            "n_parameters",
            "batch_size",
            "noise_draws",
            "train_rows_per_s",
            "sample_draws_per_s_ancestral",
            f"sample_draws_per_s_ddim{args.fast_steps}",
            f"sample_draws_per_s_dpm2_{args.fast_steps}",
            "sample_draws_per_s_default",
            "default_sampler",
            "head_mac_per_step",
            "gemm_fp32_gmac_per_s",
            "peak_rss_gb",
        ):
            record[f"{prefix}_{k}"] = r[k]
    return record


if __name__ == "__main__":
    raise SystemExit(main())
