"""Nothing lost, round two (issue 26), tested as classes, not examples.

Each class of the issue has a property test that generates cases of the class (output paths,
recipe values, command lines, table cells, resumed recipes) and asserts the contract: the right
result, or exit status 2 with one line and no traceback, and no file outside the toolkit's own
changed. The issue's own examples follow each class as plain tests.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stardiff.cli import main
from tests.stardiff.conftest import TINY_RECIPE, bimodal_table
from tests.trees import tree

ROOT = Path(__file__).resolve().parents[2]
PROPERTY = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

RECIPE = TINY_RECIPE.replace("{name}", "rel").replace("{samples}", "100")


def _recipe(folder: Path, out: str, *, epochs: int = 2, name: str = "r.toml", extra="") -> Path:
    (folder / name).write_text(RECIPE.format(out=out, epochs=epochs, extra=extra))
    return folder / name


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A user's folder (table, notes, recipe) and a 2-epoch model fitted from it."""
    tmp = tmp_path_factory.mktemp("reliability")
    bimodal_table(300).write_parquet(tmp / "table.parquet")
    (tmp / "notes.md").write_text("my notes\n")
    assert main(["fit", str(_recipe(tmp, "model")), "--quiet", "--no-figures"]) == 0
    return tmp, tmp / "model"


def one_line_error(capsys, command: str) -> str:
    """The one error line a refused command printed last (notes and warnings may precede it)."""
    text = capsys.readouterr().err
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert errors[0].startswith(f"stardiff {command}: error: "), errors
    return errors[0]


def scratch(work) -> Path:
    """A fresh folder per generated example (hypothesis runs many in one test)."""
    return Path(tempfile.mkdtemp(dir=work[0]))


# ================================================================ 1. outputs never replace
# what the toolkit did not write, never write onto an input, follow their extension
def _user_file(folder: Path, name: str, kind: str) -> Path:
    """A user's file named ``name``: random bytes, a Parquet or a CSV the toolkit did not write."""
    p = folder / name
    if kind == "bytes":
        p.write_bytes(b"thesis notes \x00\x01")
    elif kind == "parquet":
        pl.DataFrame({"y": [1.0, 2.0]}).write_parquet(p)
    else:
        p.write_text("mine,theirs\n1,2\n")
    return p


OUT_KINDS = ["input", "input_dotdot", "input_link", "input_hardlink", "user_file", "folder",
             "extension"]  # fmt: skip


def _out_path(folder: Path, table: Path, kind: str, suffix: str, content: str) -> str:
    """An output path of the class ``kind`` (all of them to be refused)."""
    if kind == "input":
        return str(table)
    if kind == "input_dotdot":
        (folder / "sub").mkdir(exist_ok=True)
        return str(folder / "sub" / ".." / table.name)
    if kind == "input_link":
        (folder / "link.parquet").symlink_to(table)
        return str(folder / "link.parquet")
    if kind == "input_hardlink":
        os.link(table, folder / "hard.parquet")
        return str(folder / "hard.parquet")
    if kind == "user_file":
        return str(_user_file(folder, f"results{suffix}", content))
    if kind == "folder":
        (folder / "results").mkdir()
        _user_file(folder / "results", "plot.png", "bytes")
        return str(folder / "results")
    return str(folder / f"draws{suffix}.txt")  # a name whose format is not known


@PROPERTY
@given(
    command=st.sampled_from(["sample", "sample-table", "sample-joint", "predict"]),
    kind=st.sampled_from(OUT_KINDS),
    suffix=st.sampled_from([".parquet", ".csv"]),
    content=st.sampled_from(["bytes", "parquet", "csv"]),
)
def test_file_outputs_never_replace_an_input_or_a_users_file(
    work, capsys, command, kind, suffix, content
):
    folder = scratch(work)
    table = folder / "given.parquet"
    bimodal_table(40, seed=3).write_parquet(table)
    out = _out_path(folder, table, kind, suffix, content)
    before = tree(folder)
    base = ["sample", str(work[1]), "--request", "y", "-n", "3"]
    argv = {
        "sample": base,
        "sample-table": [*base, "--table", str(table)],
        "sample-joint": ["sample", str(work[1]), "--request", "x", "y", "--joint", "-n", "3"],
        "predict": ["predict", str(work[1]), str(table), "--request", "y", "-n", "3", "--quiet"],
    }[command]
    assert main([*argv, "--out", out]) == 2
    msg = one_line_error(capsys, argv[0])
    assert out in msg or Path(out).name in msg
    assert tree(folder) == before  # nothing changed, nothing added
    shutil.rmtree(folder)


@PROPERTY
@given(
    names=st.lists(
        st.sampled_from(
            ["thesis_notes.txt", "plot.png", "metrics.csv", "config.json", "rows.safetensors",
             "unconditional.png", "metrics.json", "checkpoint", "stars.csv"]
        ),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    command=st.sampled_from(["fit", "fit-overwrite", "evaluate"]),
)  # fmt: skip
def test_folder_outputs_refuse_a_folder_holding_anything_not_their_own(
    work, capsys, names, command
):
    """A user's files — also under the names the toolkit writes — are never replaced."""
    folder = scratch(work)
    out = folder / "out"
    out.mkdir()
    for name in names:
        if name == "checkpoint":
            (out / name).mkdir()
            (out / name / "state.json").write_text('{"mine": 1}')
        else:
            _user_file(out, name, "csv" if name.endswith(".csv") else "bytes")
    before = tree(folder)
    if command == "evaluate":
        argv = ["evaluate", str(work[1]), "--table", str(work[0] / "table.parquet")]
        argv += ["--out", str(out), "--no-figures", "--rows", "5", "--samples", "5"]
    else:
        argv = ["fit", str(work[0] / "r.toml"), "--out", str(out), "--quiet", "--no-figures"]
        argv += ["--overwrite"] if command == "fit-overwrite" else []
    assert main(argv) == 2
    msg = one_line_error(capsys, command.split("-")[0])
    assert "did not write" in msg and any(n in msg for n in names)
    assert tree(folder) == before
    shutil.rmtree(folder)


def test_predict_onto_its_input_however_spelled_is_refused(work, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    bimodal_table(50).write_parquet(data / "in.parquet")
    before = tree(tmp_path)
    for cwd, table, out in [
        (data, "in.parquet", "in.parquet"),
        (tmp_path, "data/in.parquet", "./data/../data/in.parquet"),
    ]:
        monkeypatch.chdir(cwd)
        argv = ["predict", str(work[1]), table, "--request", "y", "-n", "3"]
        assert main([*argv, "--out", out, "--quiet"]) == 2
        assert "is the input" in one_line_error(capsys, "predict")
    assert tree(tmp_path) == before


def test_the_format_follows_the_extension_and_reruns_replace_their_own(work, tmp_path, capsys):
    model = str(work[1])
    for name in ["x.csv", "x.parquet"]:
        for _ in range(2):  # the second run replaces the toolkit's own file
            argv = ["sample", model, "--request", "y", "-n", "4", "--out", str(tmp_path / name)]
            assert main(argv) == 0
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == '"y"'
    assert pl.read_csv(tmp_path / "x.csv").height == 4
    assert pl.read_parquet(tmp_path / "x.parquet").height == 4
    rows = tmp_path / "rows.csv"
    rows.write_text("x\n0.5\n-0.5\n")
    argv = ["predict", model, str(rows.with_suffix(".parquet")), "--request", "y", "-n", "4"]
    pl.read_csv(rows).write_parquet(rows.with_suffix(".parquet"))
    for _ in range(2):
        assert main([*argv, "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    assert pl.read_csv(tmp_path / "p.csv").columns[:2] == ["no_input", "y_median"]
    assert main([*argv, "--out", str(tmp_path / "p2.csv"), "--samples", "--quiet"]) == 2
    assert "need a .parquet file" in one_line_error(capsys, "predict")
    capsys.readouterr()


def test_predict_never_empties_a_folder_that_has_its_work_folders_name(work, tmp_path, capsys):
    mine = tmp_path / ".p.parquet.predict"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    argv = ["predict", str(work[1]), str(work[0] / "table.parquet"), "--request", "y", "-n", "3"]
    assert main([*argv, "--out", str(tmp_path / "p.parquet"), "--quiet"]) == 2
    assert "did not write (notes.txt)" in one_line_error(capsys, "predict")
    assert (mine / "notes.txt").read_text() == "mine"


def test_a_killed_sample_leaves_nothing_that_the_next_run_does_not_remove(work, tmp_path):
    out = tmp_path / "s.parquet"
    (tmp_path / ".s.parquet.part-999999").write_bytes(b"half")  # a kill at the rename
    (tmp_path / ".s.parquet.lock").write_text("{}")  # its lock (released by the kernel)
    assert main(["sample", str(work[1]), "--request", "y", "-n", "3", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]


def test_a_kill_between_the_weights_and_config_renames_is_found_and_resume_repairs(
    work, tmp_path, capsys, monkeypatch
):
    import stardata.io

    out = tmp_path / "m"
    shutil.copytree(work[1], out)
    recipe = _recipe(tmp_path, str(out), epochs=3, name="k.toml")
    shutil.copy(work[0] / "table.parquet", tmp_path / "table.parquet")
    real = os.replace

    class Killed(BaseException):
        pass

    def replace(src, dst):  # the kill: new weights in place, config.json not yet
        if Path(dst).name == "config.json" and Path(src).name.startswith(".config.json.part"):
            raise Killed
        return real(src, dst)

    monkeypatch.setattr(stardata.io.os, "replace", replace)
    with pytest.raises(Killed):
        main(["fit", str(recipe), "--resume", "--quiet", "--no-figures"])
    monkeypatch.undo()
    assert main(["info", str(out)]) == 2  # info never contradicts the weights
    assert "is not the config model.safetensors was saved with" in one_line_error(capsys, "info")
    assert main(["fit", str(recipe), "--resume", "--quiet", "--no-figures"]) == 0
    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["training"]["epochs_done"] == 3 and info["training"]["history"]["epochs"] == 3


def test_writer_errors_are_the_real_oserror_and_leave_nothing(tmp_path, monkeypatch):
    import errno

    import pyarrow as pa
    import pyarrow.parquet as pq

    from stardata.io import LazyWriter

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x.parquet"))

    monkeypatch.setattr(pq, "ParquetWriter", refuse)
    with pytest.raises(OSError, match="Read-only"), LazyWriter(tmp_path / "x.parquet", 10) as w:
        w.write(pa.table({"a": [1.0]}))
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_is_one_line(work, capsys):
    if os.access("/sys", os.W_OK) and not Path("/sys").is_dir():
        pytest.skip("/sys is writable here")
    argv = ["sample", str(work[1]), "--request", "y", "-n", "3", "--out", "/sys/x.parquet"]
    assert main(argv) == 2
    assert "/sys/x.parquet" in one_line_error(capsys, "sample")


# ================================================================ 2. every number is checked
# where it enters: recipe keys, flags, API arguments, table cells
BAD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, -1e300, 0.5]
BAD_INTS = [-1, 0, 2**62, 10**12, 1]


def _numeric_keys():
    from stardiff.recipe import numeric_keys

    return numeric_keys()


def _toml(v) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(key=st.sampled_from(_numeric_keys()), data=st.data())
def test_every_recipe_number_is_in_its_range_or_refused_naming_its_key(key, data):
    """NaN, ±inf, negative, zero, absurdly large: in the key's documented range, or one line."""
    from stardiff.recipe import RANGES, RecipeError, load_recipe

    section, name = key.split(".")
    is_int = RANGES[key].integer
    value = data.draw(st.sampled_from(BAD_INTS if is_int else BAD_FLOATS))
    text = '[data]\ntable = "t.parquet"\n'
    if section != "data":
        text += f"[{section}]\n"
    text += f"{name} = {_toml(value)}\n"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.toml").write_text(text)
        try:
            load_recipe(Path(d) / "r.toml")
        except RecipeError as e:
            msg = str(e)
            assert f"'{key}'" in msg and "\n" not in msg
            assert not RANGES[key].contains(value) or "must be in" in msg or "needs" in msg
            return
    assert RANGES[key].contains(value), f"{key} = {value} loaded"


def test_every_number_key_has_a_documented_range():
    from stardiff.recipe import RANGES

    doc = (ROOT / "docs" / "recipes.md").read_text()
    assert set(RANGES) == set(_numeric_keys())
    assert "## Ranges" in doc
    for key in RANGES:
        assert f"`{key}`" in doc, f"{key} has no range in docs/recipes.md"


FLAG_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e300", "-5", "abc", "1.5", "1e20", "2"]
FLAGS = {
    "sample": ["-n", "--seed", "--steps"],
    "predict": ["-n", "--seed", "--chunk-rows", "--workers", "--threads", "--quantiles"],
    "evaluate": ["--rows", "--samples", "--tasks", "--seed"],
    "fit": ["--epochs", "--minutes", "--seed"],
    "distill": ["--steps", "--batches", "--minutes", "--seed"],
}


@PROPERTY
@given(
    command=st.sampled_from(sorted(FLAGS)),
    data=st.data(),
    value=st.sampled_from(FLAG_VALUES),
)
def test_every_number_flag_is_checked_before_any_work(work, capsys, command, data, value):
    """A bad number is one line naming the flag, nothing written; a good one does the work."""
    folder = scratch(work)
    flag = data.draw(st.sampled_from(FLAGS[command]))
    if flag == "--minutes" and value in ("2", "1.5"):
        value = "0.001"  # a valid budget, kept short
    model, table = str(work[1]), str(work[0] / "table.parquet")
    if command == "fit":
        shutil.copy(table, folder / "table.parquet")
        argv = ["fit", str(_recipe(folder, "m", epochs=1)), "--quiet", "--no-figures"]
    elif command == "sample":
        argv = ["sample", model, "--request", "y", "-n", "3", "--out", str(folder / "s.parquet")]
    elif command == "distill":  # a copy: a student written into the shared model is not ours
        shutil.copytree(model, folder / "m")
        argv = ["distill", str(folder / "m"), "--table", table, "--batches", "2", "--quiet"]
    elif command == "predict":
        argv = ["predict", model, table, "--request", "y", "-n", "3", "--chunk-rows", "64"]
        argv += ["--out", str(folder / "p.parquet"), "--quiet"]
    else:
        argv = ["evaluate", model, "--table", table, "--out", str(folder / "e"), "--no-figures"]
        argv += ["--rows", "5", "--samples", "5", "--tasks", "0"]
    before = tree(folder)
    rc = main([*argv, flag, value])
    if rc == 2:
        msg = one_line_error(capsys, command)
        assert flag in msg or "steps must be" in msg or "chunk_rows" in msg, msg
        assert tree(folder) == before
    else:
        assert rc == 0, capsys.readouterr().err
        capsys.readouterr()
    shutil.rmtree(folder)


CELLS = [math.nan, math.inf, -math.inf, 1e300, -1e300, 3e38, 1e5, -7.0]


@PROPERTY
@given(
    cell=st.sampled_from(CELLS),
    row=st.integers(0, 199),
    column=st.sampled_from(["x", "z"]),
    command=st.sampled_from(["predict", "sample", "evaluate"]),
)
def test_a_bad_table_cell_is_used_rightly_or_named_with_its_absolute_row(
    work, capsys, cell, row, column, command
):
    folder = scratch(work)
    t = bimodal_table(200, seed=11)
    bad = pl.when(pl.int_range(200) == row).then(cell).otherwise(pl.col(column))
    t = t.with_columns(bad.alias(column))
    path = folder / ("t.csv" if command == "sample" else "t.parquet")
    if command == "sample":
        t.write_csv(path)
    else:
        t.write_parquet(path)
    model = str(work[1])
    argv = {
        "predict": ["predict", model, str(path), "--request", "y", "-n", "4", "--chunk-rows", "64",
                    "--out", str(folder / "p.parquet"), "--quiet"],
        "sample": ["sample", model, "--table", str(path), "--request", "y", "-n", "4", "--out",
                   str(folder / "s.parquet")],
        "evaluate": ["evaluate", model, "--table", str(path), "--out", str(folder / "e"),
                     "--no-figures", "--rows", "200", "--samples", "4", "--tasks", "0",
                     "--split", "all"],
    }[command]  # fmt: skip
    rc = main(argv)
    if rc == 2:
        msg = one_line_error(capsys, command)
        assert f"column {column!r}" in msg and f"row(s) {row}" in msg, msg
    else:
        assert rc == 0
        err = capsys.readouterr().err
        if math.isinf(cell):
            assert f"column {column!r} holds 1 infinite value(s), e.g. in row {row}" in err
        if command == "predict":
            p = pl.read_parquet(folder / "p.parquet")
            assert p.height == 200 and np.isfinite(p["y_median"].to_numpy()).all()
        if command == "evaluate":
            res = json.loads((folder / "e" / "metrics.json").read_text())
            assert res["columns"]["y"]["crps_norm"] is not None
    shutil.rmtree(folder)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sample", "{m}", "--request", "x", "y", "--joint", "-n", "-5"], "argument -n: must be"),
        (["predict", "{m}", "{t}", "--request", "y", "--workers", "0", "--out", "{o}"],
         "argument --workers: must be an integer in [1, 4096], got '0'"),
        (["predict", "{m}", "{t}", "--request", "y", "--workers", "-2", "--out", "{o}"],
         "argument --workers: must be"),
        (["fit", "{r}", "--minutes", "inf"], "argument --minutes: must be a finite number"),
        (["fit", "{r}", "--minutes", "nan"], "argument --minutes: must be a finite number"),
    ],
)  # fmt: skip
def test_the_issues_flag_examples(work, tmp_path, capsys, argv, message):
    tmp, model = work
    subs = dict(m=model, t=tmp / "table.parquet", o=tmp_path / "p.parquet", r=tmp / "r.toml")
    assert main([a.format(**subs) for a in argv]) == 2
    assert message in one_line_error(capsys, argv[0])


@pytest.mark.parametrize(
    "line,message",
    [
        ("subset_power = nan", "'train.subset_power' must be a finite number in (0, 100], got nan"),
        ("step_power = nan", "'train.step_power' must be a finite number"),
        ("time_budget = nan", "'train.time_budget' must be a finite number in [0, 1e+06]"),
        ("time_budget = inf", "'train.time_budget' must be a finite number"),
        ("lr = 1e300", "'train.lr' must be a finite number in (0, 10]"),
    ],
)
def test_the_issues_recipe_examples(work, tmp_path, capsys, line, message):
    shutil.copy(work[0] / "table.parquet", tmp_path / "table.parquet")
    recipe = _recipe(tmp_path, "m", extra=line)
    assert main(["fit", str(recipe), "--quiet"]) == 2
    assert message in one_line_error(capsys, "fit")
    assert not (tmp_path / "m").exists()


def test_api_arguments_are_checked_where_they_enter(work):
    import stardiff
    from stardiff.predict import PredictError, predict

    model = stardiff.load(work[1])
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, "):
        model.sample_joint({}, ["x", "y"], -5)
    with pytest.raises(PredictError, match="seed must be an integer"):
        predict(model, {"x": [0.5]}, "y", seed=-1)
    with pytest.raises(PredictError, match="workers must be an integer"):
        stardiff.predict.predict_catalog(model, "nowhere", ["y"], "out", workers=0)
    with pytest.raises(ValueError, match="given: column 'x', row\\(s\\) 1: 1e\\+300 lies"):
        model.sample({"x": [0.1, 1e300]}, "y", 3)
    for seed in (-1, 1.5, 2**70):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, "):
            model.sample({}, "y", 3, seed=seed)
    with pytest.raises(ValueError, match=r"eta must be a finite number in \[0, 1\], got inf"):
        model.sample({}, "y", 3, sampler="ddim", eta=math.inf)
    with pytest.raises(stardiff.errors.RecipeError, match="--minutes must be"):
        stardiff.fit(work[0] / "r.toml", minutes=math.inf)


# ================================================================ 3. resume is honest
RECIPE_KEYS = [
    "model.dim", "model.steps", "model.dropout", "data.test_rows", "data.validation_fraction",
    "train.batch_size", "train.seed", "train.context", "train.ema", "train.subset_power",
    "train.epochs", "train.lr", "train.lr_min", "train.weight_decay", "train.grad_clip",
    "train.time_budget", "train.checkpoint_every", "train.threads", "evaluate.samples",
]  # fmt: skip


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    key=st.sampled_from(RECIPE_KEYS),
    factor=st.sampled_from([0.5, 2.0, 3.0]),
    done=st.integers(1, 10),
)
def test_a_resumed_recipe_change_is_recorded_with_its_epoch_or_refused(key, factor, done):
    from stardiff.recipe import RANGES, RecipeError, recipe_from_dict
    from stardiff.train.resume import CHANGEABLE, recipe_changes

    base = {"data": {"table": "t.parquet"}, "train": {"epochs": 10, "time_budget": 0.0}}
    before = recipe_from_dict(base)
    section, name = key.split(".")
    old = getattr(getattr(before, section), name)
    new = type(old)(old * factor) if old else type(old)(1)
    if new == old or not RANGES[key].contains(new):
        return
    raw = json.loads(json.dumps(base))
    raw.setdefault(section, {})[name] = new
    try:
        after = recipe_from_dict(raw)
    except RecipeError:
        return  # a recipe that would be refused anyway
    try:
        changes = recipe_changes(before.to_dict(), after.to_dict(), done)
    except RecipeError as e:
        msg = str(e)
        assert f"'{key}'" in msg and "\n" not in msg
        assert (
            key not in CHANGEABLE
            or (key == "train.epochs" and new < done)
            or (key == "train.time_budget")
        )
        return
    if key.startswith("evaluate."):
        assert changes == []
    else:
        assert key in CHANGEABLE
        assert changes == [{"key": key, "from": old, "to": new, "epoch": done + 1}]


def test_resume_records_a_changed_learning_rate_and_uses_it(work, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(work[1], out)
    shutil.copy(work[0] / "table.parquet", tmp_path / "table.parquet")
    recipe = _recipe(tmp_path, str(out), epochs=3, extra="lr = 1e-4")
    assert main(["fit", str(recipe), "--resume", "--quiet", "--no-figures"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"]["train"]["lr"] == 1e-4
    changes = {c["key"]: c for c in cfg["training"]["changes"]}
    assert changes["train.lr"] == {"key": "train.lr", "from": 5e-3, "to": 1e-4, "epoch": 3}
    assert changes["train.epochs"]["epoch"] == 3
    lrs = pl.read_csv(out / "metrics.csv")["lr"].to_list()
    assert lrs[0] > 4e-3 and lrs[2] < 1.1e-4  # what happened: the new rate from epoch 3


@pytest.mark.parametrize(
    "how,message",
    [
        (lambda r, ck: r.replace("dim = 16", "dim = 32"), "'model.dim' was 16 in the checkpoint"),
        (lambda r, ck: r.replace("epochs = 2", "epochs = 1"), "'train.epochs' = 1 is fewer than"),
        (lambda r, ck: _edit_state(ck, lambda s: s.pop("epoch")), "('epoch' missing or not int)"),
        (
            lambda r, ck: _edit_state(ck, lambda s: s.pop("recipe")) or r.replace("= 16", "= 32"),
            "its weights do not fit the recipe's [model]",
        ),
    ],
)
def test_resume_refuses_what_it_cannot_continue_in_one_line(work, tmp_path, capsys, how, message):
    out = tmp_path / "m"
    shutil.copytree(work[1], out)
    shutil.copy(work[0] / "table.parquet", tmp_path / "table.parquet")
    text = RECIPE.format(out=out, epochs=2, extra="")
    text = how(text, out / "checkpoint") or text
    if "dim = 32" in text and "recipe" not in json.loads(
        (out / "checkpoint/state.json").read_text()
    ):
        (out / "config.json").unlink()  # no record of the old recipe at all
        (out / "model.safetensors").unlink()
    (tmp_path / "r.toml").write_text(text)
    before = tree(out)
    assert main(["fit", str(tmp_path / "r.toml"), "--resume", "--quiet"]) == 2
    assert message in one_line_error(capsys, "fit")
    assert tree(out) == before


def test_resume_refuses_a_table_that_holds_other_rows_now(work, tmp_path, capsys):
    out = tmp_path / "m"
    shutil.copytree(work[1], out)
    t = pl.read_parquet(work[0] / "table.parquet")
    t.with_columns(pl.col("x") * 1.001).write_parquet(tmp_path / "table.parquet")  # same path
    recipe = _recipe(tmp_path, str(out), epochs=3)
    assert main(["fit", str(recipe), "--resume", "--quiet"]) == 2
    assert "holds other training or validation rows than the checkpoint" in one_line_error(
        capsys, "fit"
    )


def _edit_state(ck: Path, fn) -> None:
    state = json.loads((ck / "state.json").read_text())
    fn(state)
    (ck / "state.json").write_text(json.dumps(state))


# ================================================================ 4. errors name the right thing
def test_non_finite_samples_name_the_row_of_the_file_not_of_the_window(work, monkeypatch):
    import stardiff
    from stardiff.errors import NonFiniteSamples

    model = stardiff.load(work[1])
    real = model.pre.decode
    calls = {"n": 0}

    def overflow(z, column):  # the third window's row 22 overflows: row 150 of the table
        out = real(z, column)
        calls["n"] += 1
        if calls["n"] == 3:
            out[22, 0] = np.inf
        return out

    monkeypatch.setattr(model.pre, "decode", overflow)
    table = bimodal_table(300).select("x", "y")
    with pytest.raises(NonFiniteSamples, match=r"table: column 'y', row\(s\) 150: 1 of") as e:
        model.predict(table, "y", n=4, chunk_rows=64, progress=False)
    assert "within the training range; the model itself produced them" in str(e.value)


def test_nan_weights_are_refused_naming_the_file_and_tensor(work, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "m"
    shutil.copytree(work[1], out)
    w = load_file(str(out / "model.safetensors"))
    name = next(k for k, v in w.items() if v.is_floating_point())
    w[name][:] = float("nan")
    save_file(w, str(out / "model.safetensors"), metadata={"format": "pt"})
    assert main(["sample", str(out), "--request", "y", "-n", "3"]) == 2
    msg = one_line_error(capsys, "sample")
    assert f"model.safetensors: tensor '{name}' holds NaN" in msg and "given" not in msg


def test_an_identifier_column_is_named_never_an_arrow_message(tmp_path, capsys):
    t = bimodal_table(200).with_columns(pl.lit(4830212539548536190).alias("gaia_source_id"))
    t.write_parquet(tmp_path / "table.parquet")
    assert main(["fit", str(_recipe(tmp_path, "m", epochs=1)), "--quiet", "--no-figures"]) == 0
    assert "columns not used: gaia_source_id (not a quantity" in capsys.readouterr().err
    extra = 'columns = ["x", "gaia_source_id"]'
    text = RECIPE.format(out="m2", epochs=1, extra="").replace("test_rows = 60", extra)
    (tmp_path / "c.toml").write_text(text)
    assert main(["fit", str(tmp_path / "c.toml"), "--quiet"]) == 2
    msg = one_line_error(capsys, "fit")
    assert "table.parquet: column 'gaia_source_id' is not a quantity" in msg


def test_a_table_with_no_model_column_gets_the_unconditional_density_per_row(work, tmp_path):
    pl.DataFrame({"q": np.arange(100.0)}).write_parquet(tmp_path / "q.parquet")
    argv = ["predict", str(work[1]), str(tmp_path / "q.parquet"), "--request", "y", "x"]
    assert main([*argv, "-n", "5", "--out", str(tmp_path / "p.parquet"), "--quiet"]) == 0
    p = pl.read_parquet(tmp_path / "p.parquet")
    assert p.height == 100 and p["no_input"].all()


def test_info_without_validation_rows_is_valid_json(work, tmp_path, capsys):
    shutil.copy(work[0] / "table.parquet", tmp_path / "table.parquet")
    text = RECIPE.format(out="m", epochs=1, extra="")
    (tmp_path / "r.toml").write_text(text.replace("test_rows = 60", "validation_fraction = 0.0"))
    assert main(["fit", str(tmp_path / "r.toml"), "--quiet", "--no-figures"]) == 0
    assert main(["info", str(tmp_path / "m")]) == 0

    def refuse(c):
        raise AssertionError(f"{c} is not JSON")

    info = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert info["training"]["history"]["final_val_loss"] is None
    json.loads((tmp_path / "m" / "config.json").read_text(), parse_constant=refuse)


# ================================================================ 5. relative paths; --version
def test_train_out_is_relative_to_the_recipe_from_any_working_directory(
    work, tmp_path, monkeypatch
):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    shutil.copy(work[0] / "table.parquet", tmp_path / "table.parquet")
    text = RECIPE.format(out="../runs/rel", epochs=1, extra="")
    (recipes / "r.toml").write_text(text.replace('"table.parquet"', '"../table.parquet"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["fit", "../recipes/r.toml", "--quiet", "--no-figures"]) == 0
    assert (tmp_path / "runs" / "rel" / "model.safetensors").exists()
    assert list(elsewhere.iterdir()) == []


def test_the_shipped_recipes_write_to_runs_at_the_repository_root():
    from stardiff.recipe import load_recipe

    for path in sorted((ROOT / "recipes").glob("*.toml")):
        r = load_recipe(path)
        assert r.out_dir().resolve() == ROOT / "runs" / path.stem, path.name


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("stardiff 0.")


# ================================================================ 6. near-duplicate test rows
def test_evaluate_warns_about_rows_that_are_training_rows_up_to_rounding(work, tmp_path, capsys):
    tmp, model = work
    t = pl.read_parquet(tmp / "table.parquet")
    lines = ["x,y,z"] + [",".join(f"{v:.6g}" for v in row) for row in t.iter_rows()]
    (tmp_path / "rounded.csv").write_text("\n".join(lines) + "\n")
    argv = ["evaluate", str(model), "--no-figures", "--rows", "10", "--samples", "5"]
    argv += ["--tasks", "0"]
    assert (
        main([*argv, "--table", str(tmp_path / "rounded.csv"), "--out", str(tmp_path / "e")]) == 0
    )
    err = capsys.readouterr().err
    assert "rounded.csv: 240 of 300 test rows are near-duplicates" in err
    res = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert res["row_split"]["near_training"] == 240 and res["row_split"]["scored"] == 300
    bimodal_table(300, seed=42).write_parquet(tmp_path / "new.parquet")
    assert (
        main([*argv, "--table", str(tmp_path / "new.parquet"), "--out", str(tmp_path / "f")]) == 0
    )
    assert "near-duplicates" not in capsys.readouterr().err
