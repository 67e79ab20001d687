"""Distilled heads beside a model: ``distilled-K.safetensors`` files and ``distilled.json``.

``stardiff distill MODEL --steps K`` writes a student head (:mod:`stardiff.train.distillation`) as
``MODEL/distilled-K.safetensors`` (its weights; safetensors, never a pickle) and records it in
``MODEL/distilled.json``: per ``K``, the file's SHA-256, the SHA-256 of the teacher's
``model.safetensors`` it was distilled from, the step indices it evaluates, and how it was
trained. The last one written is the default of ``sampler="distilled"``.

Both files are written atomically, weights first: a kill between the two leaves a JSON whose
hash does not match the file, which :func:`load_distilled` refuses in one line, as it refuses
a student of other weights (the model was trained further, or replaced, after distilling).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from stardata.io import read_json
from stardiff.errors import ModelFileError
from stardiff.persist.files import (
    WEIGHTS,
    load_weights,
    safetensors_metadata,
    save_weights,
    write_json,
)

__all__ = [
    "DISTILLED",
    "DISTILLED_FORMAT",
    "distilled_file",
    "is_distilled_index",
    "is_distilled_weights",
    "load_distilled",
    "read_distilled",
    "save_distilled",
    "teacher_digest",
]

#: The index of a model folder's distilled heads.
DISTILLED = "distilled.json"
#: ``format`` of ``distilled.json`` and of the metadata of each head's safetensors file.
DISTILLED_FORMAT = "stardiff-distilled"
FORMAT_VERSION = 1


def distilled_file(k: int) -> str:
    """The file name of the ``k``-step student: ``distilled-K.safetensors``."""
    return f"distilled-{int(k)}.safetensors"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def teacher_digest(folder: str | Path) -> str:
    """SHA-256 of a model folder's ``model.safetensors``: what a student records of its teacher."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise ModelFileError(f"missing {WEIGHTS} in {folder}")
    return _sha256(path)


def is_distilled_index(path: Path) -> bool:
    """Whether ``path`` is a ``distilled.json`` stardiff wrote (by its ``format``)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == DISTILLED_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def is_distilled_weights(path: Path) -> bool:
    """Whether ``path`` is a student head's safetensors file stardiff wrote."""
    return (safetensors_metadata(path) or {}).get("format") == DISTILLED_FORMAT


def read_distilled(folder: str | Path) -> dict | None:
    """``distilled.json`` of a model folder (None if it has none); a damaged one is one line."""
    path = Path(folder) / DISTILLED
    if not path.exists():
        return None
    try:
        index = read_json(path)
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(index, dict):
        raise ModelFileError(f"{path}: not a stardiff distilled-head index")
    heads = index.get("heads")
    if index.get("format") != DISTILLED_FORMAT or not isinstance(heads, dict):
        raise ModelFileError(f"{path}: not a stardiff distilled-head index")
    if index.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format {index['format_version']} is newer than this stardiff understands "
            f"({FORMAT_VERSION}); upgrade stardiff"
        )
    return index


def save_distilled(
    folder: str | Path,
    head: torch.nn.Module,
    steps: list[int],
    info: dict,
    teacher_sha256: str | None = None,
) -> Path:
    """Write a student head beside the model and make it the default distilled sampler.

    Parameters
    ----------
    folder : path
        The model folder (holding the teacher's ``model.safetensors``).
    head : Module
        The student's head (its state dict is written).
    steps : list of int
        The step indices it evaluates, noisy to clean (``K = len(steps)``).
    info : dict
        JSON-ready facts of its training (teacher sampler, batches, seconds, losses).
    teacher_sha256 : str, optional
        :func:`teacher_digest` of the weights it was distilled from, taken when they were
        loaded (default: the folder's weights now).

    Returns
    -------
    Path
        The weights file written.
    """
    folder = Path(folder)
    k = len(steps)
    teacher = teacher_sha256 or teacher_digest(folder)
    path = folder / distilled_file(k)
    meta = {"format": DISTILLED_FORMAT, "steps": json.dumps(steps), "teacher_sha256": teacher}
    save_weights(path, head, metadata=meta)
    try:
        index = read_distilled(folder) or {}
    except ModelFileError:  # a damaged index is replaced: its heads cannot be trusted anyway
        index = {}
    heads = {kk: v for kk, v in index.get("heads", {}).items() if isinstance(v, dict)}
    heads[str(k)] = {
        "file": path.name,
        "sha256": _sha256(path),
        "teacher_sha256": teacher,
        "steps": list(steps),
        **info,
    }
    index = {
        "format": DISTILLED_FORMAT,
        "format_version": FORMAT_VERSION,
        "default": k,
        "heads": dict(sorted(heads.items(), key=lambda kv: int(kv[0]) if _is_count(kv[0]) else 0)),
    }
    write_json(folder / DISTILLED, index)
    return path


def load_distilled(folder: str | Path, k: int | None, head: torch.nn.Module) -> dict:
    """Load the ``k``-step student (None: the default) into ``head``; return its index entry.

    One-line :class:`ModelFileError` when the folder has no distilled head (or none of ``k``
    steps), when the file is not the one the index records, or when it was distilled from
    other weights than the folder's ``model.safetensors``.
    """
    folder = Path(folder)
    index = read_distilled(folder)
    if not index or not index["heads"]:
        raise ModelFileError(
            f"{folder} has no distilled head; make one with `stardiff distill {folder} --steps 4`"
        )
    have = sorted(int(x) for x in index["heads"] if _is_count(x))
    key = str(index.get("default") if k is None else int(k))
    entry = index["heads"].get(key)
    if not isinstance(entry, dict):
        raise ModelFileError(
            f"{folder} has no {key}-step distilled head (it has steps="
            f"{', '.join(map(str, have)) or 'none'}); `stardiff distill {folder} --steps {key}`"
        )
    path = folder / str(entry.get("file", distilled_file(int(key))))
    if not path.is_file():
        raise ModelFileError(f"{folder}: {path.name} is missing; distill again")
    if _sha256(path) != entry.get("sha256"):
        raise ModelFileError(
            f"{path}: not the file {DISTILLED} records (a distill was interrupted, or it was "
            "replaced); distill again"
        )
    if teacher_digest(folder) != entry.get("teacher_sha256"):
        raise ModelFileError(
            f"{path}: distilled from other weights than {folder / WEIGHTS} (the model was trained "
            f"further or replaced since); `stardiff distill {folder} --steps {key}` again"
        )
    load_weights(path, head)
    return entry


def _is_count(key) -> bool:
    """Whether an index key is a step count written in ASCII digits (``"²".isdigit()`` is
    true, yet ``int("²")`` fails)."""
    return str(key).isascii() and str(key).isdigit()
