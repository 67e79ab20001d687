"""Several requests per encoded row: train.requests with model.isolated_requests."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stardiff import fit, load
from stardiff.model.network import DensityNetwork, NetworkConfig, attention_mask
from stardiff.recipe import RecipeError, recipe_from_dict
from stardiff.train.batches import BatchBuilder
from tests.stardiff.conftest import bimodal_table, make_recipe


def _net(isolated=True):
    torch.manual_seed(0)
    cfg = NetworkConfig(n_kinds=6, dim=16, n_heads=2, ff_dim=32, isolated_requests=isolated)
    return DensityNetwork(cfg).eval()


def test_isolated_requests_are_independent_questions_about_the_same_inputs():
    net = _net()
    tokens = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0]])
    values = torch.randn(2, 4)
    many = net.condition(tokens, values, torch.tensor([[5, 6], [2, 3]]))
    other = net.condition(tokens, values, torch.tensor([[5, 1], [2, 6]]))
    one = net.condition(tokens, values, torch.tensor([5, 2]))
    assert many.shape == (2, 2, 16) and one.shape == (2, 16)
    torch.testing.assert_close(many[:, 0], one)  # the same whatever else is requested
    torch.testing.assert_close(many[:, 0], other[:, 0])
    padded = net.condition(
        torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], 1),
        torch.cat([values, torch.randn(2, 3)], 1),
        torch.tensor([5, 2]),
    )
    torch.testing.assert_close(padded, one)  # padding is never seen
    empty = net.condition(
        torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.long)
    )
    assert torch.isfinite(empty).all()  # a row without inputs attends to its request only


def test_attention_masks():
    tokens = torch.tensor([[3, 0]])
    shared = attention_mask(tokens, 1, isolated=False)
    assert shared.shape == (1, 1, 1, 3) and shared[0, 0, 0].tolist() == [True, True, False]
    iso = attention_mask(tokens, 2, isolated=True)[0, 0]
    # rows: request 1, request 2, input 3, padding; columns the keys they may see
    assert iso.tolist() == [
        [True, False, True, False],
        [False, True, True, False],
        [False, False, True, False],
        [False, False, True, True],
    ]
    with pytest.raises(ValueError, match="isolated_requests"):
        attention_mask(tokens, 2, isolated=False)


def _masked_table(rows: int, cols: int, missing: float, n_requestable: int):
    """Standard-normal values with NaN at random, and the first ``n_requestable`` columns
    requestable."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(rows, cols)).astype(np.float32)
    z[rng.random(z.shape) < missing] = np.nan
    requestable = torch.arange(cols) < n_requestable
    return torch.as_tensor(z), requestable


def test_batches_with_several_requests():
    z, requestable = _masked_table(400, 7, 0.4, 5)
    b = BatchBuilder(z, requestable, context=7, requests=3)
    rows = b.trainable_rows()
    batch = b(rows, torch.Generator().manual_seed(1))
    assert batch.request.shape == batch.target.shape == (rows.numel(), 3)
    x = z[rows]
    short = 0
    for i in range(rows.numel()):
        req = batch.request[i][batch.request[i] > 0] - 1
        n_ok = int((~torch.isnan(x[i]) & requestable).sum())
        assert req.numel() == min(3, n_ok) and len(set(req.tolist())) == req.numel()
        assert requestable[req].all() and not torch.isnan(x[i, req]).any()
        torch.testing.assert_close(batch.target[i, : req.numel()], x[i, req])
        assert (batch.target[i, req.numel() :] == 0).all()
        inputs = batch.tokens[i][batch.tokens[i] > 0] - 1
        assert not set(inputs.tolist()) & set(req.tolist())  # no request among the inputs
        assert not torch.isnan(x[i, inputs]).any()
        short += req.numel() < 3
    assert short > 0  # some rows have fewer requestable columns than requests: padded


def test_loss_leaves_out_padded_requests():
    net = _net()
    tokens, values = torch.tensor([[1, 2], [3, 0]]), torch.randn(2, 2)
    req = torch.tensor([[4, 5], [4, 0]])
    target, t = torch.randn(2, 2), torch.randint(0, 100, (2, 2, 3))
    noise = torch.randn(2, 2, 3)
    loss = net.loss(tokens, values, req, target, t, noise)
    other = target.clone()
    other[1, 1] = 50.0  # the padded request's target and noise do not count
    noise2 = noise.clone()
    noise2[1, 1] = 9.0
    torch.testing.assert_close(net.loss(tokens, values, req, other, t, noise2), loss)
    # the mean over the three real requests of the single-request losses
    parts = [
        net.loss(
            tokens[i : i + 1],
            values[i : i + 1],
            req[i, j : j + 1],
            target[i, j : j + 1],
            t[i, j : j + 1],
            noise[i, j : j + 1],
        )  # fmt: skip
        for i, j in [(0, 0), (0, 1), (1, 0)]
    ]
    torch.testing.assert_close(loss, torch.stack(parts).mean())


def test_several_requests_need_isolated_requests():
    raw = {"data": {"table": "t.parquet"}, "train": {"requests": 4}}
    with pytest.raises(RecipeError, match="'train.requests' = 4 needs 'model.isolated_requests'"):
        recipe_from_dict(raw)
    raw["train"]["requests"] = 0
    with pytest.raises(RecipeError, match=re.escape("'train.requests' must be an integer in [1,")):
        recipe_from_dict(raw)


def test_training_with_several_requests_saves_a_model_that_samples(tmp_path):
    table = bimodal_table(800)
    recipe = make_recipe(
        tmp_path,
        table,
        model={"isolated_requests": True},
        train={"requests": 2, "noise_draws": 2, "epochs": 2},
    )
    model = fit(recipe, progress=False, figures=False)
    assert model.network.config.isolated_requests
    again = load(tmp_path / "tiny-model")
    assert again.network.config.isolated_requests
    a = model.sample({"x": 1.0}, "y", n=64, seed=3)
    b = again.sample({"x": 1.0}, "y", n=64, seed=3)
    assert np.isfinite(a).all() and np.array_equal(a, b)


def _check_disjoint_requests_and_inputs(batch, x, requestable):
    """Every request is a present, requestable column, distinct, never among the inputs."""
    for i in range(x.shape[0]):
        req = batch.request[i][batch.request[i] > 0] - 1
        inputs = batch.tokens[i][batch.tokens[i] > 0] - 1
        assert len(set(req.tolist())) == req.numel() >= 1
        assert requestable[req].all() and not torch.isnan(x[i, req]).any()
        torch.testing.assert_close(batch.target[i, : req.numel()], x[i, req])
        assert not set(inputs.tolist()) & set(req.tolist())
        assert not torch.isnan(x[i, inputs]).any()


def test_inputs_first_reserves_one_request_and_asks_the_rest_of_what_is_left():
    z, requestable = _masked_table(3000, 12, 0.1, 10)
    rows = torch.arange(z.shape[0])
    gen = torch.Generator().manual_seed(2)
    plain = BatchBuilder(z, requestable, context=12, requests=4)(rows, gen)
    first = BatchBuilder(z, requestable, context=12, requests=4, inputs_first=True)(rows, gen)
    for batch in (plain, first):
        _check_disjoint_requests_and_inputs(batch, z, requestable)
    n_in = lambda b: (b.tokens > 0).sum(dim=1)  # noqa: E731
    n_req = lambda b: (b.request > 0).sum(dim=1)  # noqa: E731
    # plain: four requests leave at most 12 - 4 inputs; inputs first: up to all but one
    assert n_in(plain).max() == 8 and n_in(first).max() == 11
    assert (n_req(plain) == 4).all()
    # a row asks what its inputs left over: fewer requests where there are many inputs
    present = (~torch.isnan(z)).sum(dim=1)
    assert (n_in(first) + n_req(first) <= present).all()
    assert (n_req(first)[n_in(first) == 11] == 1).all()
    # ... and as many as asked (4) where enough requestable columns are left over
    is_input = torch.zeros(z.shape[0], 13, dtype=torch.bool).scatter_(1, first.tokens, True)
    n_left = (~torch.isnan(z) & requestable & ~is_input[:, 1:]).sum(dim=1)
    assert (n_req(first) == n_left.clamp(max=4)).all()
    assert (n_req(first)[n_in(first) <= 2] == 4).float().mean() > 0.95


def test_inputs_first_needs_several_requests_and_no_target_in_context():
    raw = {"data": {"table": "t.parquet"}, "train": {"inputs_first": True}}
    with pytest.raises(RecipeError, match="'train.inputs_first' needs 'train.requests' > 1"):
        recipe_from_dict(raw)
    raw = {
        "data": {"table": "t.parquet"},
        "model": {"isolated_requests": True},
        "train": {"inputs_first": True, "requests": 3, "target_in_context": True},
    }
    with pytest.raises(RecipeError, match="'train.target_in_context' = false"):
        recipe_from_dict(raw)


def test_request_weights_favour_a_column_and_weights_of_one_change_nothing():
    from stardata.tokens import Vocabulary
    from stardiff.train.batches import column_weights

    x, requestable = _masked_table(4000, 10, 0.1, 10)
    vocab = Vocabulary([f"c{j}" for j in range(10)])
    assert column_weights({}, vocab) is None and column_weights({"c*": 1.0}, vocab) is None
    w = column_weights({"c*": 0.5, "c3": 20.0}, vocab)
    assert w[3] == 20.0 and w[0] == 0.5  # the later key wins for c3
    rows = torch.arange(4000)

    def draw(weights):
        b = BatchBuilder(x, requestable, 10, requests=3, request_weights=weights)
        return b(rows, torch.Generator().manual_seed(1))

    plain, ones = draw(None), draw(np.ones(10))
    torch.testing.assert_close(plain.request, ones.request)  # the same stream
    heavy = draw(w)
    asked = (heavy.request == 4).any(dim=1).float().mean()  # token 4 = column c3
    present = (~torch.isnan(x[:, 3])).float().mean()
    assert asked > 0.97 * present  # c3 is asked of nearly every row that has it
    assert (plain.request == 4).any(dim=1).float().mean() < 0.4
    with pytest.raises(RecipeError, match=r"'train.request_weights.teff' names no column"):
        column_weights({"teff": 2.0}, vocab)
    with pytest.raises(RecipeError, match=r"'train.input_weights.teff' names no column"):
        column_weights({"teff": 2.0}, vocab, "train.input_weights")


def test_all_inputs_rows_take_every_available_input():
    x, requestable = _masked_table(2000, 12, 0.2, 12)
    b = BatchBuilder(x, requestable, 64, subset_power=3.0, requests=2, all_inputs=0.5)
    batch = b(torch.arange(2000), torch.Generator().manual_seed(0))
    n_in = (batch.tokens > 0).sum(dim=1)
    available = (~torch.isnan(x)).sum(dim=1) - (batch.request > 0).sum(dim=1)
    full = (n_in == available).float().mean()
    assert 0.45 < full < 0.6  # the share, plus the few power-law rows that draw all anyway
    plain = BatchBuilder(x, requestable, 64, subset_power=3.0, requests=2)
    n0 = (plain(torch.arange(2000), torch.Generator().manual_seed(0)).tokens > 0).sum(dim=1)
    assert (n0 == available).float().mean() < 0.1


def test_input_weights_give_a_column_as_input_more_often_in_rows_with_few_inputs():
    x, requestable = _masked_table(6000, 12, 0.1, 12)
    rows = torch.arange(6000)

    def draw(weights, **kw):
        b = BatchBuilder(
            x, requestable, 64, subset_power=3.0, requests=2, input_weights=weights, **kw
        )
        return b(rows, torch.Generator().manual_seed(2))

    plain, ones = draw(None), draw(np.ones(12))
    torch.testing.assert_close(plain.tokens, ones.tokens)  # weights of one: the same stream
    w = np.ones(12)
    w[5] = 50.0
    heavy = draw(w)
    n_in = (heavy.tokens > 0).sum(dim=1)
    for batch in (plain, heavy):  # the input-set sizes are the weights' business no more
        torch.testing.assert_close((batch.tokens > 0).sum(dim=1), n_in)
    one = n_in == 1
    # token 6 = column c5: among the rows with one input it is that input nearly whenever
    # available (it is neither missing nor requested), against ~1 in 10 without weights
    available = ~torch.isnan(x[:, 5]) & ~(heavy.request == 6).any(dim=1)
    share = (heavy.tokens[one & available, 0] == 6).float().mean()
    base = (plain.tokens[one & available, 0] == 6).float().mean()
    assert share > 0.7 and base < 0.2
    # an input never doubles as a request, and missing values are never inputs
    assert not (
        (heavy.tokens[:, :, None] == heavy.request[:, None, :]) & (heavy.tokens[:, :, None] > 0)
    ).any()
    assert not ((heavy.tokens == 6) & torch.isnan(x[:, 5])[:, None]).any()


def test_request_weights_can_be_kept_to_the_rows_given_every_input():
    x, requestable = _masked_table(6000, 12, 0.0, 12)
    w = np.ones(12)
    w[3] = 100.0
    b = BatchBuilder(
        x, requestable, 64, subset_power=2.0, requests=2, request_weights=w, all_inputs=0.5,
        weights_all_inputs_only=True,
    )  # fmt: skip
    batch = b(torch.arange(6000), torch.Generator().manual_seed(3))
    n_in = (batch.tokens > 0).sum(dim=1)
    every = n_in == 10  # 12 columns, none missing, 2 requested
    asked = (batch.request == 4).any(dim=1)  # token 4 = column c3
    assert 0.45 < every.float().mean() < 0.6
    # weighted where every input is given (a few power-law rows draw all inputs too)
    assert asked[every].float().mean() > 0.9
    few = n_in < 8  # the power-law rows: uniform requests, c3 in ~2 of 12
    assert 0.1 < asked[few].float().mean() < 0.25
    # off (the default): weighted everywhere
    b.weights_all_inputs_only = False
    again = b(torch.arange(6000), torch.Generator().manual_seed(3))
    assert (again.request == 4).any(dim=1).float().mean() > 0.97


@pytest.mark.parametrize(
    "train, message",
    [
        ({"input_weights": {"y": -1.0}}, "'train.input_weights.y' must be a finite number"),
        ({"weights_all_inputs_only": True}, "'train.weights_all_inputs_only' needs 'train.all"),
        ({"all_inputs": 1.5}, "'train.all_inputs' must be a finite number in \\[0, 1\\]"),
        ({"request_weights": {"y": 0.0}}, "'train.request_weights.y' must be a finite number"),
        ({"request_weights": {"y": float("inf")}}, "'train.request_weights.y' must be a finite"),
        ({"request_weights": {"y": float("nan")}}, "'train.request_weights.y' must be a finite"),
    ],
)
def test_bad_allocation_keys_are_one_line_errors(tmp_path, train, message):
    raw = {"data": {"table": "t.parquet"}, "train": train}
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(raw, base_dir=str(tmp_path))


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(["request_weights", "input_weights"]),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(10**400), 10**400),
        st.booleans(),
        st.text(max_size=4),
        st.none(),
    ),
)
def test_any_column_weight_is_taken_or_refused_in_one_line(key, value):
    """Either weights key, any TOML-like value: a finite number > 0 is taken as a float;
    anything else is one RecipeError line naming the key and the column."""
    raw = {"data": {"table": "t.parquet"}, "train": {key: {"y": value}}}
    as_float = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            as_float = float(value)
        except OverflowError:  # an integer past the largest float
            pass
    if as_float is not None and 0 < as_float < float("inf"):
        assert getattr(recipe_from_dict(raw).train, key) == {"y": as_float}
        return
    with pytest.raises(RecipeError) as e:
        recipe_from_dict(raw)
    assert f"'train.{key}.y'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "section, key", [("train", "lr"), ("train", "all_inputs"), ("model", "beta_end")]
)
def test_an_integer_past_the_largest_float_is_a_one_line_error_for_any_float_key(section, key):
    raw = {"data": {"table": "t.parquet"}, section: {key: 10**400}}
    with pytest.raises(RecipeError, match=f"'{section}.{key}' must be a finite number, got an"):
        recipe_from_dict(raw)
