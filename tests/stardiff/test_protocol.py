"""The fixed California protocol and its two baselines (reduced sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.california_protocol import (
    COLUMNS,
    empirical_marginal_sampler,
    knn_sampler,
    load_table,
    run_protocol,
    split_indices,
)

SMALL = {"n_eval": 120, "n_samples": 60, "n_samples_uncond": 1000}
KEYS = {"a_crps", "a_pit_ks", "b_crps", "b_pit_ks", "c_wasserstein"}


@pytest.fixture(scope="module")
def table():
    return load_table()


@pytest.fixture(scope="module")
def train(table):
    return table[split_indices(table.shape[0])[0]]


def test_table_and_fixed_split(table):
    assert table.shape == (20640, 9) and len(COLUMNS) == 9
    train_idx, test_idx = split_indices(20640)
    assert test_idx.size == 2064 and train_idx.size == 18576
    assert np.intersect1d(train_idx, test_idx).size == 0
    np.testing.assert_array_equal(test_idx, np.random.default_rng(0).permutation(20640)[:2064])
    assert table[:, COLUMNS.index("MedHouseVal")].max() == pytest.approx(5.00001)
    assert table[:, COLUMNS.index("HouseAge")].max() == 52.0


def test_protocol_runs_on_marginal_baseline(table, train):
    scores = run_protocol(empirical_marginal_sampler(train), table, seed=0, **SMALL)
    assert KEYS <= set(scores)
    assert all(np.isfinite(scores[k]) for k in KEYS)
    # the marginal ignores the inputs: calibrated (small PIT KS) but not sharp
    assert 0.35 < scores["a_crps"] < 0.5 and 0.5 < scores["b_crps"] < 0.65
    assert scores["a_pit_ks"] < 0.06
    assert scores["c_wasserstein"] < 0.1


def test_protocol_hands_the_sampler_the_right_inputs(table, train):
    calls = []
    marginal = empirical_marginal_sampler(train)

    def spy(given, request_col, n_samples, rng):
        calls.append((np.isfinite(given).copy(), request_col, n_samples))
        return marginal(given, request_col, n_samples, rng)

    run_protocol(spy, table, **SMALL)
    assert len(calls) == 9 + 1 + 9
    for j, (mask, req, n_samples) in enumerate(calls[:9]):  # (a): the other 8 given
        assert req == j and n_samples == SMALL["n_samples"] and mask.shape == (120, 9)
        assert mask.all(axis=0).sum() == 8 and not mask[:, j].any()
    mask, req, _ = calls[9]  # (b): MedHouseVal given MedInc
    assert req == COLUMNS.index("MedHouseVal")
    assert np.flatnonzero(mask.all(axis=0)).tolist() == [COLUMNS.index("MedInc")]
    for mask, _, n_samples in calls[10:]:  # (c): nothing given
        assert not mask.any() and n_samples == SMALL["n_samples_uncond"]


def test_knn_beats_marginal(table, train):
    marginal = run_protocol(empirical_marginal_sampler(train), table, **SMALL)
    knn = run_protocol(knn_sampler(train, k=50), table, **SMALL)
    assert knn["a_crps"] < 0.7 * marginal["a_crps"]
    assert knn["b_crps"] < 0.8 * marginal["b_crps"]


def test_knn_uses_given_columns_only(train):
    sampler = knn_sampler(train, k=50)
    rng = np.random.default_rng(0)
    target = COLUMNS.index("MedHouseVal")
    income = COLUMNS.index("MedInc")
    given = np.full((2, 9), np.nan)
    given[:, income] = [1.5, 9.0]
    given[:, COLUMNS.index("Population")] = [np.nan, 1000.0]
    out = sampler(given, target, 200, rng)
    assert out.shape == (2, 200)
    assert np.median(out[0]) < 1.5 < 3.5 < np.median(out[1])
    # every draw is a target value of a training row near the given income
    near = np.isin(out[0], train[np.abs(train[:, income] - 1.5) < 0.3, target])
    assert near.all()
    # a value given for the requested column itself is ignored
    leaky = given.copy()
    leaky[:, target] = 0.0
    np.testing.assert_array_equal(
        sampler(leaky, target, 200, np.random.default_rng(1)),
        sampler(given, target, 200, np.random.default_rng(1)),
    )


def test_knn_rows_with_nothing_given_get_the_marginal(train):
    sampler = knn_sampler(train, k=50)
    target = COLUMNS.index("MedHouseVal")
    given = np.full((2, 9), np.nan)
    given[0, COLUMNS.index("MedInc")] = 9.0
    out = sampler(given, target, 4000, np.random.default_rng(2))
    assert np.unique(out[1]).size > 500  # many distinct training values, not 50 arbitrary rows
    assert abs(np.median(out[1]) - np.median(train[:, target])) < 0.1


def test_train_budget_overrides_are_typed_and_checked():
    from benchmarks.train_budget import _overrides
    from stardiff.recipe import TrainSection

    train = TrainSection()
    assert _overrides(["epochs=12", "noise_draws=4", "lr=0.01"], train) == {
        "epochs": 12,
        "noise_draws": 4,
        "lr": 0.01,
    }
    with pytest.raises(SystemExit, match="'epoch=3'"):
        _overrides(["epoch=3"], train)
