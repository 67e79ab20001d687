"""Fidelity on ``synthetic_stars`` at the real XP × APOGEE set's shape, with two yardsticks.

    python -m benchmarks.fidelity [--minutes 20] [--threads 2] [--no-flow] [KEY=VALUE ...]

The table has 65 columns (``n_spectrum=58``: labels teff, logg, m_h, colours, magnitude and 58
spectrum-like columns), 36,000 rows of which 2,000 are held out for scoring, 10 % of values
missing at random. The model (the ``[model]`` and ``[train]`` sections of
``recipes/xp_apogee_cpu.toml``; keys can be overridden as ``model.KEY=VALUE`` /
``train.KEY=VALUE``) trains for ``--minutes`` of wall clock
(``train.time_budget``), or ``--epochs`` (one cosine cycle: comparisons of variants that do
not depend on the load of a shared machine). In the same run, on the same training rows: a
k-nearest-neighbour lookup (k = 50) and one conditional spline flow per label (``zuko``;
``--flow-minutes`` each, default ``minutes / 3``: the three flows together get the model's
budget). Every family of
``benchmarks.fidelity_tasks`` is scored for the model, the yardsticks and the exact sampler
(the floor). Prints a table and appends one JSON record to ``--record``. ``--save DIR``
keeps the trained model folder, and its training table as ``DIR.table.parquet`` (for
``stardiff distill DIR --table DIR.table.parquet``); ``--model DIR`` scores a saved one
instead of training (another sampler or step count on the same weights).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import fidelity_tasks as ft

RESULTS = Path(__file__).resolve().parent / "results"
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "xp_apogee_cpu.toml"
N_SPECTRUM, ROWS, TEST_ROWS = 58, 36_000, 2_000
# what the benchmark sets itself (the rest of [train] and all of [model] come from RECIPE)
_OWN = ("out", "threads", "device", "seed", "time_budget", "epochs", "checkpoint_every")


def recipe_sections(path: Path = RECIPE) -> tuple[dict, dict]:
    """The ``[model]`` and ``[train]`` keys of the shipped CPU recipe, as the benchmark uses them.

    Measuring the recipe file itself keeps what ``docs/model.md`` reports and what
    ``stardiff fit recipes/xp_apogee_cpu.toml`` trains the same configuration.
    """
    import tomllib

    raw = tomllib.loads(path.read_text())
    train = {k: v for k, v in raw["train"].items() if k not in _OWN}
    return dict(raw["model"]), train | {"checkpoint_every": 1000}


MODEL, TRAIN = recipe_sections()


def _overrides(items: list[str]) -> dict[str, dict]:
    from stardiff.recipe import ModelSection, TrainSection
    from stardiff.transforms import TRANSFORMS

    out: dict[str, dict] = {"model": {}, "train": {}, "transforms": {}}
    for item in items:
        key, sep, value = item.partition("=")
        section, _, name = key.partition(".")
        if section == "transforms" and sep and name and value in TRANSFORMS:
            out["transforms"][name] = value
            continue
        cls = {"model": ModelSection, "train": TrainSection}.get(section)
        if not sep or cls is None or not hasattr(cls(), name):
            raise SystemExit(
                "fidelity: expected model.KEY=VALUE, train.KEY=VALUE or transforms.COLUMN="
                f"{'|'.join(TRANSFORMS)}, got {item!r}"
            )
        kind = type(getattr(cls(), name))
        out[section][name] = value.lower() == "true" if kind is bool else kind(value)
    return out


def _train_model(table, tmp: Path, a, kv: dict):
    from stardiff import fit
    from stardiff.recipe import recipe_from_dict

    table.write_parquet(tmp / "synth.parquet")
    raw = {
        "data": {"table": str(tmp / "synth.parquet"), "test_rows": TEST_ROWS, "split_seed": a.seed},
        "transforms": kv["transforms"],
        "model": {**MODEL, **kv["model"]},
        "train": {**TRAIN, "threads": a.threads, "seed": a.seed, "out": str(tmp / "model")}
        | kv["train"]
        | (
            {"epochs": a.epochs, "cycle_epochs": a.epochs}
            if a.epochs
            else {"time_budget": a.minutes}
        ),
    }
    recipe = recipe_from_dict(raw, name="fidelity")
    t0 = time.perf_counter()
    model = fit(recipe, progress=True, figures=False)
    return model, recipe, time.perf_counter() - t0


def _rows(n: int, seed: int):
    from stardiff.tables import split_rows

    train, val, test = split_rows(n, test_rows=TEST_ROWS, validation_fraction=0.1, seed=seed)
    return train, test  # the flows and kNN see the model's training rows only


def _table(results: dict[str, dict[str, dict]]) -> str:
    lines = [f"{'family':22} {'method':8} " + " ".join(f"{k:>11}" for k in ft.SCORES)]
    for fam, by in results.items():
        for method, r in by.items():
            vals = " ".join(f"{r[k]:11.4g}" for k in ft.SCORES)
            lines.append(f"{fam:22} {method:8} {vals}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE")
    p.add_argument("--minutes", type=float, default=20.0, help="model training budget")
    p.add_argument(
        "--epochs", type=int, help="train a fixed number of epochs (one cosine) instead of minutes"
    )
    p.add_argument("--flow-minutes", type=float, help="per flow (default minutes / 3)")
    p.add_argument("--no-flow", action="store_true", help="skip the flows (ablations)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tasks", type=int, default=500, help="tasks per family")
    p.add_argument("--draws", type=int, default=200, help="draws per task")
    p.add_argument(
        "--sampler", default="ancestral", help="ancestral, ddim, dpm2 or distilled (--model)"
    )
    p.add_argument("--steps", type=int, help="steps of ddim / dpm2, or which distilled student (K)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="a name for the record (e.g. the variant)")
    p.add_argument("--record", type=Path, help="JSON-lines file to append to")
    p.add_argument("--save", type=Path, help="keep the trained model folder here (must not exist)")
    p.add_argument("--model", type=Path, help="score this saved model folder; no training")
    a = p.parse_intermixed_args(argv)  # overrides may follow the options
    kv = _overrides(a.overrides)
    if a.save and a.save.exists():
        raise SystemExit(f"fidelity: --save {a.save} exists; name a new folder")
    if a.save and a.save.with_name(a.save.name + ".part").exists():
        raise SystemExit(
            f"fidelity: {a.save}.part is left from an interrupted --save; remove it or name "
            "a new folder"
        )
    if a.model and (a.save or a.overrides or a.epochs or a.minutes != p.get_default("minutes")):
        raise SystemExit(
            "fidelity: --model scores a saved model; it takes no --save, --epochs, --minutes "
            "or KEY=VALUE"
        )
    import torch

    from stardiff.datasets.synthetic import synthetic_stars_model

    torch.set_num_threads(a.threads)
    synth = synthetic_stars_model(N_SPECTRUM)
    table = synth.table(ROWS, seed=a.seed, missing=0.1)
    x = table.to_numpy()
    cols = list(synth.columns)
    train_rows, test_rows = _rows(ROWS, a.seed)
    train, test = x[train_rows], x[test_rows]
    std = np.nanstd(train, axis=0)
    fams = ft.families(test, cols, a.tasks, a.seed + 1)
    budget = (None, None) if a.model else (a.minutes, a.epochs)  # a saved model's: its own
    rec = {"what": "benchmarks.fidelity", "tag": a.tag, "minutes": budget[0], "epochs": budget[1]}
    rec |= {"threads": a.threads, "overrides": kv, "tasks": a.tasks, "draws": a.draws}
    rec |= {"sampler": a.sampler, "steps": a.steps}
    rec["machine"] = f"{platform.machine()} {platform.node()}"
    rec["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    model, secs = _saved_or_trained(table, a, kv)
    tr = model.meta["training"]
    rec["model"] = {"train_seconds": secs, "epochs": tr["epochs_done"]}
    if a.model:
        rec["model"]["folder"] = str(a.model)
    rec["model"] |= {"n_parameters": tr["n_parameters"], "history_last": tr["history"]}
    draws = {
        "model": ft.model_draw(model, cols, a.seed, a.sampler, a.steps),
        "knn": _knn(train, a.seed),
        "exact": ft.exact_draw(synth, a.seed),
    }
    results = {}
    for name, task in fams.items():
        results[name] = {m: ft.score_family(synth, test, task, std, d, a.draws, a.seed)
                         for m, d in draws.items()}  # fmt: skip
    if not a.no_flow:
        rec["flows"] = _flows(train, cols, fams, results, synth, test, std, a)
    rec["results"] = results
    print(_table(results))
    path = a.record or RESULTS / f"fidelity-cpu-{datetime.date.today()}.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"appended to {path}")
    return 0


def _saved_or_trained(table, a, kv: dict):
    """The model of ``--model``, or one trained now (kept in ``--save`` if given)."""
    from stardiff import load

    if a.model:
        return load(a.model), None
    with tempfile.TemporaryDirectory() as tmp:
        model, _, secs = _train_model(table, Path(tmp), a, kv)
        if a.save:  # copy to a temporary name beside the target, then rename: never half there
            part = a.save.with_name(a.save.name + ".part")
            shutil.copytree(Path(tmp) / "model", part)
            shutil.copyfile(Path(tmp) / "synth.parquet", a.save.with_name(a.save.name + ".part.pq"))
            a.save.with_name(a.save.name + ".part.pq").rename(
                a.save.with_name(a.save.name + ".table.parquet")
            )
            part.rename(a.save)
    return model, round(secs, 1)


def _knn(train, seed: int):
    from benchmarks.fidelity_yardsticks import knn_draw

    return knn_draw(train, k=50, seed=seed)


def _flows(train, cols, fams, results, synth, test, std, a) -> dict:
    """Train one flow per label, score it on that label's family; return training facts."""
    from benchmarks.fidelity_yardsticks import LabelFlow

    minutes = a.flow_minutes or a.minutes / len(ft.LABELS)
    label_ids = [cols.index(c) for c in ft.LABELS]
    inputs = np.setdiff1d(np.arange(len(cols)), label_ids)
    facts = {}
    for c, j in zip(ft.LABELS, label_ids, strict=True):
        flow = LabelFlow(train, j, inputs, seed=a.seed)
        facts[c] = {"minutes": minutes, **flow.fit(minutes)}

        def draw(given, req, n, flow=flow):
            return flow.draw(given, n, seed=a.seed)

        fam = f"{c} | non-labels"
        results[fam]["flow"] = ft.score_family(synth, test, fams[fam], std, draw, a.draws, a.seed)
    return facts


if __name__ == "__main__":
    raise SystemExit(main())
