"""Shared fixtures: small tables, small recipes and one small trained model."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from stardiff.recipe import recipe_from_dict

TINY_MODEL = {
    "dim": 16,
    "n_heads": 2,
    "ff_dim": 32,
    "n_layers": 1,
    "dropout": 0.0,
    "head_width": 32,
    "head_layers": 2,
    "steps": 40,
}


#: A tiny model's recipe, for the command-line tests (format with name, out, epochs, extra,
#: samples; ``extra`` goes at the end of ``[train]``).
TINY_RECIPE = """
name = "{name}"
[data]
table = "table.parquet"
test_rows = 60
[model]
dim = 16
n_heads = 2
ff_dim = 32
n_layers = 1
dropout = 0.0
head_width = 16
head_layers = 2
steps = 20
[train]
epochs = {epochs}
batch_size = 64
context = 2
checkpoint_every = 1
threads = 1
out = "{out}"
{extra}
[evaluate]
samples = {samples}
"""


def bimodal_table(n: int = 4000, seed: int = 0) -> pl.DataFrame:
    """y = ±x + noise: given x, y is bimodal at ±x; z is an unrelated column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rng.choice([-1.0, 1.0], size=n) * x + 0.2 * rng.normal(size=n)
    return pl.DataFrame({"x": x, "y": y, "z": rng.normal(size=n)})


def make_recipe(
    tmp_path, table: pl.DataFrame, *, name="tiny", model=None, train=None, data=None, **extra
):
    """Write ``table`` to Parquet beside a recipe built from dictionaries."""
    path = tmp_path / f"{name}.parquet"
    table.write_parquet(path)
    raw = {
        "data": {"table": str(path), "validation_fraction": 0.1, **(data or {})},
        "model": {**TINY_MODEL, **(model or {})},
        "train": {
            "epochs": 2,
            "batch_size": 256,
            "lr": 3e-3,
            "cycle_epochs": 1000,
            "context": 3,
            "checkpoint_every": 1,
            "out": str(tmp_path / f"{name}-model"),
            **(train or {}),
        },
        **extra,
    }
    return recipe_from_dict(raw, name=name)


@pytest.fixture(scope="session")
def bimodal_model(tmp_path_factory):
    """A small model trained to output y given x on the bimodal table (~13 s on one core; 40
    epochs learn the two modes as well as 60 did for these tests' thresholds)."""
    from stardiff.train import fit

    tmp = tmp_path_factory.mktemp("bimodal")
    recipe = make_recipe(
        tmp,
        bimodal_table(8000).select("x", "y"),
        name="bimodal",
        model={"head_width": 64, "steps": 100},
        data={"requestable": ["y"]},
        train={
            "epochs": 40,
            "batch_size": 128,
            "lr": 5e-3,
            "cycle_epochs": 40,
            "context": 1,
            "checkpoint_every": 40,
            "noise_draws": 8,
        },
    )
    return fit(recipe, progress=False, figures=False), recipe


@pytest.fixture(scope="session")
def api_model(tmp_path_factory):
    """A quickly trained three-column model for API tests (quality not checked)."""
    from stardiff.train import fit

    tmp = tmp_path_factory.mktemp("api")
    recipe = make_recipe(tmp, bimodal_table(1000), name="api", train={"epochs": 2, "context": 2})
    return fit(recipe, progress=False, figures=False), recipe
