import re
from pathlib import Path

import pytest

from stardiff.recipe import RecipeError, load_recipe, override, recipe_from_dict

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_recipes_load_and_describe_the_paper_models():
    cal = load_recipe(ROOT / "recipes" / "california.toml")
    assert cal.table_path().exists()
    assert (cal.model.dim, cal.model.n_heads, cal.model.ff_dim, cal.model.n_layers) == (
        32,
        4,
        128,
        2,
    )
    assert (cal.model.head_width, cal.model.head_layers, cal.model.steps) == (64, 2, 100)
    xp = load_recipe(ROOT / "recipes" / "xp_apogee.toml")
    assert (xp.model.dim, xp.model.n_heads, xp.model.ff_dim) == (192, 24, 2048)
    assert (xp.model.head_width, xp.model.head_layers, xp.model.steps) == (512, 5, 120)
    assert len(xp.data.columns) == 118 and len(xp.data.requestable) == 116
    assert xp.train.context == 64 and xp.train.epochs == 10240


def _write(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text,message",
    [
        ('[data]\ntable = "t.parquet"\n[model]\ndims = 3\n', "unknown key 'model.dims'"),
        ('[data]\ntable = "t.parquet"\n[train]\nlr = "fast"\n', "'train.lr' must be float"),
        ('[data]\ntable = "t.parquet"\n[train]\nepochs = 1.5\n', "'train.epochs' must be int"),
        ('[data]\ntable = "t.parquet"\n[train]\nbf16 = 1\n', "'train.bf16' must be bool"),
        ("[model]\ndim = 8\n", "missing required key 'data.table'"),
        ('[data]\ntable = "t.parquet"\n[transforms]\nx = "sqrt"\n', "'transforms.x'"),
        ('[data]\ntable = "t.parquet"\n[model]\ndim = 10\nn_heads = 3\n', "'model.dim'"),
        ('[data]\ntable = "t.parquet"\n[train]\nepochs = 0\n', "'train.epochs' must be an integer"),
        (
            '[data]\ntable = "t.parquet"\n[train]\nnoise_draws = 0\n',
            "'train.noise_draws' must be an integer",
        ),
        ('[data]\ntable = "t.parquet"\n[data]\n', "not valid TOML"),
        ('[data]\ntable = "t.parquet"\ncolumns = "a"\n', "'data.columns' must be a list"),
        (
            '[data]\ntable = "t.parquet"\n[[evaluate.conditional]]\nrequest = "a"\n',
            r"missing required key 'evaluate.conditional\[0\].given'",
        ),
        (
            '[data]\ntable = "t.parquet"\n[[evaluate.conditional]]\nrequest = "a"\n'
            "given = { b = [[2.0, 1.0]] }\n",
            "bins must be",
        ),
        ("bogus = 1\n", "unknown key 'bogus'"),
    ],
)
def test_bad_recipes_give_one_line_errors_naming_the_key(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message) as e:
        load_recipe(_write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "nope.toml")


def test_override_and_defaults():
    r = recipe_from_dict({"data": {"table": "x.parquet"}}, name="demo")
    assert r.out_dir() == Path("runs/demo")
    r2 = override(r, "train", epochs=3, device=None)
    assert r2.train.epochs == 3 and r2.train.device == "cpu"
    with pytest.raises(RecipeError, match="'train.epochs' must be int"):
        override(r, "train", epochs="3")


def test_every_recipe_key_is_documented():
    import dataclasses

    from stardiff import recipe as rmod

    doc = (ROOT / "docs" / "recipes.md").read_text()
    sections = {
        "data": rmod.DataSection,
        "model": rmod.ModelSection,
        "train": rmod.TrainSection,
        "evaluate": rmod.EvaluateSection,
    }
    for section, cls in sections.items():
        assert f"[{section}]" in doc
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in doc, f"{section}.{f.name} is not in docs/recipes.md"


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("train", "grad_clip", -1.0, "'train.grad_clip' must be a number (inf allowed) > 0"),
        ("train", "grad_clip", 0.0, "'train.grad_clip' must be a number (inf allowed) > 0"),
        ("train", "threads", -2, "'train.threads' must be an integer in [0, 4096]"),
        ("train", "lr", 0.0, "'train.lr' must be a finite number in (0, 10]"),
        ("train", "lr", -1e-3, "'train.lr' must be a finite number in (0, 10]"),
        ("train", "lr", float("nan"), "'train.lr' must be a finite number in (0, 10]"),
        ("train", "lr", float("inf"), "'train.lr' must be a finite number in (0, 10]"),
        ("train", "lr_min", 1.0, "'train.lr_min' must be in [0, train.lr]"),
        ("train", "lr_min", -1e-5, "'train.lr_min' must be a finite number in [0, 10]"),
        ("train", "weight_decay", -0.1, "'train.weight_decay' must be a finite number in [0, 100]"),
        ("train", "batch_size", 0, "'train.batch_size' must be an integer in [1, 16777216]"),
        ("train", "batch_size", -8, "'train.batch_size' must be an integer in [1, 16777216]"),
        ("train", "seed", -1, "'train.seed' must be an integer in [0, 9223372036854775807]"),
        ("train", "context", -1, "'train.context' must be an integer in [0, 1048576]"),
        ("train", "checkpoint_every", 0, "'train.checkpoint_every' must be an integer in [1, "),
        ("model", "dim", 0, "'model.dim' must be an integer in [1, 65536]"),
        ("model", "steps", -5, "'model.steps' must be an integer in [1, 100000]"),
        ("model", "beta_start", 0.0, "'model.beta_start' must be a finite number in (0, 1)"),
        ("model", "beta_end", 1.5, "'model.beta_end' must be a finite number in (0, 1)"),
        ("model", "beta_start", 0.2, "'model.beta_start' must be in (0, beta_end)"),
        ("data", "test_rows", -1, "'data.test_rows' must be an integer in [0, 1000000000]"),
        ("data", "split_seed", -3, "'data.split_seed' must be an integer in [0, "),
        ("evaluate", "rows_per_panel", 0, "'evaluate.rows_per_panel' must be an integer in [1, "),
        ("evaluate", "samples", 0, "'evaluate.samples' must be an integer in [1, 10000000]"),
    ],
)
def test_every_number_is_range_checked_naming_its_key(section, key, value, message):
    raw = {"data": {"table": "t.parquet"}}
    raw.setdefault(section, {})[key] = value
    with pytest.raises(RecipeError, match=re.escape(message)):
        recipe_from_dict(raw)


def test_command_line_overrides_are_range_checked_too():
    r = recipe_from_dict({"data": {"table": "t.parquet"}})
    with pytest.raises(RecipeError, match="command line: 'train.epochs' must be an integer"):
        override(r, "train", epochs=0)
    with pytest.raises(RecipeError, match="command line: 'train.seed' must be an integer"):
        override(r, "train", seed=-1)
    assert override(r, "train", grad_clip=float("inf")).train.grad_clip == float("inf")
