"""benchmarks.fidelity's task families, scores and yardsticks (the benchmark is a script)."""

import numpy as np
import pytest

from benchmarks import fidelity_tasks as ft
from benchmarks.fidelity_yardsticks import knn_draw
from stardiff.datasets.synthetic import synthetic_stars_model


@pytest.fixture(scope="module")
def setup():
    synth = synthetic_stars_model(10)
    x = synth.table(6000, seed=1, missing=0.1).to_numpy()
    train, test = x[:5000], x[5000:]
    return synth, train, test, np.nanstd(train, axis=0)


def test_families_have_the_promised_inputs(setup):
    synth, _, test, _ = setup
    cols = list(synth.columns)
    fams = ft.families(test, cols, 100, seed=0)
    n_given = {k: np.isfinite(g).sum(axis=1) for k, (_, _, g) in fams.items()}
    lab = [cols.index(c) for c in ft.LABELS]
    for c in ft.LABELS:
        rows, req, given = fams[f"{c} | non-labels"]
        assert np.all(req == cols.index(c)) and np.isfinite(test[rows, req]).all()
        assert not np.isfinite(given[:, lab]).any()
        expect = np.isfinite(test[rows]).sum(axis=1) - np.isfinite(test[rows][:, lab]).sum(axis=1)
        assert np.array_equal(np.isfinite(given).sum(axis=1), expect)
    assert np.all(n_given["logg | teff"] == 1) and np.all(n_given["unconditional"] == 0)
    assert n_given["random 1-5 inputs"].min() == 1 and n_given["random 1-5 inputs"].max() == 5
    assert n_given["random 32-64 inputs"].min() >= 10  # 17 columns: all the others present
    for _, req, given in fams.values():
        assert not np.isfinite(given[np.arange(req.size), req]).any()


def test_exact_sampler_scores_near_its_floor_and_overconfidence_shows(setup):
    synth, _, test, std = setup
    task = ft.families(test, list(synth.columns), 200, seed=0)["random 1-5 inputs"]
    good = ft.score_family(synth, test, task, std, ft.exact_draw(synth, 0), 400, 0)
    assert good["w1"] < 0.05 and good["pit_ks"] < 0.02 and 0.6 < good["cover68"] < 0.76

    def narrow(given, req, n):
        return synth.sample_exact_conditional(given, req, n, rng=0, std_factor=0.5)

    bad = ft.score_family(synth, test, task, std, narrow, 400, 0)
    assert bad["pit_ks"] > 0.1 and bad["cover68"] < good["cover68"] - 0.15


def test_knn_is_sharp_given_informative_inputs_and_marginal_given_none(setup):
    synth, train, test, std = setup
    fams = ft.families(test, list(synth.columns), 100, seed=0)
    knn = knn_draw(train, k=50, seed=0)
    full = ft.score_family(synth, test, fams["teff | non-labels"], std, knn, 50, 0)
    none = ft.score_family(synth, test, fams["unconditional"], std, knn, 50, 0)
    assert full["crps"] < 0.2 < none["crps"]
    assert none["w1"] < 0.3  # draws from the training marginal


def test_label_flow_learns_a_label():
    pytest.importorskip("zuko")
    from benchmarks.fidelity_yardsticks import LabelFlow

    synth = synthetic_stars_model(4)
    x = synth.table(3000, seed=2, missing=0.1).to_numpy()
    teff = synth.columns.index("teff")
    inputs = np.array([j for j in range(x.shape[1]) if j != teff])
    flow = LabelFlow(x[:2500], teff, inputs, seed=0)
    flow.fit(0.05)
    test = x[2500:][np.isfinite(x[2500:, teff])]
    s = flow.draw(test, 50, seed=0)
    assert s.shape == (len(test), 50)
    err = np.median(np.abs(np.median(s, axis=1) - test[:, teff]))
    assert err < 0.5 * np.nanstd(x[:, teff])


def test_overrides_parse_recipe_keys_and_label_transforms():
    from benchmarks.fidelity import _overrides

    kv = _overrides(
        ["train.step_power=2", "model.embedding_shift=true", "transforms.logg=quantile"]
    )
    assert kv == {
        "model": {"embedding_shift": True},
        "train": {"step_power": 2.0},
        "transforms": {"logg": "quantile"},
    }
    for bad in ("train.nope=1", "transforms.logg=cube", "dim=3"):
        with pytest.raises(SystemExit, match="fidelity: expected"):
            _overrides([bad])


def test_save_and_model_flags_refuse_what_they_cannot_do(tmp_path):
    from benchmarks.fidelity import main

    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="--save .*taken exists"):
        main(["--save", str(tmp_path / "taken")])
    with pytest.raises(SystemExit, match="--model scores a saved model"):
        main(["--model", str(tmp_path / "m"), "train.step_power=2"])
    with pytest.raises(SystemExit, match="--model scores a saved model"):
        main(["--model", str(tmp_path / "m"), "--save", str(tmp_path / "new")])
    for budget in (["--epochs", "3"], ["--minutes", "5"]):  # a saved model has its own
        with pytest.raises(SystemExit, match="--model scores a saved model"):
            main(["--model", str(tmp_path / "m"), *budget])
    (tmp_path / "half.part").mkdir()  # what a --save killed mid-copy leaves
    with pytest.raises(SystemExit, match="half.part is left from an interrupted --save"):
        main(["--save", str(tmp_path / "half")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.part", "taken"]  # nothing new


def test_one_input_probe_refuses_what_it_cannot_score(tmp_path, bimodal_model):
    from benchmarks.fidelity_one_input import main

    folder = str(bimodal_model[1].out_dir())  # a saved model of another table
    with pytest.raises(SystemExit, match="is not a saved model folder"):
        main([str(tmp_path)])
    with pytest.raises(SystemExit, match="--steps must be >= 0"):
        main([folder, "--steps", "-1"])
    with pytest.raises(SystemExit, match="was not trained on the benchmark table"):
        main([folder, "--steps", "0"])
