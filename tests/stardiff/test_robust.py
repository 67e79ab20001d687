"""Nothing lost, nothing silently wrong (issue 11): folders, locks, kills, bad files, errors."""

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.torch import load_file

from stardata.locks import FolderLock
from stardiff.cli import main
from tests.stardiff.conftest import TINY_RECIPE, bimodal_table

ROOT = Path(__file__).resolve().parents[2]

RECIPE = TINY_RECIPE.replace("{name}", "robust").replace("{samples}", "200").replace("{extra}", "")


def _recipe(folder: Path, out: Path, epochs: int = 2, name: str = "r.toml") -> Path:
    (folder / name).write_text(RECIPE.format(out=out, epochs=epochs))
    return folder / name


def _fit(recipe: Path, *extra: str) -> int:
    return main(["fit", str(recipe), "--quiet", "--no-figures", *extra])


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A user's folder (recipe, table, notes) and a 2-epoch model fitted under umask 022."""
    tmp = tmp_path_factory.mktemp("robust")
    bimodal_table(300).write_parquet(tmp / "table.parquet")
    (tmp / "notes.md").write_text("my notes\n")
    old = os.umask(0o022)
    try:
        assert main(["fit", str(_recipe(tmp, tmp / "model")), "--quiet"]) == 0
    finally:
        os.umask(old)
    return tmp, tmp / "model"


def _copy(model: Path, to: Path) -> Path:
    shutil.copytree(model, to)
    return to


# ---------------------------------------------------------------- 1. never delete the user's
def test_overwrite_refuses_a_folder_holding_the_users_files(work, capsys):
    tmp, _ = work
    before = sorted(p.name for p in tmp.iterdir())
    assert _fit(tmp / "r.toml", "--out", str(tmp), "--overwrite") == 2
    err = _err(capsys)
    assert "stardiff did not write" in err and "notes.md" in err and "r.toml" in err
    assert sorted(p.name for p in tmp.iterdir()) == before  # nothing removed


def test_overwrite_removes_only_stardiffs_own_files(work, tmp_path):
    from stardiff.persist.folder import foreign_entries, prepare_model_folder

    out = _copy(work[1], tmp_path / "m")
    (out / ".metrics.csv.part-999").write_text("half")
    assert foreign_entries(out) == []
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"did not write \(mine.txt\)"):
        prepare_model_folder(out, resume=False, overwrite=True)
    assert (out / "config.json").exists() and (out / "mine.txt").exists()
    (out / "mine.txt").unlink()
    (out / "config.json").write_text('{"format": "something-else"}')  # not a model config
    assert foreign_entries(out) == ["config.json"]
    _copy(work[1] / "checkpoint", out / "checkpoint2")
    assert foreign_entries(out) == ["checkpoint2", "config.json"]


def test_overwrite_of_a_model_folder_replaces_it(work, tmp_path):
    out = _copy(work[1], tmp_path / "m")
    assert (out / "unconditional.png").exists()
    assert _fit(work[0] / "r.toml", "--out", str(out), "--overwrite", "--epochs", "1") == 0
    assert not (out / "unconditional.png").exists()  # --no-figures: the old figure is gone
    assert json.loads((out / "config.json").read_text())["training"]["epochs_done"] == 1


# ---------------------------------------------------------------- 2. one writer per folder
def test_a_second_fit_into_a_locked_folder_is_one_line_naming_the_owner(work, tmp_path, capsys):
    out = _copy(work[1], tmp_path / "m")
    with FolderLock(out, "stardiff fit"):
        assert _fit(work[0] / "r.toml", "--out", str(out), "--resume") == 2
        err = _err(capsys)
    assert f"{out} is in use: stardiff fit (pid {os.getpid()}" in err
    assert not (out / ".lock").exists()  # released by its owner


# ---------------------------------------------------------------- 3. no moment without a copy
def test_a_kill_between_the_checkpoint_renames_still_resumes_exactly(work, tmp_path, monkeypatch):
    import stardata.io

    out = tmp_path / "k"
    recipe = _recipe(work[0], out, epochs=2, name="k.toml")
    assert _fit(recipe, "--epochs", "1") == 0
    real = os.replace

    class Killed(BaseException):
        pass

    def replace(src, dst):  # the kill: after checkpoint → .checkpoint.old, before the new one
        if Path(dst).name == "checkpoint":
            raise Killed
        return real(src, dst)

    monkeypatch.setattr(stardata.io.os, "replace", replace)
    with pytest.raises(Killed):
        _fit(recipe, "--resume")
    monkeypatch.undo()
    assert not (out / "checkpoint").exists() and (out / ".checkpoint.old").is_dir()
    (out / ".checkpoint.part-424242").mkdir()  # what a real kill leaves behind
    (out / ".model.safetensors.part-424242").write_bytes(b"half")
    assert _fit(recipe, "--resume") == 0
    left = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert left == []
    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(work[1] / "model.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


# ---------------------------------------------------------------- 8. one-line errors
def _damage(work, tmp_path, how):
    out = _copy(work[1], tmp_path / "m")
    how(out)
    return out


def _truncate(path: Path, keep: float):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit(out: Path, fn):
    cfg = json.loads((out / "config.json").read_text())
    fn(cfg)
    (out / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "how,message",
    [
        (lambda o: _truncate(o / "model.safetensors", 0.5), "model.safetensors: not a readable"),
        (lambda o: _truncate(o / "model.safetensors", 0.0), "model.safetensors: not a readable"),
        (lambda o: (o / "model.safetensors").unlink(), "missing model.safetensors"),
        (lambda o: _truncate(o / "config.json", 0.5), "config.json: not valid JSON"),
        (lambda o: _edit(o, lambda c: c["network"].update(dim=24)), "weights do not fit"),
        (lambda o: _edit(o, lambda c: c.pop("network")), "not a valid model config"),
        (lambda o: _edit(o, lambda c: c["network"].update(n_heads="two")), "config.json: not a"),
        (lambda o: _edit(o, lambda c: c.update(requestable=["q"])), "unknown column 'q'"),
        (lambda o: _edit(o, lambda c: c.update(format_version="1")), "format_version"),
    ],
)
def test_a_damaged_model_folder_is_one_line_naming_the_file(work, tmp_path, capsys, how, message):
    out = _damage(work, tmp_path, how)
    assert main(["sample", str(out), "--request", "y", "-n", "5"]) == 2
    err = _err(capsys)
    assert message in err and err.startswith("stardiff sample: error:")


def test_a_truncated_checkpoint_is_one_line(work, tmp_path, capsys):
    out = _copy(work[1], tmp_path / "m")
    _truncate(out / "checkpoint" / "state.safetensors", 0.3)
    assert _fit(work[0] / "r.toml", "--out", str(out), "--resume", "--epochs", "3") == 2
    assert "state.safetensors: not a readable safetensors file" in _err(capsys)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["sample", "{out}", "--request", "y", "--device", "cuda:7"], "--device = 'cuda:7'"),
        (["sample", "{out}", "--request", "y", "--device", "tpu"], "--device: unknown device"),
        (["sample", "{out}", "--request", "y", "--out", "{tmp}"], "is a folder"),
        (["fit", "{tmp}/r.toml", "--out", "{tmp}/notes.md"], "is a file, not a folder"),
        (["fit", "{tmp}/t.toml"], "'train.threads' must be an integer in [0, 4096]"),
        (
            ["evaluate", "{out}", "--table", "{tmp}/table.parquet", "--out", "{tmp}/notes.md"],
            "notes.md is a file, not a folder",
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(work, capsys, argv, message):
    tmp, out = work
    text = RECIPE.format(out=tmp / "t", epochs=1).replace("threads = 1", "threads = -2")
    (tmp / "t.toml").write_text(text)
    argv = [a.format(out=out, tmp=tmp) for a in argv]
    if "cuda" in message:
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    assert main(argv) == 2
    err = _err(capsys)
    assert message in err and err.startswith("stardiff")


def test_an_unwritable_out_is_one_line(work, tmp_path, capsys, monkeypatch):
    import stardata.outpaths

    monkeypatch.setattr(stardata.outpaths.os, "access", lambda *a: False)  # root writes anywhere
    f = tmp_path / "s.parquet"
    assert main(["sample", str(work[1]), "--request", "y", "-n", "5", "--out", str(f)]) == 2
    assert f"--out {f}: cannot write in {tmp_path} (permission denied)" in _err(capsys)


def test_fit_says_which_table_columns_it_did_not_use(work, tmp_path, capsys):
    bimodal_table(100).with_columns(name=pl.lit("star")).write_parquet(tmp_path / "table.parquet")
    recipe = _recipe(tmp_path, tmp_path / "m", epochs=1)
    assert _fit(recipe, "--overwrite") == 0
    err = capsys.readouterr().err
    assert "warning: table.parquet: columns not used: name (not numeric (text))" in err


@pytest.mark.parametrize("at", ["model.safetensors", "config.json"])
def test_a_full_disk_leaves_no_weights_without_config_and_a_rerun_works(
    work, tmp_path, capsys, monkeypatch, at
):
    import stardiff.persist.files

    out = tmp_path / "full"
    recipe = _recipe(work[0], out, epochs=1, name="full.toml")
    real_st, real_text = stardiff.persist.files._write_safetensors, Path.write_text

    def full(path):
        if f".{at}.part-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def write_st(tensors, path, metadata=None):
        full(path)
        return real_st(tensors, path, metadata=metadata)

    def write_text(self, *a, **k):
        full(self)
        return real_text(self, *a, **k)

    monkeypatch.setattr(stardiff.persist.files, "_write_safetensors", write_st)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert _fit(recipe) == 2
    monkeypatch.undo()
    err = _err(capsys)
    assert f"{at}: no space left on the device" in err
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" not in names and "config.json" not in names
    assert not [n for n in names if ".part-" in n]
    assert _fit(recipe) == 0  # nothing blocks the rerun
    assert {"config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}


def test_ctrl_c_says_interrupted_and_exits_130(work, tmp_path, capsys, monkeypatch):
    import stardiff.train.loop

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stardiff.train.loop, "_loop", interrupt)
    recipe = _recipe(work[0], tmp_path / "c", epochs=1, name="c.toml")
    assert _fit(recipe) == 130
    assert _err(capsys) == "stardiff fit: interrupted"
    assert not (tmp_path / "c" / ".lock").exists()


def test_a_programming_error_stays_a_traceback(work, monkeypatch):
    import stardiff.infer

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(stardiff.infer, "load", bug)
    with pytest.raises(ZeroDivisionError):
        main(["sample", str(work[1]), "--request", "y"])


# ---------------------------------------------------------------- 5. bad values
def test_a_non_numeric_cell_is_an_error_never_a_dropped_column(work, tmp_path, capsys):
    tmp, out = work
    csv = tmp_path / "given.csv"
    csv.write_text("x,name\n0.5,a\n?,b\n1.0,c\n")
    assert main(["sample", str(out), "--table", str(csv), "--request", "y", "-n", "3"]) == 2
    err = _err(capsys)
    assert "column 'x' mixes numbers with non-numeric cells ('?' in row 1" in err
    csv.write_text("x,name\n0.5,a\n-0.5,b\n")
    f = tmp_path / "s.parquet"
    argv = ["sample", str(out), "--table", str(csv), "--request", "y", "-n", "3", "--out", str(f)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "given columns x; ignored (not model columns): name" in err
    assert pl.read_parquet(f).height == 6


def test_a_non_numeric_cell_in_a_training_table_is_an_error(work, tmp_path, capsys):
    t = bimodal_table(50).with_columns(pl.col("x").cast(pl.Utf8))
    t = t.with_columns(
        pl.when(pl.int_range(50) == 7).then(pl.lit("n/a?")).otherwise("x").alias("x")
    )
    t.write_parquet(tmp_path / "table.parquet")
    recipe = _recipe(tmp_path, tmp_path / "m", epochs=1)
    assert _fit(recipe) == 2
    assert "column 'x' mixes numbers with non-numeric cells ('n/a?' in row 7" in _err(capsys)


def test_far_out_of_range_given_values_warn_and_never_write_non_finite(work, tmp_path, capsys):
    tmp, out = work
    f = tmp_path / "s.parquet"
    argv = ["sample", str(out), "--given", "x=1e20", "--request", "y", "-n", "50", "--out", str(f)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert "warning: given: x outside the training range" in err and "robust σ" in err
    if rc == 0:
        assert np.isfinite(pl.read_parquet(f)["y"].to_numpy()).all()
    else:
        assert rc == 2 and "not finite" in err and not f.exists()


# ---------------------------------------------------------------- 6. evaluation rows
def _eval(model: Path, table: Path, out: Path, capsys, *extra) -> dict:
    argv = ["evaluate", str(model), "--table", str(table), "--out", str(out), "--no-figures"]
    assert main([*argv, "--rows", "20", "--samples", "10", "--tasks", "0", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_never_scores_training_rows_as_test_rows(work, tmp_path, capsys):
    tmp, model = work
    full = pl.read_parquet(tmp / "table.parquet")
    res = _eval(model, tmp / "table.parquet", tmp_path / "e0", capsys)
    assert res["row_split"] == {
        "by": "content", "table": 300, "scored": 60, "train": 216, "validation": 24, "test": 60,
        "near_training": 0,
    }  # fmt: skip
    shuffled = full.sample(fraction=1.0, shuffle=True, seed=5)
    shuffled.write_parquet(tmp_path / "shuffled.parquet")
    res = _eval(model, tmp_path / "shuffled.parquet", tmp_path / "e1", capsys)
    assert res["row_split"]["scored"] == 60 and res["row_split"]["train"] == 216
    assert "216 of 300 rows are training rows" in capsys.readouterr().err
    new = bimodal_table(80, seed=9)
    new.write_parquet(tmp_path / "new.parquet")
    res = _eval(model, tmp_path / "new.parquet", tmp_path / "e2", capsys)
    assert res["row_split"]["scored"] == 80 and res["row_split"]["train"] == 0
    pl.concat([new, full.head(100)]).write_parquet(tmp_path / "mixed.parquet")
    res = _eval(model, tmp_path / "mixed.parquet", tmp_path / "e3", capsys)
    in_test = res["row_split"]["scored"] - 80
    assert res["row_split"]["train"] + res["row_split"]["validation"] + in_test == 100


# ---------------------------------------------------------------- 10. umask
def _modes(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def test_model_files_and_outputs_respect_the_umask(work, tmp_path, capsys):
    tmp, model = work
    modes = _modes(model)
    for name in ("config.json", "model.safetensors", "rows.safetensors", "metrics.csv"):
        assert modes[name] == 0o644, name
    assert modes["unconditional.png"] == 0o644
    assert modes["checkpoint/state.safetensors"] == modes["checkpoint/state.json"] == 0o644
    old = os.umask(0o002)
    try:
        f = tmp_path / "s.parquet"
        assert (
            main(
                ["sample", str(model), "--request", "x", "y", "--joint", "-n", "8", "--out", str(f)]
            )
            == 0
        )
        _eval(model, tmp / "table.parquet", tmp_path / "ev", capsys)
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "ev" / "metrics.json").stat().st_mode) == 0o664


# ---------------------------------------------------------------- 9. torchrun
def test_the_documented_torchrun_command_works_on_every_rank(work, tmp_path):
    out = tmp_path / "ddp"
    recipe = _recipe(work[0], out, epochs=1, name="ddp.toml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "stardiff", "fit", str(recipe), "--device", "cpu", "--no-figures"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("model: ") == 1  # rank 0 alone prints the summary
    assert r.stdout.count("unconditional densities") == 1
    assert {"config.json", "model.safetensors", "checkpoint"} <= {p.name for p in out.iterdir()}
    assert "Traceback" not in r.stderr
