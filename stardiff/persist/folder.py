"""The model folder as a unit: what stardiff owns in it, one writer at a time, no leftovers.

``stardiff fit`` holds :class:`stardata.locks.FolderLock` on its ``--out`` folder for the whole
run (rank 0 under ``torchrun``), so a second fit into the same folder stops at once with a
one-line error naming the folder and the process that holds it. At the start it finishes or
undoes a checkpoint swap that a kill interrupted and removes the temporary files killed runs
left. ``--overwrite`` removes only the files stardiff writes (:func:`is_own`) and refuses
on a folder that holds anything else, naming what is there: a user's folder is never
emptied.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from stardata.io import recover_folder, remove_partials
from stardata.locks import FolderLock
from stardata.outpaths import check_folder
from stardiff.persist.distilled import DISTILLED, is_distilled_index, is_distilled_weights
from stardiff.persist.files import (
    CHECKPOINT,
    CONFIG,
    METRIC_FIELDS,
    METRICS,
    PAIR_KEY,
    ROWS,
    WEIGHTS,
    is_own_figure,
    safetensors_metadata,
)

__all__ = [
    "OWN_NAMES",
    "check_out_folder",
    "foreign_entries",
    "is_own",
    "prepare_model_folder",
    "training_folder",
]


def _is_model_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == "stardiff-model"
    except (OSError, ValueError, AttributeError):
        return False


def _is_metrics(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n") == ",".join(METRIC_FIELDS)
    except (OSError, UnicodeDecodeError):
        return False


def _is_checkpoint(path: Path) -> bool:
    names = {p.name for p in path.iterdir()} if path.is_dir() and not path.is_symlink() else None
    return (
        bool(names)
        and names <= {"state.json", "state.safetensors"}
        and (safetensors_metadata(path / "state.safetensors") is not None)
    )


def _is_lock(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
        return not text or "pid" in json.loads(text)
    except (OSError, ValueError, TypeError):
        return False


def _is_weights(path: Path) -> bool:
    meta = safetensors_metadata(path)
    return meta is not None and (PAIR_KEY in meta or _is_model_config(path.with_name(CONFIG)))


def _is_rows(path: Path) -> bool:
    return (safetensors_metadata(path) or {}).get("format") == "stardiff-row-hashes"


#: Everything ``stardiff fit`` writes into a model folder: a name (glob pattern) and how its
#: content shows that stardiff wrote it. A name alone is not enough: a user's ``metrics.csv``
#: or ``config.json`` in the folder is theirs, never replaced.
OWN_NAMES = {
    CONFIG: _is_model_config,
    WEIGHTS: _is_weights,
    ROWS: _is_rows,
    METRICS: _is_metrics,
    CHECKPOINT: _is_checkpoint,
    f".{CHECKPOINT}.old": _is_checkpoint,  # the previous checkpoint during a swap
    DISTILLED: is_distilled_index,  # stardiff distill: its heads' index
    "distilled-*.safetensors": is_distilled_weights,  # and the heads
    "unconditional.png": is_own_figure,  # stardiff.figures.training_figures
    "conditional_*.png": is_own_figure,
    FolderLock.NAME: _is_lock,
    ".*.part-*": lambda p: True,  # temporary siblings of atomic writes
}


def is_own(path: Path) -> bool:
    """Whether stardiff wrote ``path``: a name it writes, holding what it writes there."""
    for pattern, content in OWN_NAMES.items():
        if fnmatch.fnmatchcase(path.name, pattern):
            return content(path)
    return False


def foreign_entries(folder: Path) -> list[str]:
    """Sorted names in ``folder`` that stardiff did not write."""
    return sorted(p.name for p in folder.iterdir() if not is_own(p))


def check_out_folder(out: Path, option: str = "--out", *, inputs=(), own=None, what="") -> None:
    """One-line errors for an output folder that is a file, an input or cannot be created.

    With ``own`` (whether an entry is the writer's), a folder holding anything else is
    refused too, naming what is there (:func:`stardata.outpaths.check_folder`).
    """
    if (out.exists() or out.is_symlink()) and not out.is_dir():  # a link to a folder is fine
        raise NotADirectoryError(f"{option} {out} is a file, not a folder")
    if own is not None:
        check_folder(out, own_entry=own, what=what, option=option, inputs=inputs)
    out.mkdir(parents=True, exist_ok=True)  # an OSError names the path it could not create


def prepare_model_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for a fit; call it while holding the folder's lock.

    Parameters
    ----------
    out : Path
        The model folder (exists: the lock created it).
    resume : bool
        Continue from ``out/checkpoint`` (recovered first if a kill interrupted its swap).
    overwrite : bool
        Remove stardiff's own files first; refuse if the folder holds anything else.
    """
    recover_folder(out / CHECKPOINT)
    remove_partials(out)
    if resume:
        if not (out / CHECKPOINT).is_dir():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from in {out}")
        named = lambda n: any(fnmatch.fnmatchcase(n, k) for k in OWN_NAMES)  # noqa: E731
        clash = [n for n in foreign_entries(out) if named(n)]
        if clash:  # a name stardiff writes, holding something else: never replaced
            raise FileExistsError(
                f"--resume: {out / clash[0]} was not written by stardiff and would be replaced; "
                "move it away"
            )
        return
    entries = [p for p in sorted(out.iterdir()) if p.name != FolderLock.NAME]
    foreign = foreign_entries(out)
    # a folder with no model, no checkpoint and nothing foreign holds only what a failed
    # first run left (row hashes, metrics, both recognised by their content): a fresh fit
    # replaces it without --overwrite
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise FileExistsError(
            f"output folder {out} holds files stardiff did not write "
            f"({', '.join(foreign[:5])}{more}); choose another --out or move them away"
        )
    model = [p for p in entries if p.name in (CONFIG, WEIGHTS, CHECKPOINT)]
    if model and not overwrite:
        raise FileExistsError(
            f"output folder {out} is not empty; use --resume to continue "
            "its training or --overwrite to start again"
        )
    for p in entries:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _all_ok(ok: bool, world, device: torch.device) -> bool:
    """Whether every rank reports ``ok`` (a collective: every rank must call it)."""
    if not world.active:
        return ok
    flag = torch.tensor([1 if ok else 0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


@contextlib.contextmanager
def training_folder(
    out: Path, world, device: torch.device, *, resume: bool, overwrite: bool
) -> Iterator[None]:
    """Hold ``out``'s lock (rank 0) and prepare it for the whole block.

    Rank 0 takes the lock and prepares the folder; every rank learns whether that worked,
    so a refused folder stops every rank instead of leaving them waiting for rank 0.
    """
    lock, error = None, None
    if world.main:
        try:
            check_out_folder(out)
            lock = FolderLock(out, "stardiff fit").acquire()
            prepare_model_folder(out, resume=resume, overwrite=overwrite)
        except Exception as e:  # raised below, after the other ranks heard of it
            error = e
    try:
        if not _all_ok(error is None, world, device):
            if error is not None:
                raise error
            raise ValueError(f"rank 0 could not prepare {out}; see its message")
        yield
    finally:
        if lock is not None:
            lock.release()
