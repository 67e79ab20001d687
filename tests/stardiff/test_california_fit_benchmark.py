"""benchmarks.california_fit: its command line (the training itself is a benchmark, not a test)."""

import pytest

from benchmarks.california_fit import main


@pytest.mark.parametrize(
    "argv",
    [
        ["recipes/california.toml", "--threads", "1", "--cli", "train.seed=1"],
        ["--cli", "recipes/california.toml", "train.seed=1", "--threads", "1"],
        ["--threads", "1", "train.seed=1", "--cli"],
    ],
)
def test_overrides_are_read_wherever_they_stand(argv):
    """The recipe and its overrides may come before, between or after the options (all are
    read: --cli then refuses the override in one line, before any training)."""
    with pytest.raises(SystemExit, match="--cli measures the recipe file as it is"):
        main(argv)


def test_an_existing_save_folder_is_refused_before_training(tmp_path):
    with pytest.raises(SystemExit, match=f"--save {tmp_path} exists"):
        main(["--save", str(tmp_path), "train.seed=1"])
