"""The benchmarks' command lines: KEY=VALUE overrides stand anywhere among the options.

Each case is a shuffle of option groups and overrides that stops at a refusal before any
training, so that it checks only how the command line was read (an override argparse left
unread would be 'unrecognized arguments' instead of the refusal).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import california_fit, fidelity, real_stars, train_budget

#: (main, option groups, overrides to choose from, refusal every order must reach)
CASES = {
    "california_fit": (
        california_fit.main,
        [["--cli"], ["--threads", "1"], ["--seeds", "1"], ["--tag", "x"]],
        ["train.seed=1", "model.dropout=0.1", "train.epochs=4"],
        "--cli measures the recipe file as it is",
    ),
    "fidelity": (
        fidelity.main,
        [["--model", "nowhere"], ["--threads", "1"], ["--tasks", "5"], ["--tag", "x"]],
        ["train.seed=1", "model.dim=16", "train.lr=0.001"],
        "--model scores a saved model",
    ),
    "real_stars": (
        real_stars.main,
        [["--table", "/nowhere/stars.parquet"], ["--threads", "1"], ["--tasks", "5"]],
        ["train.seed=1", "model.dim=16", "train.lr=0.001"],
        "no table at /nowhere/stars.parquet",
    ),
    "train_budget": (  # keys [train] does not have: refused before training
        train_budget.main,
        [["--out", "nowhere"]],
        ["nokey=1", "bogus=2", "alsono=3"],
        r"expected a \[train\] KEY=VALUE",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_overrides_are_read_wherever_they_stand(name, data):
    main, options, overrides, refusal = CASES[name]
    chosen = data.draw(st.lists(st.sampled_from(overrides), min_size=1, max_size=3, unique=True))
    groups = data.draw(st.permutations([*options, *([o] for o in chosen)]))
    argv = [token for group in groups for token in group]
    with pytest.raises(SystemExit, match=refusal):
        main(argv)


def test_the_recipe_may_stand_among_the_options_too():
    for argv in (
        ["recipes/california.toml", "--threads", "1", "--cli", "train.seed=1"],
        ["--cli", "recipes/california.toml", "train.seed=1", "--threads", "1"],
    ):
        with pytest.raises(SystemExit, match="--cli measures the recipe file as it is"):
            california_fit.main(argv)


def test_an_existing_save_folder_is_refused_before_training(tmp_path):
    with pytest.raises(SystemExit, match=f"--save {tmp_path} exists"):
        california_fit.main(["--save", str(tmp_path), "train.seed=1"])
