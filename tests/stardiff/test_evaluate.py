"""``stardiff evaluate``: metrics.json and figures, end to end on tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stardiff.cli import main
from stardiff.datasets.synthetic import synthetic_stars, synthetic_stars_model
from stardiff.evaluate import EvalData, evaluate, subset_columns, task_metrics
from stardiff.recipe import EvaluateSection, EvaluateSubset, RecipeError, recipe_from_dict
from tests.stardiff.conftest import make_recipe

EVALUATE = {
    "samples": 300,
    "rows_per_panel": 20,
    "rows": 30,
    "samples_per_row": 40,
    "tasks": 60,
    "conditional": [{"request": "logg", "given": {"teff": [[4000.0, 5000.0], [5000.0, 6500.0]]}}],
    "subsets": [
        {"name": "all others", "request": "teff"},
        {"name": "spectrum", "request": "teff", "given": ["s*"]},
        {"name": "spectrum + teff", "request": "teff", "given": ["s*"], "include_target": True},
    ],
    "joint": ["m_h", "teff", "logg"],
}
SCORES = ("crps_norm", "pit_ks", "cover68", "cover95", "bias", "scatter", "w1_uncond_norm")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A 9-column synthetic_stars model trained for one epoch, and its table."""
    import torch

    from stardiff.train import fit

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("evaluate")
    recipe = make_recipe(
        tmp,
        synthetic_stars(800, seed=1, n_spectrum=2),
        name="synth",
        data={"test_rows": 150},
        train={"epochs": 1, "context": 8},
        transforms={"teff": "quantile"},
        evaluate=EVALUATE,
    )
    model = fit(recipe, progress=False, figures=False)
    return model, recipe.table_path(), tmp


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_evaluate_synthetic_table_writes_metrics_and_figures(synth):
    model, table, tmp = synth
    out = tmp / "eval"
    res = evaluate(model, table, out_dir=out)
    assert res == json.loads((out / "metrics.json").read_text())
    assert res["split"] == "test" and res["n_rows"] == 150
    assert set(res["columns"]) == set(model.requestable)
    for m in res["columns"].values():
        assert m["n"] == 30 and all(_finite(m[k]) for k in SCORES)
        assert m["crps_norm"] > 0 and m["w1_uncond_norm"] >= 0
        assert 0 <= m["pit_ks"] <= 1 and 0 <= m["cover68"] <= m["cover95"] <= 1
    assert res["pooled"]["n"] == 30 * len(model.requestable)
    tasks = res["random_tasks"]
    assert tasks["n"] == 60 and 0 <= tasks["pit_ks"] <= 1 and tasks["max_given"] == 8
    exact = res["random_tasks"]["exact"]
    assert all(_finite(v) for v in exact.values())
    assert exact["w1_norm"] > 0 and exact["w1_norm_oracle"] > 0
    assert exact["truth_pit_ks"] < 0.3  # the table really comes from the exact model
    assert [s["n_given"] for s in res["subsets"].values()] == [8, 2, 3]
    assert set(res["joint"]) == {"m_h", "teff", "logg"}
    expected = ["unconditional.png", "conditional_0_logg.png", "subsets.png", "pit.png"]
    assert res["figures"] == [*expected, "joint.png"]
    for name in res["figures"]:
        assert (out / name).stat().st_size > 1000


def test_exact_metrics_of_an_oracle_sampler_match_their_reference():
    exact = synthetic_stars_model(2)
    values = exact.table(400, seed=3, missing=0.2).to_numpy()
    std = np.nanstd(values, axis=0)
    data = EvalData("t", exact.columns, values, std, "all", list(exact.columns))

    class Oracle:  # samples the exact conditional, as a perfect model would
        columns = exact.columns

        def sample(self, given, request, n, seed=None):
            rows = np.column_stack([given[c] for c in exact.columns])
            return exact.sample_exact_conditional(rows, request, n, rng=seed)

    ev = EvaluateSection(tasks=300, samples_per_row=100)
    res, pits = task_metrics(Oracle(), data, exact.columns, ev, np.random.default_rng(0), 0, 4)
    e = res["exact"]
    assert e["w1_norm"] == pytest.approx(e["w1_norm_oracle"], rel=0.15)
    assert e["pit_ks_per_task"] == pytest.approx(e["pit_ks_per_task_oracle"], rel=0.1)
    assert e["pit_ks"] < 0.02 and res["pit_ks"] < 0.1 and abs(res["cover68"] - 0.68) < 0.08
    assert set(pits) == {"random tasks (model)", "exact CDF at model draws"}


def test_cli_evaluate_on_a_table_without_test_split(api_model, tmp_path, capsys):
    model, recipe = api_model
    out = tmp_path / "ev"
    argv = ["evaluate", str(model.folder), "--table", str(recipe.table_path()), "--out", str(out)]
    argv += ["--rows", "20", "--samples", "20", "--tasks", "20", "--no-figures"]
    # every row of the training table is a training or validation row: no test rows
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "every row is a training (900) or validation (100) row" in err
    assert main([*argv, "--split", "all"]) == 0
    assert "PIT KS" in capsys.readouterr().out
    res = json.loads((out / "metrics.json").read_text())
    assert res["split"] == "all" and res["n_rows"] == 1000 and "exact" not in res["random_tasks"]
    assert set(res["columns"]) == {"x", "y", "z"} and not list(out.glob("*.png"))
    assert res["row_split"]["train"] == 900 and res["row_split"]["by"] == "content"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--split", "holdout"], "split must be one of"),
        (["--columns", "nope"], "unknown column 'nope'"),
        (["--table", "{tmp}/missing.parquet"], "table file not found"),
        (["--recipe", "{tmp}/missing.toml"], "cannot read recipe"),
    ],
)
def test_cli_evaluate_bad_input_is_one_line(synth, capsys, extra, message):
    model, table, tmp = synth
    argv = ["evaluate", str(model.folder), "--table", str(table), "--out", str(tmp / "bad")]
    argv += [a.format(tmp=tmp) for a in extra] + ["--rows", "5", "--samples", "5"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("stardiff evaluate")


def test_subset_columns_and_recipe_checks():
    cols = ("teff", "logg", "bp0", "bp1", "rp10")
    sub = EvaluateSubset(name="xp", request="teff", given=["bp*", "rp1?"])
    assert subset_columns(cols, sub) == ["bp0", "bp1", "rp10"]
    sub = EvaluateSubset(name="xp+", request="teff", given=["bp*", "teff"], include_target=True)
    assert subset_columns(cols, sub) == ["bp0", "bp1", "teff"]
    assert subset_columns(cols, EvaluateSubset(name="rest", request="logg"))[-1] == "rp10"
    with pytest.raises(KeyError, match="no column matches 'gp\\*'"):
        subset_columns(cols, EvaluateSubset(name="bad", request="teff", given=["gp*"]))
    for bad, msg in [({"joint": ["a"]}, "evaluate.joint"), ({"rows": 0}, "'evaluate.rows'")]:
        with pytest.raises(RecipeError, match=msg):
            recipe_from_dict({"data": {"table": "t.parquet"}, "evaluate": bad})
