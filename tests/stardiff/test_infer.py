import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest


def test_sample_shapes_for_every_kind_of_input(api_model):
    model, _ = api_model
    one = model.sample({"x": 0.5}, "y", 64, seed=0)
    assert one.shape == (64,)
    rows = {"x": [0.5, -1.0, np.nan], "z": [0.0, np.nan, np.nan]}
    many = model.sample(rows, "y", 32, seed=0)
    assert many.shape == (3, 32)
    for table in (pl.DataFrame(rows), pd.DataFrame(rows), pa.table(rows)):
        np.testing.assert_array_equal(model.sample(table, "y", 32, seed=0), many)
    both = model.sample(rows, ["y", "z"], 16, seed=1)
    assert set(both) == {"y", "z"} and both["z"].shape == (3, 16)
    assert model.sample(None, "x", 10, seed=0).shape == (10,)


def test_same_seed_same_samples_and_different_seed_differs(api_model):
    model, _ = api_model
    a = model.sample({"x": 1.0}, "y", 100, seed=3)
    np.testing.assert_array_equal(a, model.sample({"x": 1.0}, "y", 100, seed=3))
    assert not np.array_equal(a, model.sample({"x": 1.0}, "y", 100, seed=4))


@pytest.fixture
def one_thread():
    """Bit-identity across chunk sizes holds at one thread: a multi-threaded matmul may
    round differently for another row count (1 of 7,500 draws by 1.5e-8 at 2 threads)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_chunking_under_a_memory_bound_keeps_samples_identical(api_model, one_thread):
    model, _ = api_model
    rows = {"x": np.linspace(-2, 2, 150)}
    full = model.sample(rows, "y", 50, seed=5)
    old = model.max_memory
    try:
        model.max_memory = 200_000  # forces chunks of one noise block of rows
        chunked = model.sample(rows, "y", 50, seed=5)
    finally:
        model.max_memory = old
    np.testing.assert_array_equal(chunked, full)
    alone = model.sample(rows, "y", 50, seed=5)
    together = model.sample(rows, ["z", "y"], 50, seed=5)["y"]
    np.testing.assert_array_equal(alone, together)  # a column's draws ignore the others


def test_chunking_over_draws_keeps_samples_identical(api_model):
    from stardiff.model.noise import DRAW_BLOCK

    model, _ = api_model
    n = DRAW_BLOCK + 100
    full = model.sample({"x": [0.1, 0.2]}, "y", n, seed=2)
    old = model.max_memory
    try:
        model.max_memory = 100_000  # below one block of rows: the draws are chunked too
        assert model._sample_plan(2, 1, n).draws == DRAW_BLOCK
        chunked = model.sample({"x": [0.1, 0.2]}, "y", n, seed=2)
    finally:
        model.max_memory = old
    np.testing.assert_array_equal(chunked, full)


def test_unknown_and_unrequestable_columns_are_errors_listing_valid_ones(api_model, bimodal_model):
    model, _ = api_model
    with pytest.raises(KeyError, match="unknown column 'w'.*x, y, z"):
        model.sample({"w": 1.0}, "y", 10)
    with pytest.raises(KeyError, match="unknown column 'q'"):
        model.sample({"x": 1.0}, "q", 10)
    only_y, _ = bimodal_model
    with pytest.raises(KeyError, match="not requestable; requestable: y"):
        only_y.sample({}, "x", 10)
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, "):
        model.sample({}, "y", 0)
    with pytest.raises(ValueError, match="shape"):
        model.sample({"x": [1.0, 2.0], "z": [1.0]}, "y", 5)


def test_check_request_and_resolved_sampler_say_what_a_call_would_do(api_model):
    model, _ = api_model
    assert model.check_request("y") == ["y"]
    assert model.check_request(["z", "x"]) == ["z", "x"]
    with pytest.raises(KeyError, match="unknown column 'q'.*x, y, z"):
        model.check_request(["y", "q"])
    with pytest.raises(ValueError, match="request at least one column"):
        model.check_request([])
    assert model.resolved_sampler() == ("dpm2", 20)  # the default of a model that sets none
    assert model.resolved_sampler("ddim", 10) == ("ddim", 10)
    with pytest.raises(ValueError, match="sampler"):
        model.resolved_sampler("euler")
    from stardiff.errors import ModelFileError

    with pytest.raises(ModelFileError, match="distill"):
        model.resolved_sampler("distilled", 4)  # no student beside this model


def test_more_inputs_than_the_training_context(bimodal_model):
    model, recipe = bimodal_model
    assert recipe.train.context == 1
    s = model.sample({"x": 1.0, "y": 0.9}, "y", 200, seed=0)  # 2 inputs, trained with 1
    assert np.isfinite(s).all()


def test_summary_and_quantiles(api_model):
    model, _ = api_model
    rows = {"x": [0.5, -1.0]}
    summ = model.summary(rows, ["y", "z"], 200, seed=0)
    s = model.sample(rows, ["y", "z"], 200, seed=0)
    np.testing.assert_allclose(summ["y"], np.median(s["y"], axis=1))
    mad = np.median(np.abs(s["y"] - np.median(s["y"], axis=1)[:, None]), axis=1)
    np.testing.assert_allclose(summ["y_std"], 1.4826 * mad)
    q = model.quantiles(rows, "y", (0.1, 0.5, 0.9), 200, seed=0)
    assert q.shape == (2, 3) and (np.diff(q, axis=1) >= 0).all()
    np.testing.assert_allclose(q[:, 1], summ["y"])


def test_joint_samples_chain_the_requests(api_model, monkeypatch):
    model, _ = api_model
    seen = []
    real = type(model)._encode_inputs

    def spy(self, z):
        seen.append(z.copy())
        return real(self, z)

    monkeypatch.setattr(type(model), "_encode_inputs", spy)
    out = model.sample_joint({"z": 0.3}, ["x", "y"], 40, seed=0)
    assert out["x"].shape == out["y"].shape == (40,)
    z0, z1 = seen
    assert z0.shape[0] == 1 and z1.shape[0] == 40  # one draw of y per draw of x
    np.testing.assert_allclose(model.pre.decode(z1[:, 0], 0), out["x"], rtol=1e-6)
    assert np.all(z1[:, 2] == z0[0, 2])  # the given value rides along every chain


def test_joint_samples_stream_in_bounded_chunks_independent_of_the_bound(api_model):
    model, _ = api_model
    given = {"z": np.linspace(-1, 1, 70)}  # two row blocks of noise (64 + 6 rows)
    whole = model.sample_joint(given, ["x", "y"], 1100, seed=3)
    saved = model.max_memory
    try:
        model.max_memory = 16 * 2**20  # a quarter of it holds ~58,000 (row, draw) pairs
        plan = model._joint_plan(70, 2, 1100)
        chunks = list(model.iter_joint(given, ["x", "y"], 1100, seed=3))
    finally:
        model.max_memory = saved
    assert len(chunks) > 2 and plan.peak <= plan.bound
    assert plan.encode < 64 * 1024  # the chains of a chunk are encoded a group at a time
    for rows, draws, c in chunks:
        pairs = (rows.stop - rows.start) * (draws.stop - draws.start)
        assert pairs <= plan.rows * plan.draws == 64 * 1024  # one noise block at the least
        for k in ("x", "y"):
            np.testing.assert_allclose(c[k], whole[k][rows, draws], rtol=1e-5, atol=1e-6)
    covered = sum((r.stop - r.start) * (d.stop - d.start) for r, d, _ in chunks)
    assert covered == 70 * 1100


def test_out_of_range_given_values_warn_and_say_how_far(api_model):
    from stardiff.errors import OutOfRangeWarning

    model, _ = api_model
    lo, hi, sigma = model.meta["training"]["ranges"]["x"]
    with pytest.warns(OutOfRangeWarning, match=r"x outside the training range .* robust σ"):
        model.sample({"x": hi + 50 * sigma}, "y", 10, seed=0)
    with pytest.warns(OutOfRangeWarning, match="2 of 3 rows"):
        model.sample({"x": np.array([lo - 1.0, 0.0, hi + 1.0])}, "y", 10, seed=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.sample({"x": (lo + hi) / 2}, "y", 10, seed=0)  # inside: silent


def test_non_finite_samples_are_an_error_never_returned(api_model, monkeypatch):
    model, _ = api_model
    real = model.pre.decode

    def overflow(z, column):
        out = real(z, column)
        out.flat[3] = np.nan
        return out

    monkeypatch.setattr(model.pre, "decode", overflow)
    with pytest.raises(FloatingPointError, match=r"1 of 20 samples of y are not finite"):
        model.sample({"x": 0.0}, "y", 20, seed=0)
    with pytest.raises(FloatingPointError, match="not finite"):
        model.sample_joint({}, ["x", "y"], 20, seed=0)


def test_few_step_sampler_runs(api_model):
    model, _ = api_model
    s = model.sample({"x": 0.5}, "y", 100, seed=0, steps=10)
    assert s.shape == (100,) and np.isfinite(s).all()


@pytest.mark.parametrize(
    "how,message",
    [
        ({"sampler": "euler"}, "unknown sampler 'euler'"),
        ({"sampler": "ancestral", "steps": 5}, "ancestral sampler runs all"),
        ({"eta": 0.5}, "eta applies to the ddim sampler only"),
        ({"steps": 0}, "steps must be in 1.."),
        ({"sampler": "dpm2", "steps": 10_000}, "steps must be in 1.."),
    ],
)
def test_bad_sampler_choice_is_an_error(api_model, how, message):
    model, _ = api_model
    with pytest.raises(ValueError, match=message):
        model.sample({"x": 0.5}, "y", 10, seed=0, **how)


def test_default_sampler_and_the_model_attribute(api_model):
    from stardiff.infer import DEFAULT_SAMPLER, DEFAULT_STEPS

    model, _ = api_model
    given = {"x": [0.5, -1.0]}
    default = model.sample(given, "y", 30, seed=4)
    explicit = model.sample(given, "y", 30, seed=4, sampler=DEFAULT_SAMPLER, steps=DEFAULT_STEPS)
    np.testing.assert_array_equal(default, explicit)
    try:
        model.sampler = "ancestral"
        np.testing.assert_array_equal(
            model.sample(given, "y", 30, seed=4),
            model.sample(given, "y", 30, seed=4, sampler="ancestral"),
        )
    finally:
        model.sampler = None
    assert not np.array_equal(default, model.sample(given, "y", 30, seed=4, sampler="ancestral"))


def test_bf16_sampling_is_close_to_fp32(api_model):
    """bf16 autocast (the default on CUDA) runs the same samplers; CPU autocast stands in."""
    model, _ = api_model
    given = {"x": [0.5, -1.0, 2.0]}
    ref = model.sample(given, "y", 400, seed=1)
    try:
        model.bf16 = True
        low = model.sample(given, "y", 400, seed=1)
    finally:
        model.bf16 = None
    assert low.dtype == np.float64 and np.isfinite(low).all()
    assert np.abs(np.median(low, axis=1) - np.median(ref, axis=1)).max() < 0.1 * ref.std()
