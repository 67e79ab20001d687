"""The one rule for every output path of the toolkit.

Every writer — ``stardata build`` (the release folder), ``crossmatch(out=...)``, ``stardiff fit``
(the model folder), ``stardiff sample --out``, ``predict --out`` and ``evaluate --out`` — asks
this module before it writes anything, and writes the way it says:

1. **The format follows the name.** A table file is written in the format of its extension
   (:data:`OUTPUT_FORMATS`: ``.parquet``, ``.csv``); any other name is refused, never written
   in some other format.
2. **Never onto an input.** An output that is an input (the same file however it is spelled:
   ``./a/../a/x``, a symbolic or hard link), lies inside an input folder, or, for a folder
   output, holds an input, is refused.
3. **Never over what the toolkit did not write.** An existing file is replaced only if the
   toolkit wrote it (a Parquet file carries :data:`MARK_KEY` in its metadata; a CSV file's
   header is exactly the columns about to be written); an existing folder only if every entry
   in it is the writer's own, else it is refused naming what is there. A file where a folder
   belongs (or the reverse) is refused.
4. **Atomic.** Files go to a temporary sibling ``.NAME.part-PID`` and are renamed into place
   (:func:`stardata.io.atomic_path`); folders are built beside and swapped in
   (:func:`stardata.io.replace_folder`).
5. **One writer, no leftovers.** :func:`claim` holds ``.NAME.lock`` beside the output for the
   whole write and, under it, first removes what killed runs of that output left: its
   ``.NAME.part-*`` temporaries, and a ``.NAME.old`` of an interrupted folder swap (put back
   if the output itself is missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from stardata.errors import OutputError
from stardata.io import recover_folder, temp_sibling
from stardata.locks import FolderLock

__all__ = [
    "MARK_KEY",
    "OUTPUT_FORMATS",
    "check_folder",
    "check_table_file",
    "claim",
    "input_overlap",
    "is_own_table",
    "mark",
    "output_format",
]

#: Table file formats by extension: what ``--out NAME`` writes.
OUTPUT_FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: Parquet key-value metadata key that marks a file the toolkit wrote (value: the command).
MARK_KEY = b"written_by"


def mark(what: str) -> dict[bytes, bytes]:
    """Parquet metadata marking a file as written by ``what`` (e.g. ``"stardiff sample"``)."""
    return {MARK_KEY: what.encode()}


def output_format(out: str | os.PathLike, option: str = "out") -> str:
    """The format of a table file by its extension, or an :class:`OutputError` naming it."""
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(OUTPUT_FORMATS)
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise OutputError(f"{option} {out}: {what}; name the file {known}")
    return OUTPUT_FORMATS[suffix]


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(p))))


def input_overlap(out: str | os.PathLike, inputs: Iterable) -> str | None:
    """The first input that ``out`` is, lies inside, or (a folder) holds; None if none.

    Paths are compared after resolving ``..`` and symbolic links; an existing ``out`` that is
    a hard link of an input counts too. Inputs that are not paths (tables in memory) are skipped.
    """
    o = _real(out)
    for given in inputs:
        if not isinstance(given, str | os.PathLike):
            continue
        i = _real(given)
        if o == i or i in o.parents or o in i.parents:
            return os.fspath(given)
        with contextlib.suppress(OSError):
            if os.path.samefile(o, i):
                return os.fspath(given)
    return None


def _check_place(out: Path, option: str, inputs: Iterable) -> None:
    """Not an input; the nearest existing folder above ``out`` is a folder we may write in."""
    hit = input_overlap(out, inputs)
    if hit is not None:
        same = _real(out) == _real(hit) or os.path.exists(out) and os.path.samefile(out, hit)
        how = "is" if same else "overlaps"
        raise OutputError(f"{option} {out} {how} the input {hit}; write the output elsewhere")
    parent = Path(os.path.abspath(out)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {out}: cannot write in {parent} (permission denied)")


def is_own_table(path: Path, columns: Sequence[str] | None = None) -> bool:
    """Whether the toolkit wrote the table file ``path``.

    A Parquet file carries :data:`MARK_KEY` in its metadata; a CSV file (which has no place for
    a mark) counts as the toolkit's when its header line is exactly ``columns``.
    """
    try:
        if output_format(path) == "parquet":
            import pyarrow.parquet as pq

            return MARK_KEY in (pq.read_schema(path).metadata or {})
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n")
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    import csv

    return columns is not None and next(csv.reader([header]), []) == list(columns)


def check_table_file(
    out: str | os.PathLike,
    *,
    option: str = "out",
    inputs: Iterable = (),
    columns: Sequence[str] | None = None,
) -> str:
    """Check a table file output against the rule; return its format (``parquet``, ``csv``).

    Parameters
    ----------
    out : path-like
        The file to write.
    option : str
        How the user named it in messages (``--out``, ``out``).
    inputs : iterable
        The paths the command reads (tables, catalogues); the output may be none of them.
    columns : sequence of str, optional
        The columns about to be written: an existing CSV file with exactly this header is the
        toolkit's own (an earlier run's output) and may be replaced.

    Raises
    ------
    OutputError
        A folder, an unknown extension, an input, a place that cannot be written, or an
        existing file the toolkit did not write (one line naming ``out``).
    """
    out = Path(out)
    if out.is_dir():
        raise OutputError(f"{option} {out} is a folder; give a file name such as {out}/x.parquet")
    fmt = output_format(out, option)
    _check_place(out, option, inputs)
    if (out.exists() or out.is_symlink()) and not (
        out.is_file() and not out.is_symlink() and is_own_table(out, columns)
    ):
        raise OutputError(
            f"{option} {out} exists and was not written by this toolkit; it is never replaced: "
            "move it away or choose another name"
        )
    return fmt


def check_folder(
    out: str | os.PathLike,
    *,
    own_entry: Callable[[Path], bool],
    what: str,
    option: str = "out",
    inputs: Iterable = (),
) -> Path:
    """Check a folder output against the rule: a folder (or nothing yet) holding only its own.

    Parameters
    ----------
    out : path-like
    own_entry : callable
        Whether an entry of ``out`` is the writer's own (its content checked, not only its
        name); the temporaries and locks of :func:`claim` count as own.
    what : str
        The writer, as messages name it (``stardata crossmatch``).
    option : str
    inputs : iterable
        Paths the writer reads; the folder may not be, hold or lie inside one.

    Raises
    ------
    OutputError
        ``out`` is a file, an input, or holds entries that are not its own (named).
    """
    out = Path(out)
    if out.is_symlink():  # replacing it would replace the link, not the folder it names
        raise OutputError(f"{option} {out} is a symbolic link; give the folder it points to")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{option} {out} is a file, not a folder; it is never replaced")
    _check_place(out, option, inputs)
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _temporary(p) and not own_entry(p))
        if foreign:
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise OutputError(
                f"{option} {out} holds files {what} did not write ({', '.join(foreign[:5])}"
                f"{more}); it is never emptied: choose another folder or move them away"
            )
    return out


def _temporary(p: Path) -> bool:
    """A lock or temporary of this toolkit (``.lock``, ``.NAME.lock``, ``.NAME.part-PID``)."""
    n = p.name
    return n == FolderLock.NAME or (n.startswith(".") and (n.endswith(".lock") or ".part-" in n))


def _leftovers(out: Path, folder: bool) -> None:
    """Remove what killed runs of ``out`` left beside it (call it holding ``out``'s lock)."""
    import glob

    if not out.parent.is_dir():
        return
    if folder:
        recover_folder(out)
    for p in out.parent.glob(f"{glob.escape(temp_sibling(out).name.rsplit('-', 1)[0])}-*"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def claim(out: str | os.PathLike, what: str, *, folder: bool = False) -> Iterator[Path]:
    """Hold ``out``'s lock (``.NAME.lock`` beside it) and clear killed runs' leftovers first.

    A second writer of the same output stops at once with one line naming the process that
    holds it (:class:`stardata.errors.LockedError`); a lock left by a killed run is taken over.
    ``folder=True``: ``out`` is a folder replaced by :func:`stardata.io.replace_folder`, whose
    swap a kill may have interrupted (put right first).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(out.parent, what, name=f".{out.name}.lock"):
        _leftovers(out, folder)
        yield out
