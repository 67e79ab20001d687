"""Is my model right? Metrics and figures of a trained model on a table (the paper's evidence).

:func:`evaluate` scores every requestable column on held-out rows (given every other present
column), on random (row, request, inputs) tasks like the paper's Fig. 5, and on the input
subsets of the recipe's ``[evaluate]`` section (Fig. 4); it writes ``metrics.json`` and the
figures of Figs. 2-8. On a :func:`stardiff.datasets.synthetic.synthetic_stars` table it also
compares the model's draws with the exact conditional densities.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import warnings
from pathlib import Path

import numpy as np

from stardiff import metrics as M
from stardiff.evaluate.rows import EvalData, load_eval_data
from stardiff.recipe import EvaluateSection, Recipe, load_recipe, recipe_from_dict

__all__ = [
    "column_metrics",
    "evaluate",
    "exact_metrics",
    "subset_columns",
    "subset_metrics",
    "synthetic_model_for",
    "task_metrics",
]


def evaluate(
    model,
    table: str | Path,
    *,
    out_dir: str | Path,
    split: str = "test",
    recipe: Recipe | str | Path | None = None,
    columns: list[str] | None = None,
    rows: int | None = None,
    samples: int | None = None,
    tasks: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    figures: bool = True,
    sampler: str | None = None,
    steps: int | None = None,
) -> dict:
    """Score a model on a table and write ``metrics.json`` and figures into ``out_dir``.

    Parameters
    ----------
    model : DensityModel or path
        A trained model or its folder.
    table : path
        Parquet, CSV or ``tokens.h5`` table with (some of) the model's columns.
    out_dir : path
        Output folder (created): empty, or an earlier evaluation's; a folder holding anything
        else, a file, or the table itself is refused (:mod:`stardata.outpaths`).
    split : {"test", "validation", "train", "all"}
        Rows to score. The training split is reproduced from the model's recipe (its
        ``data.split_column`` labels or ``data.test_rows`` permutation); a table without
        either is scored on all rows.
    recipe : Recipe or path, optional
        Source of the ``[evaluate]`` settings; default the recipe stored with the model.
    columns : list of str, optional
        Columns to score (default every requestable column).
    rows, samples, tasks : int, optional
        Override ``evaluate.rows``, ``evaluate.samples_per_row`` and ``evaluate.tasks``.
    seed : int
        Seed of the row choices and of the sampler.
    device : str
        Device to load a model folder on.
    figures : bool
        Also write the PNG figures.
    sampler, steps : optional
        Sampler for every draw (see :meth:`stardiff.infer.DensityModel.sample`); default
        the package's default sampler.

    Returns
    -------
    dict
        The content of ``metrics.json`` (non-finite values as ``None``).
    """
    from stardata.numbers import SEED, check_number
    from stardiff.infer import DensityModel, load

    seed = check_number(seed, "seed", SEED)
    if not isinstance(model, DensityModel):
        model = load(model, device)
    saved = model.sampler, model.steps
    model.sampler, model.steps = sampler or model.sampler, steps or model.steps
    try:
        model.resolved_sampler()  # a bad sampler/steps fails here, before any work
        with _out_of_range_summary():
            return _evaluate(
                model, table, out_dir, split, recipe, columns, rows, samples, tasks, seed, figures
            )
    finally:
        model.sampler, model.steps = saved


@contextlib.contextmanager
def _out_of_range_summary():
    """One warning for all the scored rows outside the training range, not one per call."""
    from stardiff.errors import OutOfRangeWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfRangeWarning)
        yield
    far = [w for w in caught if issubclass(w.category, OutOfRangeWarning)]
    for w in caught:
        if w not in far:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if far:
        warnings.warn(
            f"{len(far)} sampling call(s) were given values outside the training range, "
            f"e.g. {far[0].message}",
            OutOfRangeWarning,
            stacklevel=3,
        )


#: ``metrics.json``'s ``format``: how a rerun knows the folder is an evaluation's.
FORMAT = "stardiff-evaluation"
#: The figures an evaluation draws (glob patterns), recognised also by their PNG tag.
FIGURES = ("unconditional.png", "conditional_*.png", "subsets.png", "pit.png", "joint.png")


def own_entry(path: Path) -> bool:
    """Whether an entry of an evaluation folder is ``stardiff evaluate``'s own."""
    import json

    from stardiff.persist import is_own_figure

    if path.name == "metrics.json":
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        older = {"split", "row_split", "pooled", "columns"}  # written before the format key
        return isinstance(found, dict) and (found.get("format") == FORMAT or older <= set(found))
    return any(fnmatch.fnmatchcase(path.name, f) for f in FIGURES) and is_own_figure(path)


def check_out(out: Path, table) -> None:
    """Refuse an ``out_dir`` that is a file, the table, or holds files evaluate did not write."""
    from stardiff.persist import check_out_folder

    check_out_folder(out, "out", own=own_entry, what="stardiff evaluate", inputs=[table])


def _evaluate(model, table, out_dir, split, recipe, columns, rows, samples, tasks, seed, figures):
    rec = _recipe(model, recipe)
    ev = _settings(rec.evaluate if rec else EvaluateSection(), rows, samples, tasks)
    cols = _columns(model, columns or model.requestable, "columns")
    _check_section(model, ev)
    out = Path(out_dir)
    check_out(out, table)
    data = load_eval_data(model, table, split, rec)
    from stardata.outpaths import claim

    with claim(out, "stardiff evaluate"):  # one writer; the folder checked again under it
        check_out(out, table)
        return _write_evaluation(model, table, data, out, cols, ev, rec, seed, figures)


def _write_evaluation(model, table, data, out, cols, ev, rec, seed, figures) -> dict:
    from stardata.io import remove_partials
    from stardiff.evaluate.figures import write_figures

    remove_partials(out)  # what killed runs left
    rng = np.random.default_rng(seed)
    res = {
        "format": FORMAT,
        "model": str(model.folder) if model.folder else None,
        "table": str(table),
        "split": data.split,
        "n_rows": int(data.values.shape[0]),
        "row_split": data.rows,
        "seed": seed,
        "rows": ev.rows,
        "samples_per_row": ev.samples_per_row,
        "sampler": dict(zip(("method", "steps"), model.resolved_sampler(), strict=True)),
    }
    per_col, pits = column_metrics(model, data, cols, ev, rng, seed)
    uncond = model.sample({}, cols, ev.samples, seed=seed)
    for c in cols:
        per_col[c]["w1_uncond_norm"] = _w1_data(data, c, uncond[c])
    res["columns"] = per_col
    res["pooled"] = _pooled(per_col, pits)
    context = rec.train.context if rec else None
    res["random_tasks"], task_pits = task_metrics(model, data, cols, ev, rng, seed, context)
    subsets = subset_metrics(model, data, ev, rng, seed)
    res["subsets"] = {name: s["metrics"] for name, s in subsets.items()}
    joint = model.sample_joint({}, ev.joint, ev.samples, seed=seed) if ev.joint else {}
    res["joint"] = {c: {"w1_norm": _w1_data(data, c, joint[c])} for c in joint}
    if figures:
        res["figures"] = write_figures(
            model, data, out, ev, uncond=uncond, pits=pits, task_pits=task_pits,
            subsets=subsets, joint=joint, seed=seed,
        )  # fmt: skip
    res = _jsonable(res)
    from stardiff.persist import write_json

    write_json(out / "metrics.json", res)
    return res


# ---------------------------------------------------------------------------- settings
def _recipe(model, recipe) -> Recipe | None:
    if isinstance(recipe, Recipe):
        return recipe
    if recipe is not None:
        return load_recipe(recipe)
    raw = model.meta.get("recipe")
    return recipe_from_dict(raw, where="model config") if raw else None


def _settings(ev: EvaluateSection, rows, samples, tasks) -> EvaluateSection:
    import dataclasses

    new = {"rows": rows, "samples_per_row": samples, "tasks": tasks}
    return dataclasses.replace(ev, **{k: v for k, v in new.items() if v is not None})


def _columns(model, names, where: str) -> list[str]:
    for n in names:
        if n not in model.columns:
            raise KeyError(f"{where}: unknown column {n!r}; columns: {', '.join(model.columns)}")
        if n not in model.requestable:
            raise KeyError(f"{where}: column {n!r} is not requestable by this model")
    return list(names)


def _check_section(model, ev: EvaluateSection) -> None:
    for i, p in enumerate(ev.conditional):
        _columns(model, [p.request], f"evaluate.conditional[{i}].request")
        for c in p.given:
            if c not in model.columns:
                raise KeyError(f"evaluate.conditional[{i}].given: unknown column {c!r}")
    for i, s in enumerate(ev.subsets):
        _columns(model, [s.request], f"evaluate.subsets[{i}].request")
        subset_columns(model.columns, s)
    _columns(model, ev.joint, "evaluate.joint")


def subset_columns(columns, subset) -> list[str]:
    """The given columns of an ``[[evaluate.subsets]]`` entry (names or glob patterns)."""
    if not subset.given:
        chosen = [c for c in columns if c != subset.request]
    else:
        chosen = []
        for pat in subset.given:
            hit = [c for c in columns if re.fullmatch(fnmatch.translate(pat), c)]
            if not hit:
                raise KeyError(f"evaluate.subsets {subset.name!r}: no column matches {pat!r}")
            chosen += [c for c in hit if c not in chosen]
        chosen = [c for c in chosen if c != subset.request]
    return chosen + [subset.request] if subset.include_target else chosen


def _pick(data: EvalData, j: int, n: int, rng) -> np.ndarray:
    ok = np.flatnonzero(np.isfinite(data.values[:, j]))
    return np.sort(rng.choice(ok, size=min(n, ok.size), replace=False))


def _given(model, matrix: np.ndarray) -> dict[str, np.ndarray]:
    return {c: matrix[:, j] for j, c in enumerate(model.columns)}


def _sample(model, data: EvalData, picked, given: np.ndarray, request: str, n: int, seed: int):
    """Draws given rows ``picked`` of ``data``; an error names those rows as the table does."""
    from stardiff.errors import GivenValueError

    how = {"seed": seed}
    if data.sigmas is not None:  # a model that reads its inputs' errors (data.errors)
        how["errors"] = _given(model, data.sigmas[picked])
    try:
        return model.sample(_given(model, given), request, n, **how)
    except GivenValueError as e:
        index = np.arange(len(data.values)) if data.index is None else data.index
        raise e.mapped([int(index[picked[r]]) for r in e.rows], data.name) from None


# ---------------------------------------------------------------------------- metrics
def _score(s: np.ndarray, truth: np.ndarray, std: float, seed: int) -> tuple[dict, np.ndarray]:
    m = M.summarize_column(s, truth, std, rng=seed)
    m["bias_norm"], m["scatter_norm"] = m["bias"] / std, m["scatter"] / std
    m["train_std"] = float(std)
    return m, M.pit(s, truth, rng=seed)


def column_metrics(model, data: EvalData, cols, ev, rng, seed: int):
    """Per-column scores given every other present column; also each column's PIT values."""
    out, pits = {}, {}
    for k, c in enumerate(cols):
        j = data.columns.index(c)
        pick = _pick(data, j, ev.rows, rng)
        if pick.size == 0:
            out[c] = {"n": 0}
            continue
        given = data.values[pick].copy()
        given[:, j] = np.nan
        s = _sample(model, data, pick, given, c, ev.samples_per_row, seed + 1 + k)
        out[c], pits[c] = _score(s, data.values[pick, j], data.train_std[j], seed + k)
    return out, pits


def _w1_data(data: EvalData, c: str, draws: np.ndarray) -> float:
    j = data.columns.index(c)
    x = data.values[:, j]
    x = x[np.isfinite(x)]
    return M.wasserstein_1d(draws, x) / data.train_std[j] if x.size else float("nan")


def _pooled(per_col: dict, pits: dict) -> dict:
    scored = [m for m in per_col.values() if m.get("n")]
    if not scored:
        return {"n": 0}
    n = np.array([m["n"] for m in scored], dtype=float)
    avg = lambda k: float(np.average([m[k] for m in scored], weights=n))  # noqa: E731
    return {
        "crps_norm": float(np.mean([m["crps_norm"] for m in scored])),
        "pit_ks": M.ks_uniform(np.concatenate(list(pits.values()))),
        "cover68": avg("cover68"),
        "cover95": avg("cover95"),
        "n": int(n.sum()),
    }


def task_metrics(model, data: EvalData, cols, ev, rng, seed: int, context: int | None):
    """Random (row, request, inputs) tasks, as the paper's Fig. 5; exact terms when known."""
    from stardiff.datasets import random_tasks

    if ev.tasks == 0:
        return {"n": 0}, {}
    ok = np.isin(data.columns, cols)
    rows, req, given = random_tasks(data.values, ev.tasks, rng, requestable=ok, max_given=context)
    truth = data.values[rows, req]
    S = ev.samples_per_row
    draws = np.empty((rows.size, S))
    for j in np.unique(req):
        sel = req == j
        draws[sel] = _sample(
            model, data, rows[sel], given[sel], data.columns[j], S, seed + 1000 + int(j)
        )
    std = data.train_std[req]
    pit = M.pit(draws, truth, rng=seed)
    res = {
        "n": int(rows.size),
        "crps_norm": float(np.mean(M.crps_samples(draws, truth) / std)),
        "pit_ks": M.ks_uniform(pit),
        "cover68": M.coverage(draws, truth, 0.68),
        "cover95": M.coverage(draws, truth, 0.95),
        "max_given": context,
    }
    pits = {"random tasks (model)": pit}
    synth = synthetic_model_for(data.table_columns, data.columns)
    if synth is not None:
        res["exact"], exact_pits = exact_metrics(synth, data, given, req, truth, draws, seed)
        pits.update(exact_pits)
    return res, pits


def synthetic_model_for(table_columns, columns):
    """The exact generative model when the table is a ``synthetic_stars`` table, else None."""
    from stardiff.datasets import FIXED_COLUMNS, synthetic_stars_model

    k = len(table_columns) - len(FIXED_COLUMNS)
    expected = list(FIXED_COLUMNS) + [f"s{i}" for i in range(max(k, 0))]
    if k < 0 or list(table_columns) != expected or not set(columns) <= set(expected):
        return None
    return synthetic_stars_model(k)


def _ks_rows(u: np.ndarray) -> np.ndarray:
    """KS distance from U(0, 1) of each row of ``u`` (T, S)."""
    u = np.sort(u, axis=1)
    n = u.shape[1]
    i = np.arange(1, n + 1)
    return np.maximum(np.max(i / n - u, axis=1), np.max(u - (i - 1) / n, axis=1))


def exact_metrics(synth, data: EvalData, given, req, truth, draws, seed: int):
    """Model draws vs the exact conditional of each task, with an exact sampler as reference."""
    where = [synth.columns.index(c) for c in data.columns]
    full = np.full((given.shape[0], synth.n_columns), np.nan)
    full[:, where] = given
    sreq = np.asarray(where)[req]
    w, m, s = synth.exact_conditional_batch(full, sreq)
    oracle = synth.sample_exact_conditional(full, sreq, draws.shape[1], rng=seed)
    std = data.train_std[req]
    u_model = M.gaussian_mixture_cdf(draws, w, m, s)
    u_oracle = M.gaussian_mixture_cdf(oracle, w, m, s)
    res = {
        "w1_norm": float(np.mean(M.wasserstein_to_gaussian_mixture(draws, w, m, s) / std)),
        "w1_norm_oracle": float(np.mean(M.wasserstein_to_gaussian_mixture(oracle, w, m, s) / std)),
        "pit_ks": M.ks_uniform(u_model),
        "pit_ks_oracle": M.ks_uniform(u_oracle),
        "pit_ks_per_task": float(np.mean(_ks_rows(u_model))),
        "pit_ks_per_task_oracle": float(np.mean(_ks_rows(u_oracle))),
        "truth_pit_ks": M.ks_uniform(M.gaussian_mixture_cdf(truth, w, m, s)),
    }
    return res, {"exact CDF at model draws": u_model.ravel()}


def subset_metrics(model, data: EvalData, ev, rng, seed: int) -> dict:
    """Scores, medians and robust stds for each ``[[evaluate.subsets]]`` entry (Fig. 4)."""
    out = {}
    for k, sub in enumerate(ev.subsets):
        j = data.columns.index(sub.request)
        use = [data.columns.index(c) for c in subset_columns(data.columns, sub)]
        pick = _pick(data, j, ev.rows, rng)
        if pick.size == 0:
            out[sub.name] = {"metrics": {"request": sub.request, "n": 0}}
            continue
        given = np.full((pick.size, len(data.columns)), np.nan)
        given[:, use] = data.values[np.ix_(pick, use)]
        s = _sample(model, data, pick, given, sub.request, ev.samples_per_row, seed + 500 + k)
        truth = data.values[pick, j]
        m, _ = _score(s, truth, data.train_std[j], seed + k)
        med = np.median(s, axis=1)
        rstd = M.MAD_TO_SIGMA * np.median(np.abs(s - med[:, None]), axis=1)
        m = {"request": sub.request, "n_given": len(use), **m}
        out[sub.name] = {"metrics": m, "truth": truth, "median": med, "std": rstd}
    return out


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x
