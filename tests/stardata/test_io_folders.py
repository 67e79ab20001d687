"""Folder locks, leftover temporaries and folder swaps (stardata.io)."""

import os
import stat
import subprocess
import sys

import pytest

from stardata import io, locks
from stardata.errors import LockedError


def test_second_writer_gets_one_line_naming_folder_and_pid(tmp_path):
    with locks.FolderLock(tmp_path / "run", "stardiff fit"):
        with pytest.raises(LockedError) as e:
            locks.FolderLock(tmp_path / "run", "stardiff fit").acquire()
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "run") in msg and f"pid {os.getpid()}" in msg
    assert not (tmp_path / "run" / ".lock").exists()  # released and removed


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = (
        "import os, sys; from stardata.locks import FolderLock; "
        f"FolderLock({str(tmp_path)!r}, 'x').acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / ".lock").exists()  # left behind by a process that died holding it
    with locks.FolderLock(tmp_path, "y"):
        assert "'y'" in (tmp_path / ".lock").read_text().replace('"', "'")


def test_remove_partials_touches_only_our_names(tmp_path):
    (tmp_path / ".stars.parquet.part-123").write_text("x")
    (tmp_path / ".checkpoint.part-9").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".hidden").write_text("mine")
    removed = io.remove_partials(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint.part-9", ".stars.parquet.part-123"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "notes.txt"]


def _folder(path, text):
    path.mkdir()
    (path / "f").write_text(text)
    return path


def test_replace_folder_recovers_after_kill_between_renames(tmp_path, monkeypatch):
    final = _folder(tmp_path / "dr17", "old")
    new = _folder(tmp_path / "new", "new")
    real = os.replace
    calls = []

    def killed_on_second(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill lands between the two renames
        real(a, b)

    monkeypatch.setattr(io.os, "replace", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        io.replace_folder(new, final)
    monkeypatch.undo()
    assert not final.exists()
    io.recover_folder(final)
    assert (final / "f").read_text() == "old"
    io.replace_folder(new, final)
    assert (final / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dr17"]


def test_atomic_files_respect_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
