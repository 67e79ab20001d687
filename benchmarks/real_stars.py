"""Real stars: labels from real Gaia XP spectra, the model beside two yardsticks in one run.

    python -m benchmarks.real_stars [--minutes 20] [--threads 2] [--table PATH]
                                    [--recipe recipes/xp_apogee_cpu.toml] [KEY=VALUE ...]
                                    [--sampler NAME [--steps K]] [--also-sampler NAME[:K[:ETA]] ...]

The table (default ``../shared/data/real_stars/apogee_xp_stars.parquet`` beside the checkout):
real APOGEE DR17 stars with their Gaia XP sampled spectra (57 bins), colours, G and four
labels, with a seeded ``split``. The model (the ``[model]``/``[train]`` keys of ``--recipe``;
``model.KEY=VALUE`` / ``train.KEY=VALUE`` / ``transforms.COL=KIND`` override them, ``data.KEY``
too for the data keys of this benchmark's table, e.g. ``data.errors="{}_err"``, which gives the
model every value's measurement error with it, in training and in every task) trains on
``split == "train"`` for ``--minutes`` of wall clock (or ``--epochs``). In the same run, on the
same rows: kNN (k = 50, no learning) and one conditional spline flow per label (``zuko``, the
``[bench]`` extra), the flows together getting the model's minutes. All are scored on
``split == "test"`` (``--tasks`` stars, ``--draws`` draws each):

- each label given the 61 non-label columns: robust scatter and bias of the median, CRPS ÷
  std, PIT KS, 68 % coverage;
- logg given teff only; random tasks over all 65 columns with 1-5 and with 32-64 inputs;
- unconditional W1 ÷ std of teff, logg and [Fe/H] against the test stars;
- draws per second and the epochs reached.

``--also-sampler`` scores the same trained model with further samplers (``model:NAME[:K]``
beside ``model``; ``ddim:K:ETA`` for a stochastic DDIM), so that a sampler's effect is
measured without training twice.

``--save DIR`` keeps the trained model folder (``stardiff.load(DIR)``).

Prints a table, appends a JSON record to ``--record`` (default
``benchmarks/results/real-stars-cpu-DATE.jsonl``) and, with ``--figures DIR``, draws the
medians against the truth per label and the Kiel diagram of the medians, model beside flow
and kNN. Yardsticks trained in the same run make the comparison independent of the machine's
speed on the day.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TABLE = ROOT.parent / "shared" / "data" / "real_stars" / "apogee_xp_stars.parquet"
RECIPE = ROOT / "recipes" / "xp_apogee_cpu.toml"
LABELS = ("teff", "logg", "fe_h", "alpha_m")
UNCONDITIONAL = ("teff", "logg", "fe_h")
XP = tuple(f"xp{i:02d}" for i in range(57))
COLUMNS = (*XP, "bprp", "g", "jh", "jk", *LABELS)
SCORES = ("scatter", "bias", "crps", "pit_ks", "cover68", "draws_per_s")
# what the benchmark sets itself (the rest of [train] and all of [model] come from --recipe)
_OWN = ("out", "threads", "device", "seed", "time_budget", "epochs", "checkpoint_every")


#: the build's label names (recipes) → this table's; [alpha/M] takes [M/H]'s settings
RENAMED = {"m_h": ("fe_h", "alpha_m")}


def recipe_sections(path: Path) -> tuple[dict, dict, dict]:
    """The ``[model]``, ``[train]`` and ``[transforms]`` keys of a recipe, as used here.

    Keys that name columns (``train.request_weights``, ``train.input_weights``,
    ``[transforms]``) are carried over to this table's names (:data:`RENAMED`); those naming
    a column it does not have are dropped.
    """
    import tomllib

    raw = tomllib.loads(Path(path).read_text())
    train = {k: v for k, v in raw.get("train", {}).items() if k not in _OWN}
    for key in ("request_weights", "input_weights"):
        if key in train:
            train[key] = _renamed(train[key])
    return dict(raw.get("model", {})), train, _renamed(raw.get("transforms", {}))


def _renamed(by_column: dict) -> dict:
    import fnmatch

    out = {}
    for key, value in by_column.items():
        for name in RENAMED.get(key, (key,)):
            if any(fnmatch.fnmatchcase(c, name) for c in COLUMNS):
                out[name] = value
    return out


def read_table(path: Path, rows: int | None = None, errors: str = ""):
    """(train, test, test errors) of the 65 columns, physical units, NaN = missing.

    With ``errors`` (``data.errors``, e.g. ``"{}_err"``) the training frame also holds the
    table's error columns (the model reads them) and the test errors are an (N, 65) matrix
    (NaN where a column has none); otherwise they are None."""
    import polars as pl

    if not Path(path).is_file():
        raise SystemExit(f"real_stars: no table at {path} (give --table)")
    t = pl.read_parquet(path)
    missing = [c for c in (*COLUMNS, "split") if c not in t.columns]
    if missing:
        raise SystemExit(f"real_stars: {path} has no column(s) {missing[:5]}")
    if rows:
        t = t.head(rows)
    have = {c: errors.format(c) for c in COLUMNS if errors and errors.format(c) in t.columns}
    x = {s: t.filter(pl.col("split") == s) for s in ("train", "test")}
    if not x["train"].height or not x["test"].height:
        raise SystemExit(f"real_stars: {path} needs rows with split 'train' and 'test'")
    sig = None
    if errors:
        sig = np.full((x["test"].height, len(COLUMNS)), np.nan)
        for k, c in enumerate(COLUMNS):
            if c in have:
                sig[:, k] = x["test"][have[c]].to_numpy()
    return x["train"].select([*COLUMNS, *have.values()]), x["test"].select(COLUMNS), sig


def _parse_overrides(items: list[str]) -> dict[str, dict]:
    from stardiff.recipe import DataSection, ModelSection, TrainSection
    from stardiff.transforms import TRANSFORMS

    out: dict[str, dict] = {"data": {}, "model": {}, "train": {}, "transforms": {}}
    classes = {"data": DataSection, "model": ModelSection, "train": TrainSection}
    for item in items:
        key, sep, value = item.partition("=")
        section, _, name = key.partition(".")
        if section == "transforms" and sep and name and value in TRANSFORMS:
            out["transforms"][name] = value
            continue
        cls = classes.get(section)
        fields = getattr(cls, "__dataclass_fields__", {}) if cls else {}
        if not sep or name not in fields or name in ("table", "columns", "split_column"):
            raise SystemExit(
                "real_stars: expected data.KEY=VALUE, model.KEY=VALUE, train.KEY=VALUE or "
                f"transforms.COLUMN={'|'.join(TRANSFORMS)}, got {item!r}"
            )
        out[section][name] = json.loads(value) if value[:1] in '[{"' else _scalar(value)
    return out


def _scalar(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def train_model(train, tmp: Path, a, kv: dict, sections: tuple[dict, dict, dict]):
    """Fit the model on the training stars; (model, seconds)."""
    from stardiff import fit
    from stardiff.recipe import recipe_from_dict

    model_keys, train_keys, transforms = sections
    train.write_parquet(tmp / "train.parquet")
    budget = {"epochs": a.epochs, "cycle_epochs": a.epochs} if a.epochs else {}
    raw = {
        "data": {"table": str(tmp / "train.parquet"), "columns": list(COLUMNS),
                 "validation_fraction": 0.05, "split_seed": a.seed} | kv["data"],
        "transforms": transforms | kv["transforms"],
        "model": model_keys | kv["model"],
        "train": train_keys | {"threads": a.threads, "seed": a.seed, "out": str(tmp / "model"),
                               "checkpoint_every": 1000, "device": "cpu"}
        | ({"time_budget": None} if a.epochs else {"time_budget": a.minutes}) | budget
        | kv["train"],
    }  # fmt: skip
    if raw["train"]["time_budget"] is None:
        del raw["train"]["time_budget"]
    recipe = recipe_from_dict(raw, name="real_stars")
    t0 = time.perf_counter()
    model = fit(recipe, progress=not a.quiet, figures=False)
    return model, round(time.perf_counter() - t0, 1)


def kiel_families(test: np.ndarray, cols: list[str], n: int, seed: int) -> dict:
    """teff and logg from the non-labels on the *same* stars (the Kiel diagram of medians)."""
    t, g = cols.index("teff"), cols.index("logg")
    ok = np.flatnonzero(np.isfinite(test[:, [t, g]]).all(axis=1))
    rows = np.random.default_rng(seed).choice(ok, size=min(n, ok.size), replace=False)
    rest = [cols.index(c) for c in cols if c not in LABELS]
    given = np.full((rows.size, len(cols)), np.nan)
    given[:, rest] = test[np.ix_(rows, rest)]
    return {
        "teff | non-labels": (rows, np.full(rows.size, t), given),
        "logg | non-labels": (rows, np.full(rows.size, g), given),
    }


def unconditional_w1(draw, test: np.ndarray, cols: list[str], std, n: int, seed: int) -> dict:
    """W1 ÷ std between ``n`` unconditional draws of a label and its test values."""
    from stardiff.metrics import wasserstein_1d

    out = {}
    for c in UNCONDITIONAL:
        j = cols.index(c)
        truth = test[:, j][np.isfinite(test[:, j])]
        s = draw(np.full((1, len(cols)), np.nan), np.array([j]), n)[0]
        out[c] = wasserstein_1d(s, truth) / std[j]
    return out


def _flows(train, cols, fams, a) -> tuple[dict, dict]:
    """One flow per label, trained for ``minutes / 4`` each: (facts, draw per label)."""
    from benchmarks.fidelity_yardsticks import LabelFlow

    minutes = a.flow_minutes or a.minutes / len(LABELS)
    ids = [cols.index(c) for c in LABELS]
    inputs = np.setdiff1d(np.arange(len(cols)), ids)
    facts, draws = {}, {}
    for c, j in zip(LABELS, ids, strict=True):
        flow = LabelFlow(train, j, inputs, seed=a.seed)
        facts[c] = {"minutes": minutes, **flow.fit(minutes)}
        draws[c] = lambda given, req, n, flow=flow: flow.draw(given, n, seed=a.seed)
    return facts, draws


class _TaskErrors:
    """The given values' errors of the tasks being scored: the test rows of the family
    (``rows``, set per family); no given value (the unconditional family) needs none."""

    def __init__(self, sig: np.ndarray, cols: list[str]):
        self.sig, self.cols, self.rows = sig, cols, None

    def __call__(self, sel: np.ndarray) -> dict:
        rows = self.rows
        if rows is None or len(rows) != sel.size:
            rows = np.zeros(sel.size, dtype=int)
        return {c: self.sig[rows[sel], k] for k, c in enumerate(self.cols)}


def score(train, test, cols, fams, draws: dict, a, errors: _TaskErrors | None = None) -> dict:
    """{family: {method: scores}} for every family each method can answer (``errors``: the
    model draws' source of each task's errors, pointed at each family's rows)."""
    std = np.nanstd(train, axis=0)
    results: dict[str, dict] = {}
    for name, task in fams.items():
        if errors is not None:
            errors.rows = task[0]
        for method, draw in draws.items():
            if method.startswith("flow:") and name != f"{method[5:]} | non-labels":
                continue  # a flow answers its own label only
            label = "flow" if method.startswith("flow:") else method
            results.setdefault(name, {})[label] = ft.score_observed(
                test, task, std, draw, a.draws, a.seed
            )
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", metavar="SECTION.KEY=VALUE")
    p.add_argument("--table", type=Path, default=TABLE, help="the real-stars Parquet file")
    p.add_argument("--recipe", type=Path, default=RECIPE, help="whose [model]/[train] to train")
    p.add_argument("--minutes", type=float, default=20.0, help="model training budget")
    p.add_argument("--epochs", type=int, help="a fixed number of epochs instead of minutes")
    p.add_argument("--flow-minutes", type=float, help="per flow (default minutes / 4)")
    p.add_argument("--no-flow", action="store_true", help="skip the flows (ablations)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tasks", type=int, default=500, help="test stars per family")
    p.add_argument("--draws", type=int, default=200, help="draws per task")
    p.add_argument("--rows", type=int, help="use only the table's first ROWS rows (tests)")
    p.add_argument("--sampler", help="ancestral, ddim or dpm2 (default: the model's)")
    p.add_argument("--steps", type=int, help="solver steps of ddim / dpm2")
    p.add_argument(
        "--also-sampler",
        action="append",
        default=[],
        metavar="NAME[:STEPS[:ETA]]",
        help="score the same model with this sampler too (e.g. ancestral, dpm2:50, ddim:40:1;"
        " repeatable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="", help="a name for the record (e.g. the variant)")
    p.add_argument("--record", type=Path, help="JSON-lines file to append to")
    p.add_argument("--figures", type=Path, help="folder for the two figures")
    p.add_argument("--quiet", action="store_true", help="no training progress bar")
    p.add_argument("--save", type=Path, help="keep the trained model folder here (must not exist)")
    a = p.parse_intermixed_args(argv)  # overrides may follow the options
    if not (a.minutes > 0 and np.isfinite(a.minutes)):
        raise SystemExit(f"real_stars: --minutes must be a positive number, got {a.minutes}")
    for flag in ("epochs", "tasks", "draws", "rows", "threads", "flow_minutes"):
        v = getattr(a, flag)
        if v is not None and not v > 0:
            raise SystemExit(f"real_stars: --{flag.replace('_', '-')} must be positive, got {v}")
    if not a.recipe.is_file():
        raise SystemExit(f"real_stars: no recipe at {a.recipe}")
    if a.save and (a.save.exists() or a.save.with_name(a.save.name + ".part").exists()):
        raise SystemExit(f"real_stars: --save {a.save} (or its .part) exists; name a new folder")
    also = [_sampler_spec(spec) for spec in a.also_sampler]
    kv = _parse_overrides(a.overrides)
    import torch

    torch.set_num_threads(a.threads)
    train_t, test_t, test_sig = read_table(a.table, a.rows, kv["data"].get("errors", ""))
    cols = list(COLUMNS)
    train, test = (t.select(COLUMNS).to_numpy().astype(np.float64) for t in (train_t, test_t))
    fams = ft.families(test, cols, a.tasks, a.seed + 1, labels=LABELS)
    fams |= kiel_families(test, cols, a.tasks, a.seed + 2)
    rec = {"what": "benchmarks.real_stars", "tag": a.tag, "minutes": a.minutes, "epochs": a.epochs}
    rec |= {"threads": a.threads, "recipe": str(a.recipe), "overrides": kv, "tasks": a.tasks}
    rec |= {"draws": a.draws, "sampler": a.sampler, "steps": a.steps, "table": str(a.table)}
    rec["machine"] = f"{platform.machine()} {platform.processor() or platform.node()}"
    rec["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory() as tmp:
        model, secs = train_model(train_t, Path(tmp), a, kv, recipe_sections(a.recipe))
        if a.save:  # copied under a temporary name, then renamed: never half there
            part = a.save.with_name(a.save.name + ".part")
            shutil.copytree(Path(tmp) / "model", part)
            part.rename(a.save)
    tr = model.meta["training"]
    rec["model"] = {"train_seconds": secs, "epochs": tr["epochs_done"]}
    rec["model"] |= {"n_parameters": tr["n_parameters"], "history_last": tr["history"][-1:]}
    if model.error_features is not None:  # data.errors: the columns read with their errors
        rec["model"]["error_columns"] = sorted(model.error_features.columns)
    from benchmarks.fidelity_yardsticks import knn_draw

    errs = None if test_sig is None else _TaskErrors(test_sig, cols)
    draws = {
        "model": ft.model_draw(model, cols, a.seed, a.sampler, a.steps, errors_of=errs),
        "knn": knn_draw(train, k=50, seed=a.seed),
    }
    for spec, (name, steps, eta) in zip(a.also_sampler, also, strict=True):
        draws[f"model:{spec}"] = ft.model_draw(model, cols, a.seed, name, steps, eta, errs)
    if not a.no_flow:
        rec["flows"], flow_draws = _flows(train, cols, fams, a)
        draws |= {f"flow:{c}": d for c, d in flow_draws.items()}
    results = score(train, test, cols, fams, draws, a, errs)
    std = np.nanstd(train, axis=0)
    n_unc = a.tasks * 4
    rec["unconditional_w1"] = {
        m: unconditional_w1(draws[m], test, cols, std, n_unc, a.seed)
        for m in draws
        if not m.startswith("flow:")
    }
    if a.figures:
        from benchmarks.real_stars_figures import write_figures

        rec["figures"] = write_figures(a.figures, test, cols, fams, results, LABELS)
    for by in results.values():
        for r in by.values():
            r.pop("medians")
    rec["results"] = results
    print(table(rec))
    path = a.record or RESULTS / f"real-stars-cpu-{datetime.date.today()}.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"appended to {path}")
    return 0


def _sampler_spec(spec: str) -> tuple[str, int | None, float]:
    """``NAME[:STEPS[:ETA]]`` of ``--also-sampler`` as (name, steps, eta), or a one-line
    refusal (ETA, in (0, 1], is the noise of the ``ddim`` sampler only)."""
    from stardiff.model.samplers import SAMPLERS

    def refuse(why: str):
        raise SystemExit(f"real_stars: --also-sampler {spec!r}: {why}")

    name, _, rest = spec.partition(":")
    steps, _, eta = rest.partition(":")
    if name not in SAMPLERS:
        refuse(f"no sampler {name!r} ({', '.join(SAMPLERS)})")
    if steps and not (steps.isascii() and steps.isdigit() and int(steps) > 0):
        refuse("steps must be a positive integer")
    if eta:
        if name != "ddim":
            refuse(f"eta applies to the ddim sampler only, not {name!r}")
        try:
            value = float(eta)
        except ValueError:
            value = float("nan")
        if not 0 < value <= 1:
            refuse("eta must be a number in (0, 1]")
        return name, int(steps) if steps else None, value
    if ":" in rest:
        refuse("eta must be a number in (0, 1]")
    return name, int(steps) if steps else None, 0.0


def table(rec: dict) -> str:
    """The record as a text table: one line per (family, method), then W1 and epochs."""
    width = max(6, *(len(m) for by in rec["results"].values() for m in by))
    lines = [f"{'family':22} {'method':{width}} " + " ".join(f"{k:>11}" for k in SCORES)]
    for fam, by in rec["results"].items():
        for method, r in by.items():
            lines.append(f"{fam:22} {method:{width}} " + " ".join(f"{r[k]:11.4g}" for k in SCORES))
    for m, w in rec["unconditional_w1"].items():
        lines.append(
            f"unconditional W1 / std {m:{width}} " + "  ".join(f"{c} {v:.3f}" for c, v in w.items())
        )
    lines.append(f"model: {rec['model']['epochs']} epochs in {rec['model']['train_seconds']} s")
    for c, f in rec.get("flows", {}).items():
        lines.append(f"flow {c}: {f['epochs']} epochs in {f['seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
