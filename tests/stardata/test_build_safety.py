"""A build that is killed, run twice at once, fed a damaged cache or cuts that keep nothing.

Builds a 60-row release from a local archive (127.0.0.1; no network).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from stardata import testing as M
from stardata.cli import main
from stardata.errors import BuildError, LockedError, RemoteError, VerifyError
from stardata.io import read_json, sha256_file
from stardata.release import build, verify
from stardata.release.settings import Settings, Sources
from stardata.sources.apogee import read_allstar

ALLSTAR = "/sas/allStar-dr17-synspec_rev1.fits"
FLAGGED = "/sas/flagged/allStar-dr17-synspec_rev1.fits"
SETTINGS = Settings(chunk_rows=16, row_group_size=20, ebv_n_draws=16, retries=1)
OUTPUTS = ("stars.parquet", "tokens.h5", "manifest.json")
N_ROWS = 60


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    allstar = M.write_allstar(root / "allStar.fits", N_ROWS, seed=4)
    # the same stars, every one with STARFLAG bit 0: no star without XP is kept
    flagged = M.write_allstar(
        root / "flagged.fits", N_ROWS, seed=4, overrides={"STARFLAG": np.ones(N_ROWS, np.int32)}
    )
    ids = read_allstar(allstar, ["GAIAEDR3_SOURCE_ID"])["GAIAEDR3_SOURCE_ID"]
    ids = np.unique(ids[ids > 0])
    gaia = M.synthetic_gaia_source(ids, seed=1)
    xp = M.synthetic_xp(gaia.filter(pl.col("has_xp_continuous"))["source_id"].to_numpy())
    M.write_tiny_combined19(root / "dust")
    tables = {"gaiadr3.gaia_source": gaia, **M.synthetic_tmass(ids[::2], seed=2)}
    files = {ALLSTAR: allstar, FLAGGED: flagged}
    with M.MirrorServer(files=files, tables=tables, xp=xp) as server:
        yield {"server": server, "root": root}


def _sources(env, path=ALLSTAR) -> Sources:
    s, dust = env["server"], str(env["root"] / "dust")
    return Sources(allstar_url=s.url + path, gaia_tap_url=s.tap_url,
                   gaia_datalink_url=s.datalink_url, dust_dir=dust)  # fmt: skip


def _build(env, tmp: Path, *, out="out", settings=SETTINGS, path=ALLSTAR, **kw) -> Path:
    return build("dr17", tmp / "data", tmp / out, settings=settings, sources=_sources(env, path),
                 progress=False, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    return _build(env, tmp_path_factory.mktemp("reference"))


@pytest.fixture(autouse=True)
def _clear_faults(env):
    yield
    env["server"].faults.clear()


def _same_bytes(a: Path, b: Path) -> bool:
    return all(sha256_file(a / n) == sha256_file(b / n) for n in OUTPUTS)


def _stages(tmp: Path) -> Path:
    return tmp / "data" / "stages" / "dr17"


def _copy_build(reference: Path, tmp: Path) -> None:
    """A finished build's data dir and release folder, copied to ``tmp``."""
    shutil.copytree(reference.parent.parent / "data", tmp / "data")
    shutil.copytree(reference, tmp / "out" / "dr17")


def _flip_byte(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0xFF
    path.write_bytes(bytes(blob))


# -- one writer per folder ---------------------------------------------------------------------
@pytest.fixture
def holder():
    """Start a process that holds a folder's lock as a build would; yields a starter."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        code = ("import sys, time; from stardata.locks import FolderLock; "
                "FolderLock(sys.argv[1], 'stardata build').acquire(); print('held', flush=True); "
                "time.sleep(120)")  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("locked", ["data", "out"])
def test_a_second_build_gets_one_line_naming_folder_and_process(env, tmp_path, holder, locked,
                                                                capsys):  # fmt: skip
    proc = holder(tmp_path / locked)
    before = len(env["server"].requests)
    with pytest.raises(LockedError) as err:
        _build(env, tmp_path)
    msg = str(err.value)
    assert str(tmp_path / locked) in msg and f"pid {proc.pid}" in msg and "\n" not in msg
    assert len(env["server"].requests) == before  # stopped before any work
    args = ["build", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
            "--allstar-url", "http://127.0.0.1:9/none", "--quiet"]  # fmt: skip
    assert main(args) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"pid {proc.pid}" in lines[0] and "stardata build" in lines[0]


# -- no moment without a valid copy ------------------------------------------------------------
class _Killed(BaseException):
    """Stands for SIGKILL between the two renames of the release folder swap."""


def _kill_at_second_rename(monkeypatch, final: Path) -> None:
    import stardata.io as io

    real = os.replace

    def replace(src, dst):
        if Path(dst) == final:
            raise _Killed
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", replace)


def test_kill_between_the_renames_keeps_a_copy_that_verify_and_build_restore(
    env, reference, tmp_path, monkeypatch
):
    _copy_build(reference, tmp_path)
    final = tmp_path / "out" / "dr17"
    with monkeypatch.context() as m:
        _kill_at_second_rename(m, final)
        with pytest.raises(_Killed):
            _build(env, tmp_path, offline=True)
    assert not final.exists() and (tmp_path / "out" / ".dr17.old").is_dir()
    assert verify(final).keys() == {"stars.parquet", "tokens.h5"}  # put back, then checked
    assert _same_bytes(reference, final) and not (tmp_path / "out" / ".dr17.old").exists()
    with monkeypatch.context() as m:
        _kill_at_second_rename(m, final)
        with pytest.raises(_Killed):
            _build(env, tmp_path, offline=True)
    out = _build(env, tmp_path, offline=True)  # the next build recovers, then swaps
    assert _same_bytes(reference, out) and sorted(os.listdir(tmp_path / "out")) == ["dr17"]


def test_leftovers_of_killed_runs_are_removed_and_nothing_else(env, reference, tmp_path):
    _copy_build(reference, tmp_path)
    data = tmp_path / "data"
    junk = [
        tmp_path / "out" / ".dr17.part-999999" / "stars.parquet",
        _stages(tmp_path) / ".derived.parquet.part-999999",
        _stages(tmp_path) / ".select.json.part-999998",
        data / "cache" / "dr17" / "gaia_source" / ".chunk.parquet.part-999999",
        data / "raw" / "dr17" / ".allStar-dr17-synspec_rev1.fits.sha256.part-1",
    ]
    mine = [tmp_path / "out" / "notes.txt", _stages(tmp_path) / "my.part-notes.txt"]
    for p in junk + mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("left over")
    out = _build(env, tmp_path, offline=True)
    assert _same_bytes(reference, out)
    assert [p for p in junk if p.exists()] == []
    assert not (tmp_path / "out" / ".dr17.part-999999").exists()
    assert all(p.read_text() == "left over" for p in mine)


def test_a_release_folder_holding_a_users_file_is_never_replaced(env, reference, tmp_path, capsys):
    """OUT/dr17 with anything but an earlier release's outputs: one line naming it, untouched."""
    from stardata.errors import OutputError

    _copy_build(reference, tmp_path)
    final = tmp_path / "out" / "dr17"
    (final / "thesis_notes.txt").write_text("mine")
    before = sorted(p.name for p in final.iterdir())
    with pytest.raises(OutputError, match=r"holds files stardata build did not write \(thesis"):
        _build(env, tmp_path, offline=True)
    assert sorted(p.name for p in final.iterdir()) == before
    (final / "thesis_notes.txt").unlink()
    assert _same_bytes(reference, _build(env, tmp_path, offline=True))  # its own: rebuilt
    shutil.rmtree(final)
    final.write_text("a file where the release goes")
    argv = ["build", "--offline", "--data-dir", str(tmp_path / "data"), "--out"]
    assert main([*argv, str(tmp_path / "out"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert final.read_text() == "a file where the release goes"


# -- caches are verified before reuse ----------------------------------------------------------
def test_damaged_stage_files_are_recomputed_not_reused(env, reference, tmp_path):
    _copy_build(reference, tmp_path)
    stages = _stages(tmp_path)
    _flip_byte(stages / "derived.parquet", 100)
    with open(stages / "extinction.parquet", "r+b") as f:
        f.truncate(os.path.getsize(stages / "extinction.parquet") // 2)
    before = len(env["server"].requests)
    out = _build(env, tmp_path, out="out2", offline=True)
    assert len(env["server"].requests) == before
    assert _same_bytes(reference, out)
    for name in ("derived", "extinction"):
        assert (
            sha256_file(stages / f"{name}.parquet") == read_json(stages / f"{name}.json")["sha256"]
        )


def test_damaged_remote_stage_offline_says_why(env, reference, tmp_path):
    _copy_build(reference, tmp_path)
    _flip_byte(_stages(tmp_path) / "xp.parquet", 200)
    with pytest.raises(BuildError, match=r"stage xp .*xp\.parquet does not match the sha256"):
        _build(env, tmp_path, out="out2", offline=True)
    out = _build(env, tmp_path, out="out2")  # online: recomputed (from the connectors' caches)
    assert _same_bytes(reference, out)


def test_damaged_block_part_is_recomputed(env, reference, tmp_path):
    server = env["server"]
    server.inject("/data-server/data", status=500, skip=1, times=2)  # the 2nd block fails
    with pytest.raises(RemoteError):
        _build(env, tmp_path)
    parts = _stages(tmp_path) / "xp.parts"
    part = parts / "000000.parquet"
    assert part.exists() and (parts / "000000.parquet.sha256").read_text() == sha256_file(part)
    _flip_byte(part, part.stat().st_size // 2)  # inside the coefficients' pages
    out = _build(env, tmp_path)
    assert _same_bytes(reference, out) and not parts.exists()


def test_verify_checks_the_stages_and_names_the_wrong_one(env, reference, tmp_path, capsys):
    _copy_build(reference, tmp_path)
    final, data = tmp_path / "out" / "dr17", tmp_path / "data"
    checked = verify(final, data)
    assert {"stage derived", "stage xp", "stage extinction"} <= set(checked)
    _flip_byte(_stages(tmp_path) / "select.parquet", 60)
    with pytest.raises(VerifyError, match=r"stage select \(.*select\.parquet\) sha256 .*corrupt"):
        verify(final, data)
    assert verify(final).keys() == {"stars.parquet", "tokens.h5"}  # outputs themselves fine
    assert main(["verify", str(final), "--data-dir", str(data)]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "stage select" in line
    _build(env, tmp_path, out="out2", settings=dataclasses.replace(SETTINGS, split_seed=7))
    with pytest.raises(VerifyError, match=r"stage select .*rebuilt since"):
        verify(final, data)


# -- settings that keep no star ----------------------------------------------------------------
def test_cuts_that_keep_no_star_stop_early_naming_the_cut(env, tmp_path):
    settings = dataclasses.replace(SETTINGS, g_min=30.0, g_max=31.0)
    with pytest.raises(BuildError) as err:
        _build(env, tmp_path, settings=settings, path=FLAGGED)
    msg = str(err.value)
    assert "XP cut g_range (g_min, g_max) removed the last" in msg and "\n" not in msg
    assert not (_stages(tmp_path) / "extinction.parquet").exists()  # stopped before extinction
    assert not (tmp_path / "out" / "dr17").exists()
    with pytest.raises(BuildError, match="XP cut g_range"):  # a rerun says the same at once
        _build(env, tmp_path, settings=settings, path=FLAGGED, offline=True)


def test_unreadable_stage_file_error_names_it(tmp_path):
    from stardata.release.stagecache import n_groups, read_group

    bad = tmp_path / "derived.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(BuildError, match=r"derived\.parquet: not a readable Parquet file"):
        n_groups(bad)
    with pytest.raises(BuildError, match=r"derived\.parquet: not a readable Parquet file"):
        read_group(bad, 0)


def test_records_of_the_previous_layout_are_still_reused(env, reference, tmp_path):
    """Stage records written before records were typed (no name, no counts) stay valid."""
    from stardata.io import write_json

    _copy_build(reference, tmp_path)
    old = {}
    for name in ("gaia_source", "tmass", "xp"):
        rec = read_json(_stages(tmp_path) / f"{name}.json")
        old[name] = {k: rec[k] for k in ("key", "size", "sha256", "rows", "url")}
        write_json(_stages(tmp_path) / f"{name}.json", old[name])
    out = _build(env, tmp_path, out="out2", offline=True)
    assert _same_bytes(reference, out)
    for name, rec in old.items():  # reused as they were, not recomputed
        assert read_json(_stages(tmp_path) / f"{name}.json") == rec


_CHILD = """
import json, sys
from stardata.release import build
from stardata.release.settings import Settings, Sources
cfg = json.loads(sys.argv[1])
build("dr17", cfg["data"], cfg["out"], settings=Settings.from_dict(cfg["settings"]),
      sources=Sources(**cfg["sources"]), progress=False)
"""


def test_build_killed_mid_stage_resumes_to_the_same_release(env, reference, tmp_path):
    """kill -9 during the XP stage: the next build takes the lock over, cleans up, resumes."""
    import dataclasses as dc
    import json
    import signal
    import time

    server = env["server"]
    server.inject("/data-server/data", kind="stall", skip=1, delay=20.0)  # 2nd block hangs
    cfg = {"data": str(tmp_path / "data"), "out": str(tmp_path / "out"),
           "settings": SETTINGS.to_dict(), "sources": dc.asdict(_sources(env))}  # fmt: skip
    n = server.count("/data-server")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(cfg)])
    try:
        deadline = time.monotonic() + 60
        while server.count("/data-server") < n + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.count("/data-server") >= n + 2
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert json.loads((tmp_path / "data" / ".lock").read_text())["pid"] == child.pid
    assert (_stages(tmp_path) / "xp.parts" / "000000.parquet").exists()
    out = _build(env, tmp_path)
    assert _same_bytes(reference, out)
    assert sorted(os.listdir(tmp_path / "out")) == ["dr17"]
    assert sorted(p.name for p in _stages(tmp_path).iterdir() if p.name.startswith(".")) == []
