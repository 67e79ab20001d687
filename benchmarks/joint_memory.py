"""Peak memory of ``stardiff sample --joint --out`` against the number of joint draws.

``python -m benchmarks.joint_memory [-n 100000 1000000] [--max-memory-mb 256]`` builds an
(untrained: memory does not depend on the weights) California-sized model, then for each
``n`` runs ``stardiff sample MODEL --request MedInc MedHouseVal --joint -n N --out F`` in a
fresh process and prints its peak RSS (VmHWM) as one JSON line per run. Streamed joint
draws keep the peak flat in ``n`` (bounded by the model's ``max_memory``); the former
in-memory chain grew by ~0.6 KB per draw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

CHILD = """
import sys
from stardiff.cli import main
import stardiff.infer as infer
load = infer.load
def small(folder, device="cpu"):
    m = load(folder, device)
    m.max_memory = int(sys.argv[1]) * 2**20
    return m
infer.load = small
rc = main(sys.argv[2:])
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("VMHWM_KB", hwm, file=sys.stderr)
sys.exit(rc)
"""


def _model(folder: Path) -> None:
    from stardiff.infer import DensityModel
    from stardiff.recipe import load_recipe
    from stardiff.train.prepared import network_for, prepare

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "california.toml")
    prep = prepare(recipe)
    net = network_for(recipe, len(prep.pre.vocab))
    DensityModel(net, prep.pre, prep.requestable, {}).save(folder)


def _run(folder: Path, n: int, max_mb: int) -> dict:
    out = folder / f"joint-{n}.parquet"
    argv = ["sample", str(folder / "model"), "--request", "MedInc", "MedHouseVal", "--joint"]
    argv += ["-n", str(n), "--out", str(out), "--steps", "5"]
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(max_mb), *argv], capture_output=True, text=True
    )
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    hwm = int(r.stderr.split("VMHWM_KB")[1].split()[0])
    return {
        "n": n,
        "max_memory_mb": max_mb,
        "peak_rss_mb": round(hwm / 1024, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "file_mb": round(out.stat().st_size / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--max-memory-mb", type=int, default=256)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _model(folder / "model")
        for n in a.n:
            print(json.dumps({**_run(folder, n, a.max_memory_mb), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
