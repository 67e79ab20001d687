"""Wall time and quality of training a California recipe, on the fixed California protocol.

    python -m benchmarks.california_fit [RECIPE] [--threads 1] [--tag NAME] [SECTION.KEY=VALUE ...]
    python -m benchmarks.california_fit --cli recipes/california.toml --tag today

Trains ``RECIPE`` (default ``recipes/california.toml``) into a temporary folder, times it, then
scores the model with its default sampler on ``benchmarks.california_protocol`` (``--seeds``
sampler seeds, averaged). ``model.KEY=VALUE`` / ``train.KEY=VALUE`` override recipe keys (the
candidates of a search). With ``--cli`` the main command itself is timed: ``stardiff fit RECIPE
--out TMP`` runs as a subprocess (interpreter start, data preparation, training, model and the
two figures), with ``OMP_NUM_THREADS`` set to ``--threads``; overrides are then refused (the
recipe file is what is measured).

Prints one JSON record and appends it to ``--record`` (default
``benchmarks/results/california-fit-cpu-<date>.jsonl``). The record names the machine (CPU model
and cores), the load average before and after, the threads, the wall seconds and the protocol's
figures (``a_crps`` = CRPS ÷ std over the nine columns given the other eight, ``a_pit_ks``,
``b_crps`` / ``b_pit_ks`` = house value given income, ``c_wasserstein``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = ROOT / "recipes" / "california.toml"


def machine() -> dict:
    """The CPU model, its core count and the load average now (``lscpu``, ``os.getloadavg``)."""
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": f"{model} ({platform.machine()})", "cores": os.cpu_count()}


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (``uptime``)."""
    return [round(x, 2) for x in os.getloadavg()]


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``SECTION.KEY=VALUE`` strings → ``{"model": {...}, "train": {...}}``, typed as the recipe."""
    from stardiff.recipe import ModelSection, TrainSection

    out: dict[str, dict] = {"model": {}, "train": {}}
    for item in items:
        key, sep, value = item.partition("=")
        section, _, name = key.partition(".")
        cls = {"model": ModelSection, "train": TrainSection}.get(section)
        if not sep or cls is None or not hasattr(cls(), name):
            raise SystemExit(
                f"california_fit: expected model.KEY=VALUE or train.KEY=VALUE, {item!r}"
            )
        kind = type(getattr(cls(), name))
        out[section][name] = value.lower() == "true" if kind is bool else kind(value)
    return out


def train_in_process(recipe: Path, kv: dict, out: Path, threads: int) -> float:
    """Train ``recipe`` with overrides into ``out`` (no figures); return the wall seconds."""
    import torch

    from stardiff import fit
    from stardiff.recipe import load_recipe, override

    torch.set_num_threads(threads)
    r = load_recipe(recipe)
    for section in ("model", "train"):
        if kv[section]:
            r = override(r, section, **kv[section])
    r = override(r, "train", threads=threads)
    t0 = time.perf_counter()
    fit(r, out=out, progress=False, figures=False)
    return time.perf_counter() - t0


def train_cli(recipe: Path, out: Path, threads: int) -> float:
    """Run ``stardiff fit RECIPE --out OUT`` as a subprocess; return its wall seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "stardiff", "fit", str(recipe), "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - t0


def score(folder: Path, seeds: int, sampler: str | None = None, steps: int | None = None) -> dict:
    """Protocol figures of a saved model, averaged over ``seeds`` sampler seeds."""
    from benchmarks import california_protocol as cp
    from benchmarks.samplers import model_sampler
    from stardiff import load

    model = load(folder)
    runs = [
        cp.run_protocol(model_sampler(model, steps, seed=s, method=sampler), seed=s)
        for s in range(seeds)
    ]
    rec = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in cp.SCORES}
    rec["a_crps_per_column"] = [
        round(float(x), 4) for x in np.mean([r["a_crps_per_column"] for r in runs], axis=0)
    ]
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", type=Path, default=RECIPE)
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training")
    p.add_argument("--seeds", type=int, default=2, help="sampler seeds of the protocol")
    p.add_argument("--cli", action="store_true", help="time `stardiff fit RECIPE` itself")
    p.add_argument("--tag", default="", help="a name for the record")
    p.add_argument("--save", type=Path, help="keep the model folder here (must not exist)")
    p.add_argument("--record", type=Path, help="JSON-lines file to append to")
    a = p.parse_intermixed_args(argv)  # overrides may follow the options
    if a.recipe.suffix != ".toml":  # the first override was taken for the recipe
        a.overrides, a.recipe = [str(a.recipe), *a.overrides], RECIPE
    kv = parse_overrides(a.overrides)
    if a.cli and a.overrides:
        raise SystemExit("california_fit: --cli measures the recipe file as it is; no overrides")
    if a.save and a.save.exists():
        raise SystemExit(f"california_fit: --save {a.save} exists; name a new folder")
    rec: dict = {"what": "benchmarks.california_fit", "tag": a.tag, "recipe": str(a.recipe)}
    rec |= {"overrides": kv, "threads": a.threads, "cli": a.cli, **machine()}
    rec["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    rec["load_before"] = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        if a.cli:
            secs = train_cli(a.recipe, out, a.threads)
        else:
            secs = train_in_process(a.recipe, kv, out, a.threads)
        rec["load_after"] = load_average()
        rec["wall_s"] = round(secs, 1)
        cfg = json.loads((out / "config.json").read_text())
        rec["epochs"] = cfg["training"]["epochs_done"]
        rec["n_parameters"] = cfg["training"]["n_parameters"]
        import torch

        torch.set_num_threads(a.threads)
        rec["protocol"] = score(out, a.seeds)
        if a.save:
            shutil.copytree(out, a.save)
    line = json.dumps(rec)
    print(line)
    path = a.record or RESULTS / f"california-fit-cpu-{datetime.date.today()}.jsonl"
    with open(path, "a") as f:
        f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
