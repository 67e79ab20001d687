import json

import polars as pl
import pytest

import stardiff
from stardiff.cli import main
from tests.stardiff.conftest import bimodal_table

RECIPE = """
name = "cli"
[data]
table = "table.parquet"
[model]
dim = 16
n_heads = 2
ff_dim = 32
n_layers = 1
head_width = 16
head_layers = 2
steps = 20
[train]
epochs = 1
batch_size = 128
context = 2
checkpoint_every = 1
out = "{out}"
[evaluate]
samples = 200
rows_per_panel = 20
[[evaluate.conditional]]
request = "y"
given = {{ x = [[-1.0, 0.0], [0.0, 1.0]] }}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    bimodal_table(500).write_parquet(tmp / "table.parquet")
    out = tmp / "model"
    (tmp / "r.toml").write_text(RECIPE.format(out=out))
    assert main(["fit", str(tmp / "r.toml"), "--quiet"]) == 0
    return tmp, out


def test_fit_writes_model_metrics_and_figures(trained):
    tmp, out = trained
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "metrics.csv",
        "checkpoint",
        "unconditional.png",
        "conditional_0_y.png",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]


def test_sample_given_table_joint_and_info(trained, capsys):
    tmp, out = trained
    f = tmp / "s.parquet"
    assert (
        main(
            [
                "sample",
                str(out),
                "--given",
                "x=1.0",
                "--request",
                "y",
                "z",
                "-n",
                "30",
                "--out",
                str(f),
            ]
        )
        == 0
    )
    df = pl.read_parquet(f)
    assert df.columns == ["y", "z"] and df.height == 30
    pl.DataFrame({"x": [0.0, 1.0], "other": [1, 2]}).write_parquet(tmp / "given.parquet")
    assert (
        main(
            [
                "sample",
                str(out),
                "--table",
                str(tmp / "given.parquet"),
                "--request",
                "y",
                "-n",
                "5",
                "--out",
                str(f),
            ]
        )
        == 0
    )
    df = pl.read_parquet(f)
    assert df.columns == ["row", "y"] and df["row"].to_list() == [0] * 5 + [1] * 5
    assert (
        main(["sample", str(out), "--request", "x", "y", "--joint", "-n", "8", "--out", str(f)])
        == 0
    )
    assert pl.read_parquet(f).shape == (8, 2)
    capsys.readouterr()
    assert main(["sample", str(out), "--given", "x=0.5", "--request", "y", "-n", "20"]) == 0
    assert "median" in capsys.readouterr().out
    for how in (
        ["--sampler", "ancestral"],
        ["--sampler", "ddim", "--steps", "5"],
        ["--steps", "7"],
    ):
        argv = ["sample", str(out), "--given", "x=0.5", "--request", "y", "-n", "20", "--out"]
        assert main([*argv, str(f), *how]) == 0 and pl.read_parquet(f).shape == (20, 1)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vocabulary"] == ["x", "y", "z"] and info["n_parameters"] > 0
    assert info["training"]["history"]["epochs"] >= 1
    assert info == json.loads(json.dumps(stardiff.describe(out)))  # the CLI is one API call


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sample", "{out}", "--given", "q=1", "--request", "y"], "unknown column 'q'"),
        (["sample", "{out}", "--given", "x=abc", "--request", "y"], "'abc' is not a number"),
        (["sample", "{out}", "--given", "x", "--request", "y"], "COL=VALUE"),
        (["sample", "{tmp}/nope", "--request", "y"], "model folder not found"),
        (["fit", "{tmp}/missing.toml"], "cannot read recipe"),
        (["fit", "{tmp}/r.toml", "--quiet"], "not empty"),
        (
            ["sample", "{out}", "--request", "y", "--sampler", "ancestral", "--steps", "5"],
            "ancestral sampler runs all",
        ),
        (["sample", "{out}", "--request", "y", "--steps", "0"], "argument --steps: must be"),
        (["sample", "{out}", "--request", "y", "--steps", "5000"], "steps must be in 1.."),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained, capsys, argv, message):
    tmp, out = trained
    argv = [a.format(out=out, tmp=tmp) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("stardiff")
