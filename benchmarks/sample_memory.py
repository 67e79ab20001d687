"""Peak memory of ``DensityModel.sample`` against its ``max_memory`` bound, for wide tables.

    python -m benchmarks.sample_memory                       # 30, 118, 250 columns; 64 MB-1 GB
    python -m benchmarks.sample_memory --code /path/to/other/checkout --label "main 8af7e66"
    python -m benchmarks.sample_memory --joint --rows 4 -n 64    # chained joint draws of 2 columns

For each number of columns, a network of the paper's width (``recipes/xp_apogee.toml``: D=192,
24 heads, ff 2048, 2 layers, head 512 × 5, 120 steps; random weights, since memory does not
depend on them) with a vocabulary of that many columns samples the last column given all the
others, for ``--rows`` rows × ``-n`` draws with the default sampler, under each ``max_memory``
(``--joint``: the last two columns' joint draws given the others, ``sample_joint``).
Each case runs in a fresh process (``--code`` puts another checkout's ``stardiff`` first on its
path, to measure the code before a change): after building the model and the rows and a one-row
warm-up, the process resets its peak RSS (``/proc/self/clear_refs``), samples, and reads the new
peak (VmHWM). One JSON line per case: the peak's increase over that baseline, the bound, the
model's own size (float32 weights), the samples returned (float64, the caller's), the encoder
passes run, and whether the increase is within ``max_memory`` + the model's size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["main", "PAPER"]

ROOT = Path(__file__).resolve().parents[1]
#: recipes/xp_apogee.toml's [model]: the paper's network
PAPER = {"dim": 192, "n_heads": 24, "ff_dim": 2048, "n_layers": 2, "head_width": 512,
         "head_layers": 5, "steps": 120, "dropout": 0.0}  # fmt: skip

CHILD = r"""
import json, sys
import numpy as np
import torch

case = json.loads(sys.argv[1])
torch.set_num_threads(case["threads"])
from stardata.tokens import Vocabulary
from stardiff.infer import DensityModel
from stardiff.model import DensityNetwork, NetworkConfig
from stardiff.transforms import Preprocessor


def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024


V = case["columns"]
names = [f"c{i}" for i in range(V)]
rng = np.random.default_rng(0)
values = rng.normal(size=(2000, V))
pre = Preprocessor.fit(values, Vocabulary(names), {})
torch.manual_seed(0)
net = DensityNetwork(NetworkConfig(n_kinds=V, **case["model"]))
model = DensityModel(net, pre, names, {})
model.max_memory = case["max_memory"]
k = 2 if case["joint"] else 1
given = {c: rng.normal(size=case["rows"]) for c in names[:-k]}  # every other column given
draw = (lambda g, n, seed: model.sample_joint(g, names[-2:], n, seed=seed)[names[-1]]) if k == 2 \
    else (lambda g, n, seed: model.sample(g, names[-1], n, seed=seed))
passes = []
real = type(model)._condition


def counted(self, tokens, values, column):
    passes.append(tokens.shape[0])
    return real(self, tokens, values, column)


type(model)._condition = counted
draw({c: v[:1] for c, v in given.items()}, 8, 1)  # warm-up
passes.clear()
base = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from here
out = draw(given, case["n"], 0)
peak = status("VmHWM:")
weights = sum(p.numel() * p.element_size() for p in net.parameters())
weights += sum(b.numel() * b.element_size() for b in net.buffers())
print("RESULT", json.dumps({
    "increase": peak - base, "model_bytes": weights, "out_bytes": k * out.nbytes,
    "passes": len(passes), "largest_pass": max(passes), "n_parameters": net.n_parameters(),
    "torch_threads": torch.get_num_threads(),
}))
"""


def run_case(
    code: Path, columns: int, max_mb: int, rows: int, n: int, threads: int, joint: bool = False
) -> dict:
    """One case in a fresh process whose ``stardiff`` comes from ``code``."""
    case = {
        "joint": joint,
        "columns": columns,
        "max_memory": max_mb * 2**20,
        "rows": rows,
        "n": n,
        "threads": threads,
        "model": PAPER,
    }
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(case)],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
    )
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    got = json.loads(r.stdout.split("RESULT", 1)[1])
    mb = lambda b: round(b / 2**20, 1)  # noqa: E731
    return {
        "call": "sample_joint" if joint else "sample",
        "columns": columns,
        "max_memory_mb": max_mb,
        "rows": rows,
        "draws": n,
        "peak_increase_mb": mb(got["increase"]),
        "model_mb": mb(got["model_bytes"]),
        "samples_mb": mb(got["out_bytes"]),
        "within_bound": got["increase"] <= max_mb * 2**20 + got["model_bytes"],
        "ratio_to_bound": round(got["increase"] / (max_mb * 2**20), 2),
        "encoder_passes": got["passes"],
        "largest_pass_rows": got["largest_pass"],
        "n_parameters": got["n_parameters"],
        "torch_threads": got["torch_threads"],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--columns", type=int, nargs="+", default=[30, 118, 250])
    p.add_argument("--max-memory-mb", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--rows", type=int, default=128, help="given rows")
    p.add_argument("-n", type=int, default=256, help="draws per row")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each case")
    p.add_argument("--joint", action="store_true", help="joint draws of the last two columns")
    p.add_argument("--code", type=Path, default=ROOT, help="checkout whose stardiff is measured")
    p.add_argument("--label", default="this checkout", help="what --code is, for the record")
    a = p.parse_args(argv)
    for columns in a.columns:
        for max_mb in a.max_memory_mb:
            record = run_case(a.code.resolve(), columns, max_mb, a.rows, a.n, a.threads, a.joint)
            record["code"] = a.label
            record["machine"] = f"{platform.machine()}, {os.cpu_count()} cpus"
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
