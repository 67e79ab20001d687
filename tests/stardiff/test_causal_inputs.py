"""Causal inputs (model.causal_inputs) and few-input requests (train.few_input_requests)."""

import numpy as np
import pytest
import torch

from stardiff import fit, load
from stardiff.model.network import DensityNetwork, NetworkConfig, attention_mask
from stardiff.recipe import RecipeError, recipe_from_dict
from stardiff.train.batches import BatchBuilder
from tests.stardiff.conftest import bimodal_table, make_recipe


def _net(causal=True):
    torch.manual_seed(0)
    cfg = NetworkConfig(
        n_kinds=9, dim=16, n_heads=2, ff_dim=32, isolated_requests=True, causal_inputs=causal
    )
    return DensityNetwork(cfg).eval()


def test_causal_mask():
    tokens = torch.tensor([[3, 5, 0]])
    m = attention_mask(tokens, 2, isolated=True, causal=True, seen=torch.tensor([[2, 1]]))[0, 0]
    # rows: request 1 (sees 2 inputs), request 2 (sees 1), input 3, input 5, padding
    assert m.tolist() == [
        [True, False, True, True, False],
        [False, True, True, False, False],
        [False, False, True, False, False],
        [False, False, True, True, False],
        [False, False, True, True, True],
    ]
    every = attention_mask(tokens, 2, isolated=True, causal=True)[0, 0]
    assert every[:2, 2:].tolist() == [[True, True, False]] * 2  # no seen: all real inputs
    with pytest.raises(ValueError, match="isolated_requests"):
        attention_mask(tokens, 1, isolated=False, causal=True)
    with pytest.raises(ValueError, match="need model.causal_inputs"):
        attention_mask(tokens, 2, isolated=True, seen=torch.tensor([[2, 1]]))


def test_a_request_seeing_m_inputs_is_the_row_given_only_those_m():
    net = _net()
    tokens = torch.tensor([[3, 5, 7, 2, 0], [4, 1, 0, 0, 0]])
    values = torch.randn(2, 5) * (tokens > 0)
    req = torch.tensor([[6, 8, 9], [6, 8, 9]])
    seen = torch.tensor([[4, 2, 0], [2, 1, 0]])
    h = net.condition(tokens, values, req, seen)
    for b in range(2):
        for j in range(3):
            m = int(seen[b, j])
            alone = net.condition(tokens[b : b + 1, :m], values[b : b + 1, :m], req[b : b + 1, j])
            torch.testing.assert_close(alone[0], h[b, j], atol=1e-5, rtol=0)
    # without causal inputs the first inputs' states depend on the later ones
    plain = _net(causal=False)
    first_two = plain.condition(tokens[:1, :2], values[:1, :2], req[:1, 1])
    all_four = plain.condition(tokens[:1], values[:1], req[:1, 1])
    assert not torch.allclose(first_two, all_four, atol=1e-4)


def test_few_input_requests_see_the_first_zero_to_most_inputs():
    z = torch.zeros(20_000, 20)
    b = BatchBuilder(z, torch.ones(20, dtype=torch.bool), 16, requests=4,
                     few_inputs=(0.0, 3), few_input_requests=0.25)  # fmt: skip
    batch = b(torch.arange(z.shape[0]), torch.Generator().manual_seed(0))
    n_in = (batch.tokens > 0).sum(dim=1, keepdim=True)
    assert batch.seen.shape == batch.request.shape == (20_000, 4)
    assert (batch.seen <= n_in).all()
    few = batch.seen < n_in  # a request that sees fewer inputs than the row has
    assert (batch.seen[few] <= 3).all()
    # a quarter of the requests draw m uniform in 0..3, each capped at the row's L
    drew = (n_in > 3).expand_as(few)
    assert few[drew].float().mean() == pytest.approx(0.25, abs=0.01)
    counts = np.bincount(batch.seen[few & drew].numpy(), minlength=4)
    assert counts.min() > 0.2 * counts.sum()
    # 0 leaves the batch without seen, and one request never has it
    none = BatchBuilder(z, torch.ones(20, dtype=torch.bool), 16, requests=4)
    assert none(torch.arange(10), torch.Generator()).seen is None
    one = BatchBuilder(z, torch.ones(20, dtype=torch.bool), 16, few_input_requests=0.5)
    assert one(torch.arange(10), torch.Generator()).seen is None


@pytest.mark.parametrize(
    ("model", "train", "message"),
    [
        ({"causal_inputs": True}, {}, "'model.causal_inputs' needs 'model.isolated_requests'"),
        (
            {"isolated_requests": True},
            {"requests": 4, "few_input_requests": 0.5},
            "'train.few_input_requests' needs 'train.requests' > 1 and 'model.causal_inputs'",
        ),
        (
            {"isolated_requests": True, "causal_inputs": True},
            {"few_input_requests": 0.5},
            "'train.few_input_requests' needs 'train.requests' > 1",
        ),
        (
            {"isolated_requests": True, "causal_inputs": True},
            {"requests": 4, "few_input_requests": 1.5},
            r"'train.few_input_requests' must be a finite number in \[0, 1\], got 1.5",
        ),
    ],
)
def test_bad_causal_keys_are_refused(model, train, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({"data": {"table": "t.parquet"}, "model": model, "train": train})


def test_training_with_few_input_requests_saves_a_causal_model(tmp_path):
    recipe = make_recipe(
        tmp_path,
        bimodal_table(800),
        model={"isolated_requests": True, "causal_inputs": True},
        train={"requests": 2, "few_input_requests": 0.5, "epochs": 2, "length_buckets": 2},
    )
    model = fit(recipe, progress=False, figures=False)
    again = load(tmp_path / "tiny-model")
    assert again.network.config.causal_inputs
    a = model.sample({"x": 1.0}, "y", n=64, seed=3)
    b = again.sample({"x": 1.0}, "y", n=64, seed=3)
    assert np.isfinite(a).all() and np.array_equal(a, b)
