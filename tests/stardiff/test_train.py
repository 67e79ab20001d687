import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from stardiff import fit, load
from stardiff.train import prepare
from stardiff.train.loop import TrainingRun
from tests.stardiff.conftest import bimodal_table, make_recipe

CALIFORNIA = "stardiff/datasets/california_housing.parquet"


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_resume_continues_exactly(tmp_path, monkeypatch):
    table = bimodal_table(600)
    full = make_recipe(tmp_path, table, name="full", train={"epochs": 4, "checkpoint_every": 2})
    fit(full, progress=False, figures=False)

    part = make_recipe(tmp_path, table, name="part", train={"epochs": 4, "checkpoint_every": 2})
    real_epoch = TrainingRun.train_epoch
    crashed = []

    def crash_in_epoch_3(self, *a, **k):
        if self.epoch == 2 and not crashed:
            crashed.append(True)
            raise KeyboardInterrupt  # the run dies mid-way, after the epoch-2 checkpoint
        return real_epoch(self, *a, **k)

    monkeypatch.setattr(TrainingRun, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(part, progress=False, figures=False)
    fit(part, resume=True, progress=False, figures=False)

    a, b = _weights(tmp_path / "full-model"), _weights(tmp_path / "part-model")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = pl.read_csv(tmp_path / "full-model" / "metrics.csv")
    hb = pl.read_csv(tmp_path / "part-model" / "metrics.csv")
    assert ha["train_loss"].to_list() == hb["train_loss"].to_list()
    assert ha["val_loss"].to_list() == hb["val_loss"].to_list()


def test_existing_output_folder_needs_resume_or_overwrite(tmp_path):
    r = make_recipe(tmp_path, bimodal_table(300), train={"epochs": 1})
    fit(r, progress=False, figures=False)
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        fit(r, progress=False, figures=False)
    fit(r, progress=False, figures=False, overwrite=True)
    empty = make_recipe(tmp_path, bimodal_table(300), name="other", train={"epochs": 1})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(empty, resume=True, progress=False)


def test_validation_set_is_fixed_between_epochs(tmp_path):
    r = make_recipe(tmp_path, bimodal_table(600), train={"epochs": 1})
    prep = prepare(r)
    run = TrainingRun(prep, tmp_path, torch.device("cpu"))
    v1 = run.validate()
    assert v1 == run.validate()  # same masks, steps and noise every time
    run.train_epoch()
    run2 = TrainingRun(prep, tmp_path, torch.device("cpu"))
    assert torch.equal(run.val[0].tokens, run2.val[0].tokens)


def test_save_and_load_give_identical_samples(tmp_path):
    r = make_recipe(tmp_path, bimodal_table(400), train={"epochs": 1})
    model = fit(r, progress=False, figures=False)
    again = load(tmp_path / "tiny-model")
    a = model.sample({"x": 1.0}, "y", 300, seed=7)
    b = again.sample({"x": 1.0}, "y", 300, seed=7)
    np.testing.assert_array_equal(a, b)
    assert again.network.config == model.network.config
    torch.testing.assert_close(again.network.schedule.betas, model.network.schedule.betas)


def test_all_nan_and_empty_tables_are_clear_errors(tmp_path):
    t = bimodal_table(100).with_columns(pl.lit(None, dtype=pl.Float64).alias("z"))
    with pytest.raises(ValueError, match="'z' has no finite value"):
        fit(make_recipe(tmp_path, t), progress=False)
    with pytest.raises(KeyError, match="unknown column 'w'"):
        fit(
            make_recipe(tmp_path, bimodal_table(100), name="w", data={"requestable": ["w"]}),
            progress=False,
        )
    with pytest.raises(ValueError, match="train.device"):
        fit(make_recipe(tmp_path, bimodal_table(100), name="d"), device="gpu7", progress=False)


def test_heavy_tailed_column_trains_finite_and_stable(tmp_path):
    """California's AveOccup lies ~2,000 robust sigma out; a log transform tames it."""
    table = pl.read_parquet(CALIFORNIA).select("MedInc", "AveOccup", "Population")
    # a quarter of the rows, and every far one (AveOccup up to 1,243): the same problem
    table = table.filter((pl.int_range(pl.len()) % 4 == 0) | (pl.col("AveOccup") > 50))
    raw = make_recipe(tmp_path, table, name="raw")
    z_raw = prepare(raw).z
    assert np.nanmax(np.abs(z_raw[:, 1])) > 1000  # the problem
    r = make_recipe(
        tmp_path,
        table,
        name="logged",
        transforms={"AveOccup": "log", "Population": "log"},
        train={"epochs": 6, "lr": 5e-3, "batch_size": 512, "cycle_epochs": 6},
    )
    assert np.nanmax(np.abs(prepare(r).z)) < 100
    model = fit(r, progress=False, figures=False)
    hist = pl.read_csv(tmp_path / "logged-model" / "metrics.csv")
    losses = hist["train_loss"].to_numpy()
    assert np.isfinite(losses).all() and np.isfinite(hist["val_loss"].to_numpy()).all()
    assert losses.max() < 3 * np.median(losses)  # no jump
    assert losses[-1] < losses[0]
    s = model.sample({"MedInc": 3.0}, "AveOccup", 500, seed=0)
    assert np.isfinite(s).all() and (s > 0).all()  # physical units, positive by construction


@pytest.mark.parametrize("draws", [1, 3])
def test_length_buckets_give_the_same_gradient(tmp_path, draws):
    from stardiff.train.step import accumulate_gradients
    from stardiff.train.step import noise_and_steps as _noise_and_steps

    table = pl.DataFrame({f"c{i}": np.random.default_rng(i).normal(size=400) for i in range(8)})
    r = make_recipe(tmp_path, table, train={"context": 7})
    run = TrainingRun(prepare(r), tmp_path, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    batch = run.builder(run.train_rows[:256], gen)
    t, noise = _noise_and_steps(batch, run.net.config.steps, draws, gen)
    assert t.shape == noise.shape == ((256,) if draws == 1 else (256, draws))
    grads, totals = [], []
    for buckets in (1, 4):
        run.net.zero_grad(set_to_none=True)
        totals.append(accumulate_gradients(run.net, batch, t, noise, weight=1.0, buckets=buckets))
        grads.append([p.grad.clone() for p in run.net.parameters()])
    torch.testing.assert_close(totals[0], totals[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_noise_draws_share_one_encoding(tmp_path):
    """M identical (step, noise) draws per row give exactly the loss of one draw; distinct
    draws average the head's loss over them."""
    from stardiff.train.step import noise_and_steps as _noise_and_steps

    table = pl.DataFrame({f"c{i}": np.random.default_rng(i).normal(size=300) for i in range(5)})
    run = TrainingRun(
        prepare(make_recipe(tmp_path, table, train={"context": 4})), tmp_path, torch.device("cpu")
    )
    run.net.eval()  # no dropout: the encoder must give the same condition every call
    gen = torch.Generator().manual_seed(1)
    batch = run.builder(run.train_rows[:64], gen)
    t, noise = _noise_and_steps(batch, run.net.config.steps, 3, gen)
    args = (batch.tokens, batch.values, batch.request, batch.target)
    one = run.net(*args, t[:, 0], noise[:, 0])
    same = run.net(*args, t[:, :1].expand(-1, 3), noise[:, :1].expand(-1, 3))
    torch.testing.assert_close(one, same)
    each = [run.net(*args, t[:, j], noise[:, j]) for j in range(3)]
    torch.testing.assert_close(run.net(*args, t, noise), torch.stack(each).mean())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit internals of inductor
def test_compiled_training_matches_eager_on_cpu(tmp_path):
    """train.compile = true runs on CPU (inductor) and trains the same model as eager
    (dropout off: compiled dropout draws its masks from another generator). Two encoder
    layers, so that both kinds of block compile (the last computes the requests' queries
    only); benchmarks/gpu.sh's CPU check compiles one, with dropout."""
    table = pl.DataFrame({f"c{i}": np.random.default_rng(i).normal(size=256) for i in range(3)})
    tiny = {"dim": 8, "n_heads": 2, "ff_dim": 16, "n_layers": 2, "head_width": 8, "steps": 10}
    models = []
    for compiled in (False, True):
        out = tmp_path / f"compile_{compiled}"
        # one batch of every training row a step, so that every step has the same shape (a
        # last, smaller batch would compile the step a second time, for dynamic shapes)
        train = {"epochs": 3, "batch_size": 512, "context": 2, "compile": compiled, "out": str(out)}
        model = {**tiny, "dropout": 0.0}
        recipe = make_recipe(tmp_path, table, name=f"c{compiled}", model=model, train=train)
        models.append(fit(recipe, progress=False, figures=False))
    eager, compiled = (m.network.state_dict() for m in models)
    for name, a in eager.items():
        b = compiled[name]
        if name.endswith("attn.qkv.bias"):  # the key bias has an exactly-zero gradient:
            a, b = a[[*range(8), *range(16, 24)]], b[[*range(8), *range(16, 24)]]  # skip it
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)
