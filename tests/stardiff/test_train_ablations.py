"""Recipe keys of the fidelity ablations: train.ema, subset_power, few_inputs, step_power and
model.embedding_shift."""

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stardiff import fit
from stardiff.recipe import RecipeError
from stardiff.train.batches import BatchBuilder
from stardiff.train.ema import WeightAverage
from stardiff.train.loop import TrainingRun
from tests.stardiff.conftest import bimodal_table, make_recipe


def _sizes(power, n_cols=65, rows=40_000, seed=0, few=(0.0, 5)):
    values = torch.zeros(rows, n_cols)
    req = torch.ones(n_cols, dtype=torch.bool)
    b = BatchBuilder(values, req, 64, subset_power=power, few_inputs=few)
    batch = b(torch.arange(rows), torch.Generator().manual_seed(seed))
    return (batch.tokens > 0).sum(dim=1).numpy()


def _assert_same_batch(a, b):
    for x, y in zip(vars(a).values(), vars(b).values(), strict=True):
        assert (x is None and y is None) or torch.equal(x, y)


def test_subset_power_one_is_the_uniform_draw():
    values = torch.randn(500, 6)
    values[values > 1.5] = float("nan")
    req = torch.ones(6, dtype=torch.bool)
    a = BatchBuilder(values, req, 4)(torch.arange(500), torch.Generator().manual_seed(3))
    b = BatchBuilder(values, req, 4, subset_power=1.0)(
        torch.arange(500), torch.Generator().manual_seed(3)
    )
    _assert_same_batch(a, b)


def test_subset_power_favours_few_inputs():
    uniform, biased = _sizes(1.0), _sizes(2.0)
    # 64 available inputs: P(L <= 1) = 2/65 uniform, sqrt(2/65) = 0.175 with power 2
    assert np.mean(uniform <= 1) == pytest.approx(2 / 65, abs=0.005)
    assert np.mean(biased <= 1) == pytest.approx(np.sqrt(2 / 65), abs=0.01)
    assert biased.max() == 64 and biased.mean() < uniform.mean() - 10


def test_few_inputs_gives_a_share_of_rows_one_to_most_inputs():
    base, few = _sizes(2.0), _sizes(2.0, few=(0.2, 5))
    share = lambda sizes: np.mean((sizes >= 1) & (sizes <= 5))  # noqa: E731
    # 20 % of the rows uniform in 1..5, the other 80 % drawn as before
    assert share(few) == pytest.approx(0.2 + 0.8 * share(base), abs=0.01)
    assert np.mean(few == 0) == pytest.approx(0.8 * np.mean(base == 0), abs=0.01)
    for k in range(1, 6):
        assert np.mean(few == k) > 0.04
    assert few.max() == 64
    # rows with fewer available inputs than drawn keep what they have
    values = torch.zeros(1000, 4)
    b = BatchBuilder(values, torch.ones(4, dtype=torch.bool), 64, few_inputs=(1.0, 5))
    sizes = (b(torch.arange(1000), torch.Generator().manual_seed(0)).tokens > 0).sum(dim=1)
    assert sizes.min() >= 1 and sizes.max() == 3


def test_few_inputs_zero_keeps_the_stream_and_bad_values_are_refused(tmp_path):
    values = torch.randn(300, 6)
    req = torch.ones(6, dtype=torch.bool)
    a = BatchBuilder(values, req, 4)(torch.arange(300), torch.Generator().manual_seed(3))
    b = BatchBuilder(values, req, 4, few_inputs=(0.0, 3))(
        torch.arange(300), torch.Generator().manual_seed(3)
    )
    _assert_same_batch(a, b)
    for train, msg in (
        ({"few_inputs": 1.5}, "'train.few_inputs' must be a finite number in [0, 1], got 1.5"),
        ({"few_inputs": 0.1, "few_inputs_max": 0}, "'train.few_inputs_max' must be an integer"),
    ):
        with pytest.raises(RecipeError, match=re.escape(msg)):
            make_recipe(tmp_path, bimodal_table(50), train=train)


def test_weight_average_moves_toward_the_weights():
    net = torch.nn.Linear(3, 2)
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    start = avg.module.weight.clone()
    avg.update(net)  # first update: decay min(0.5, 1/10) = 0.1
    assert torch.allclose(avg.module.weight, start + 0.9)
    for _ in range(200):
        avg.update(net)
    assert torch.allclose(avg.module.weight, net.weight)
    assert not avg.module.weight.requires_grad


def test_ema_model_folder_holds_the_average_and_resumes_exactly(tmp_path, monkeypatch):
    table = bimodal_table(600)
    train = {"epochs": 4, "checkpoint_every": 2, "ema": 0.9}
    full = make_recipe(tmp_path, table, name="full", train=train)
    fit(full, progress=False, figures=False)
    raw = make_recipe(tmp_path, table, name="raw", train={**train, "ema": 0.0})
    fit(raw, progress=False, figures=False)
    a, r = (load_file(str(tmp_path / f"{n}-model/model.safetensors")) for n in ("full", "raw"))
    assert any(not torch.equal(a[k], r[k]) for k in a)  # the folder holds the average

    part = make_recipe(tmp_path, table, name="part", train=train)
    real_epoch = TrainingRun.train_epoch
    crashed = []

    def crash_in_epoch_3(self, *args, **kw):
        if self.epoch == 2 and not crashed:
            crashed.append(True)
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kw)

    monkeypatch.setattr(TrainingRun, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(part, progress=False, figures=False)
    fit(part, resume=True, progress=False, figures=False)
    b = load_file(str(tmp_path / "part-model/model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_embedding_shift_moves_the_bends_and_is_off_in_older_models():
    from stardiff.model.embedding import TokenEmbedding

    torch.manual_seed(0)
    plain, shifted = TokenEmbedding(3, 8), TokenEmbedding(3, 8, shift=True)
    assert plain.shift is None and "shift.weight" not in plain.state_dict()
    shifted.weight.weight.data.copy_(plain.weight.weight)
    shifted.bias.weight.data.copy_(plain.bias.weight)
    tokens, values = torch.tensor([[1, 2]]), torch.tensor([[0.3, -1.0]])
    with torch.no_grad():
        shifted.shift.weight.zero_()  # a zero shift is the paper's embedding
        torch.testing.assert_close(shifted(tokens, values), plain(tokens, values))
        shifted.shift.weight.fill_(0.5)
        expect = torch.nn.functional.gelu(plain.weight(tokens) * values[..., None] + 0.5)
        torch.testing.assert_close(shifted(tokens, values), expect + plain.bias(tokens))


def test_step_power_one_keeps_the_uniform_stream_and_power_two_favours_low_noise():
    from types import SimpleNamespace

    from stardiff.train.step import noise_and_steps as _noise_and_steps

    batch = SimpleNamespace(target=torch.zeros(40_000, 2))
    a = _noise_and_steps(batch, 100, 1, torch.Generator().manual_seed(5))
    b = _noise_and_steps(batch, 100, 1, torch.Generator().manual_seed(5), 1.0)
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(a[0], torch.randint(0, 100, (40_000, 2), generator=gen))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    t, noise = _noise_and_steps(batch, 100, 3, torch.Generator().manual_seed(5), 2.0)
    assert t.shape == noise.shape == (40_000, 2, 3)
    assert t.min() == 0 and t.max() == 99
    # P(t < 25) = sqrt(0.25) = 0.5 with power 2, against 0.25 uniform
    assert (t < 25).float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_step_power_must_be_positive(tmp_path):
    from stardiff.recipe import RecipeError

    with pytest.raises(RecipeError, match=re.escape("'train.step_power' must be a finite number")):
        make_recipe(tmp_path, bimodal_table(50), train={"step_power": 0.0})
