"""train.time_budget / --minutes: stop at the budget, the LR schedule fitted to it."""

import json
import re

import numpy as np
import polars as pl
import pytest

from stardiff import fit
from stardiff.cli import main
from stardiff.recipe import RecipeError
from stardiff.train import budget as budget_mod
from stardiff.train.budget import TimeBudget, budget_lr
from stardiff.train.loop import TrainingRun
from tests.stardiff.conftest import bimodal_table, make_recipe

BUDGET_S = 3.0
LR, LR_MIN = 3e-3, 1e-5


def _budget_recipe(tmp_path, name="b", **train):
    keys = {"lr": LR, "lr_min": LR_MIN, "time_budget": BUDGET_S / 60, "checkpoint_every": 4}
    return make_recipe(tmp_path, bimodal_table(600), name=name, train={**keys, **train})


def _spent(folder):
    return json.loads((folder / "config.json").read_text())["training"]["seconds_spent"]


def test_budget_lr_warms_up_then_decays_to_lr_min():
    assert budget_lr(0.0, LR, LR_MIN) == pytest.approx(LR)
    assert budget_lr(1.0, LR, LR_MIN) == pytest.approx(LR_MIN)
    assert budget_lr(0.5, LR, LR_MIN) == pytest.approx((LR + LR_MIN) / 2)
    assert budget_lr(0.0, LR, LR_MIN, warmup=0.1) == pytest.approx(LR_MIN)
    assert budget_lr(0.05, LR, LR_MIN, warmup=0.1) == pytest.approx((LR + LR_MIN) / 2)
    assert budget_lr(0.1, LR, LR_MIN, warmup=0.1) == pytest.approx(LR)
    after = [budget_lr(p, LR, LR_MIN, 0.1) for p in np.linspace(0.1, 1.0, 50)]
    assert np.all(np.diff(after) < 0)
    assert budget_lr(1.7, LR, LR_MIN) == pytest.approx(LR_MIN)  # clipped past the end


def test_budget_state_continues_after_restore():
    b = TimeBudget(1.0, LR, LR_MIN)
    b.load_state_dict({"spent": 45.0})
    assert 45.0 <= b.spent() < 46.0 and not b.done()
    b.load_state_dict({"spent": 60.0})
    assert b.done()


def test_fit_stops_near_the_budget_with_the_schedule_at_its_end(tmp_path):
    r = _budget_recipe(tmp_path, epochs=1)  # epochs is ignored under a budget
    fit(r, progress=False, figures=False)
    out = tmp_path / "b-model"
    spent = _spent(out)
    assert BUDGET_S <= spent < BUDGET_S + 4.0  # overshoot: one step, validation, checkpoint
    hist = pl.read_csv(out / "metrics.csv")  # epochs done depend on the load: next test
    assert hist["lr"][-1] < 0.5 * LR  # the last steps were late in the cosine
    assert hist["seconds"].sum() == pytest.approx(spent, abs=1.0)


@pytest.fixture
def steady_clock(monkeypatch):
    """Each clock reading advances 10 ms: step counts no longer depend on the machine's load."""
    ticks = iter(np.arange(10**7) * 0.01)
    monkeypatch.setattr(budget_mod, "_clock", lambda: float(next(ticks)))


def test_schedule_reaches_lr_min_at_the_budget_on_a_steady_clock(tmp_path, steady_clock):
    r = _budget_recipe(tmp_path, time_budget=0.5 / 60)
    fit(r, progress=False, figures=False)
    hist = pl.read_csv(tmp_path / "b-model" / "metrics.csv")
    lrs = hist["lr"].to_numpy()
    assert hist.height > 2 and lrs[0] < LR and np.all(np.diff(lrs) < 0)
    assert lrs[-1] < 0.01 * LR
    assert 0.5 <= _spent(tmp_path / "b-model") < 0.7  # a few clock readings after the last step


def test_resume_continues_the_budget_and_its_schedule(tmp_path, monkeypatch, steady_clock):
    r = _budget_recipe(tmp_path, time_budget=0.5 / 60, checkpoint_every=2)
    full = _budget_recipe(tmp_path, name="full", time_budget=0.5 / 60, checkpoint_every=2)
    fit(full, progress=False, figures=False)
    real_epoch = TrainingRun.train_epoch
    crashed = []

    def crash_in_epoch_3(self, *a, **k):
        if self.epoch == 2 and not crashed:
            crashed.append(True)
            raise KeyboardInterrupt
        return real_epoch(self, *a, **k)

    monkeypatch.setattr(TrainingRun, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(r, progress=False, figures=False)
    out = tmp_path / "b-model"
    before = pl.read_csv(out / "metrics.csv")
    assert before.height == 2
    fit(r, resume=True, progress=False, figures=False)
    hist = pl.read_csv(out / "metrics.csv")
    assert hist["lr"][:2].to_list() == before["lr"].to_list()
    lrs = hist["lr"].to_numpy()
    assert np.all(np.diff(lrs) < 0) and lrs[-1] < 0.01 * LR  # the cosine went on to its end
    assert 0.5 <= _spent(out) < 0.7  # a few clock readings after the last step
    # the interrupted run did about as many epochs as the uninterrupted one
    assert abs(hist.height - pl.read_csv(tmp_path / "full-model" / "metrics.csv").height) <= 2
    fit(r, resume=True, progress=False, figures=False)  # a spent budget: nothing more to do
    assert pl.read_csv(out / "metrics.csv").height == hist.height


def test_cli_minutes_flag(tmp_path, capsys):
    r = _budget_recipe(tmp_path, time_budget=0.0, epochs=1000)
    path = tmp_path / "r.toml"
    path.write_text(
        f'[data]\ntable = "{tmp_path / "b.parquet"}"\n[model]\ndim = 16\nn_heads = 2\n'
        f"ff_dim = 32\nn_layers = 1\nhead_width = 32\nsteps = 40\n"
        f'[train]\nepochs = 100000\ncontext = 3\nout = "{tmp_path / "cli-model"}"\n'
    )
    assert r.train.time_budget == 0.0
    assert main(["fit", str(path), "--minutes", "0.04", "--quiet", "--no-figures"]) == 0
    assert 2.4 <= _spent(tmp_path / "cli-model") < 4.4
    for bad in ("0", "-1", "nan"):
        assert main(["fit", str(path), "--minutes", bad, "--overwrite", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "argument --minutes: must be a finite number" in err


@pytest.mark.parametrize(
    "train, message",
    [
        ({"time_budget": -1.0}, "'train.time_budget' must be a finite number in [0, 1e+06]"),
        ({"warmup": 0.1}, "'train.warmup' needs 'train.time_budget'"),
        ({"time_budget": 1.0, "warmup": 1.0}, "'train.warmup' must be a finite number in [0, 1)"),
        ({"ema": 1.0}, "'train.ema' must be a finite number in [0, 1)"),
        ({"subset_power": 0.0}, "'train.subset_power' must be a finite number in (0, 100]"),
    ],
)
def test_bad_budget_keys_are_one_line_errors(tmp_path, train, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        make_recipe(tmp_path, bimodal_table(50), train=train)


def test_xp_apogee_cpu_recipe_is_the_papers_columns_at_a_cpu_budget():
    from pathlib import Path

    from stardiff.recipe import load_recipe

    root = Path(__file__).resolve().parents[2] / "recipes"
    paper, cpu = load_recipe(root / "xp_apogee.toml"), load_recipe(root / "xp_apogee_cpu.toml")
    assert len(cpu.data.columns) == 118 and cpu.data == paper.data
    assert cpu.train.time_budget > 0 and cpu.train.device == "cpu" and not cpu.train.bf16
    assert cpu.evaluate == paper.evaluate
