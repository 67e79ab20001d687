"""benchmarks.real_stars runs end to end on a tiny table of its format; refusals are one line."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import real_stars as rs
from stardiff.model.samplers import SAMPLERS


def _table(path, n=360, seed=0):
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 6500, n)
    logg = np.where(teff < 5200, rng.uniform(1, 3.5, n), rng.uniform(3.8, 4.6, n))
    cols = {
        f"xp{i:02d}": np.sin(i / 9 + teff / 2000) + 0.01 * rng.normal(size=n) for i in range(57)
    }
    cols |= {"bprp": 7000 / teff - 0.4, "g": rng.uniform(9, 15, n), "jh": 0.5 - logg / 20}
    cols |= {"jk": rng.normal(0.6, 0.1, n), "teff": teff, "logg": logg}
    cols |= {"fe_h": rng.normal(-0.2, 0.3, n), "alpha_m": rng.normal(0.1, 0.1, n)}
    cols |= {f"{c}_err": np.abs(0.01 * cols[c]) + 1e-3 for c in ("xp00", "xp01", "teff")}
    cols["split"] = np.where(np.arange(n) % 6 == 0, "test", "train")
    pl.DataFrame(cols).with_columns(pl.col("fe_h").fill_nan(None)).write_parquet(path)
    return path


def test_runs_on_a_tiny_slice_and_records_every_family(tmp_path):
    table = _table(tmp_path / "stars.parquet")
    record = tmp_path / "r.jsonl"
    args = ["--table", str(table), "--epochs", "1", "--tasks", "12", "--draws", "16"]
    args += ["--threads", "1", "--record", str(record), "--quiet", "--figures", str(tmp_path)]
    args += ['train.request_weights={"teff": 4.0}', "train.all_inputs=0.25"]
    args += ["model.periodic_features=4", "--also-sampler", "dpm2:4", "--also-sampler", "ddim:4:1"]
    try:
        import zuko  # noqa: F401

        args += ["--flow-minutes", "0.01"]
    except ImportError:
        args += ["--no-flow"]
    assert rs.main(args) == 0
    rec = json.loads(record.read_text())
    assert rec["overrides"]["train"] == {"request_weights": {"teff": 4.0}, "all_inputs": 0.25}
    assert rec["overrides"]["model"] == {"periodic_features": 4}
    fams = set(rec["results"])
    assert {f"{c} | non-labels" for c in rs.LABELS} <= fams
    assert {"logg | teff", "random 1-5 inputs", "random 32-64 inputs"} <= fams
    for r in rec["results"]["teff | non-labels"].values():
        assert set(rs.SCORES) <= set(r) and r["n"] == 12
    assert set(rec["unconditional_w1"]["model"]) == set(rs.UNCONDITIONAL)
    assert set(rec["unconditional_w1"]["model:dpm2:4"]) == set(rs.UNCONDITIONAL)
    assert rec["results"]["logg | teff"]["model:dpm2:4"]["n"] == 12
    assert rec["results"]["logg | teff"]["model:ddim:4:1"]["n"] == 12
    assert rec["model"]["epochs"] == 1
    assert (tmp_path / "real_stars_kiel.png").stat().st_size > 0


def test_the_inputs_errors_are_read_when_the_data_keys_say_so(tmp_path):
    table = _table(tmp_path / "stars.parquet")
    record = tmp_path / "r.jsonl"
    args = ["--table", str(table), "--epochs", "1", "--tasks", "12", "--draws", "16", "--quiet"]
    args += ["--threads", "1", "--record", str(record), "--no-flow", 'data.errors="{}_err"']
    assert rs.main(args + ["--also-sampler", "dpm2:4"]) == 0
    rec = json.loads(record.read_text())
    assert rec["overrides"]["data"] == {"errors": "{}_err"}
    assert rec["model"]["error_columns"] == ["teff", "xp00", "xp01"]
    assert rec["results"]["teff | non-labels"]["model:dpm2:4"]["n"] == 12
    assert set(rec["unconditional_w1"]["model"]) == set(rs.UNCONDITIONAL)


def test_save_keeps_the_model_that_was_scored(tmp_path):
    from stardiff import load

    table = _table(tmp_path / "stars.parquet")
    record, kept = tmp_path / "r.jsonl", tmp_path / "kept"
    args = ["--table", str(table), "--epochs", "1", "--tasks", "8", "--draws", "8", "--quiet"]
    args += ["--threads", "1", "--record", str(record), "--no-flow", "--save", str(kept)]
    args += ['train.input_weights={"teff": 8.0}', "train.weights_all_inputs_only=true"]
    assert rs.main(args) == 0
    model = load(kept)
    assert model.meta["recipe"]["train"]["input_weights"] == {"teff": 8.0}
    assert not kept.with_name("kept.part").exists()
    with pytest.raises(SystemExit, match="--save .* exists; name a new folder"):
        rs.main(args)  # never over a folder that is there


@pytest.mark.parametrize(
    "args, message",
    [
        (["--minutes", "nan"], "--minutes must be a positive number"),
        (["--tasks", "0"], "--tasks must be positive"),
        (["model.nope=3"], "expected data.KEY=VALUE"),
        (["data.table=x.parquet"], "expected data.KEY=VALUE"),
        (["--table", "missing.parquet"], "no table at missing.parquet"),
        (["--also-sampler", "euler"], "no sampler 'euler'"),
        (["--also-sampler", "dpm2:0"], "steps must be a positive integer"),
        (["--also-sampler", "dpm2:20:1"], "eta applies to the ddim sampler only"),
        (["--also-sampler", "ddim:20:2"], "eta must be a number in (0, 1]"),
    ],
)
def test_refusals_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        rs.main(args)
    text = str(e.value)
    assert message in text and "\n" not in text


def test_a_recipes_label_keys_carry_over_to_this_tables_names(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[model]\ndim = 16\n[train]\nepochs = 3\nthreads = 2\n"
        'request_weights = { teff = 32, m_h = 8, "rp*" = 0.5 }\ninput_weights = { m_h = 4 }\n'
        '[transforms]\nlogg = "asinh"\n'
    )
    model, train, transforms = rs.recipe_sections(recipe)
    assert model == {"dim": 16} and "threads" not in train and "epochs" not in train
    assert train["request_weights"] == {"teff": 32, "fe_h": 8, "alpha_m": 8}
    assert train["input_weights"] == {"fe_h": 4, "alpha_m": 4}
    assert transforms == {"logg": "asinh"}


@settings(max_examples=300, deadline=None)
@given(
    name=st.one_of(st.sampled_from(SAMPLERS), st.text(max_size=8)),
    steps=st.one_of(st.none(), st.text(max_size=4), st.integers(-3, 500).map(str)),
    eta=st.one_of(
        st.none(), st.text(max_size=4), st.floats(-1, 2).map(str), st.sampled_from(["1", "0"])
    ),
)
def test_any_also_sampler_spec_is_parsed_or_refused_in_one_line(name, steps, eta):
    spec = name if steps is None else f"{name}:{steps}"
    if eta is not None:
        spec = f"{name}:{steps or ''}:{eta}"
    steps_ok = not steps or (steps.isascii() and steps.isdigit() and int(steps) > 0)
    try:
        eta_value = float(eta) if eta else 0.0
    except ValueError:
        eta_value = float("nan")
    eta_ok = eta is None or (name == "ddim" and 0 < eta_value <= 1)  # "a:1:" is refused
    if name in SAMPLERS and ":" not in name and steps_ok and eta_ok:
        assert rs._sampler_spec(spec) == (name, int(steps) if steps else None, eta_value)
        return
    with pytest.raises(SystemExit) as e:
        rs._sampler_spec(spec)
    text = str(e.value)
    assert text.startswith(f"real_stars: --also-sampler {spec!r}") and "\n" not in text
