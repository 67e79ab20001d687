"""One writer per folder: :class:`FolderLock`, an exclusive ``flock`` on ``FOLDER/.lock``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from stardata.errors import LockedError

__all__ = ["FolderLock", "LockedError"]


class FolderLock:
    """One writer per folder: an exclusive ``flock`` on ``FOLDER/.lock``.

    The lock file records the owner's pid, host and command line, so that a second writer gets
    a one-line error naming the folder and the process that holds it. The kernel releases the
    lock when its process dies (``kill -9`` included), so a lock left by a dead run is stale by
    construction and is simply taken over. Use as a context manager.

    Parameters
    ----------
    folder : path-like
        The folder to own (created if missing).
    what : str
        What the lock is for, shown to a second writer ("stardiff fit", "stardata build").
    name : str
        The lock file's name in ``folder`` (default ``.lock``; :mod:`stardata.outpaths` locks
        one output ``NAME`` of a folder with ``.NAME.lock``).
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, what: str = "a run", name: str = NAME):
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl
        import socket
        import sys

        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise LockedError(f"{self._held()} is in use: {self._owner()}") from None
            # the file may have been unlinked by its last owner between our open and flock
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": self.what,
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return self

    def _held(self) -> Path:
        """What the lock guards: the folder, or the output ``NAME`` of ``.NAME.lock``."""
        name = self.path.name
        if name != self.NAME and name.startswith(".") and name.endswith(".lock"):
            return self.folder / name[1 : -len(".lock")]
        return self.folder

    def _owner(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return (
                f"{info.get('what', 'a run')} (pid {info.get('pid')} on {info.get('host')}) "
                "holds its lock; wait for it to finish or stop it"
            )
        except (OSError, ValueError):
            return f"another process holds {self.path}"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # unlink while holding the lock, then let go
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
