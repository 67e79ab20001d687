"""Model folders and training checkpoints: safetensors + JSON, written atomically.

A model folder holds ``config.json`` (every hyper-parameter, the vocabulary, the
transforms and standardization, the schedule, the package version) and
``model.safetensors`` (the weights, schedule buffers included). Training state
(optimizer, RNG, epoch, history) lives apart in ``checkpoint/``. Nothing is ever
unpickled: loading reads JSON and safetensors only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from stardata.io import atomic_path, read_json, recover_folder, replace_folder, temp_sibling
from stardata.io import write_json as _write_json
from stardiff.errors import ModelFileError

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "FIGURE_SOFTWARE",
    "METRICS",
    "METRIC_FIELDS",
    "ROWS",
    "WEIGHTS",
    "PAIR_KEY",
    "atomic_write_text",
    "check_finite_tensors",
    "check_pair",
    "is_own_figure",
    "safetensors_metadata",
    "save_figure",
    "write_json",
    "read_json",
    "save_weights",
    "save_model_files",
    "load_weights",
    "load_tensors",
    "save_row_hashes",
    "load_row_hashes",
    "save_training_state",
    "load_training_state",
    "TrainingState",
]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint"
ROWS = "rows.safetensors"  # content hashes of the training and validation rows
METRICS = "metrics.csv"  # per-epoch history, one row an epoch, these columns:
METRIC_FIELDS = ["epoch", "train_loss", "val_loss", "lr", "seconds", "rows_per_s"]
#: The PNG ``Software`` text of every figure stardiff draws: how a rerun knows its own figures.
FIGURE_SOFTWARE = "stardiff"


def save_figure(fig, path: str | Path, dpi: int) -> Path:
    """Save a matplotlib figure as PNG, atomically, tagged ``Software: stardiff``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": FIGURE_SOFTWARE})
    return path


def is_own_figure(path: Path) -> bool:
    """Whether ``path`` is a PNG stardiff drew (its ``Software`` tag; Matplotlib's for figures
    drawn before the tag existed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if not head.startswith(b"\x89PNG"):
        return False
    return b"Software\x00" + FIGURE_SOFTWARE.encode() in head or b"Software\x00Matplotlib" in head


def safetensors_metadata(path: str | Path) -> dict | None:
    """The ``__metadata__`` of a safetensors file's header, or None if it is not one."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return header.get("__metadata__", {}) if isinstance(header, dict) else None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON in its own key order (config files read top-down)."""
    _write_json(path, data, sort_keys=False)


def _write_safetensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """Write tensors as safetensors through a plain ``open`` (safetensors' own writer creates
    0600 files; this one respects the umask, so a group can read a shared model)."""
    Path(path).write_bytes(safetensors_bytes(tensors, metadata=metadata))


def _state_tensors(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_weights(path: str | Path, module: torch.nn.Module, metadata: dict | None = None) -> None:
    """Save a module's state dict (parameters and persistent buffers) as safetensors, atomically.

    ``metadata``: string entries of the header (``format`` is ``"pt"`` unless given).
    """
    with atomic_path(path) as tmp:
        meta = {"format": "pt", **(metadata or {})}
        _write_safetensors(_state_tensors(module), tmp, metadata=meta)


def save_model_files(folder: str | Path, config: dict, module: torch.nn.Module) -> None:
    """Write ``config.json`` and ``model.safetensors`` as a pair.

    Both are written in full to temporary siblings before either is renamed into place, so a
    failure while writing (a full disk) leaves the folder as it was. The weights record the
    SHA-256 of the config they belong to: a kill between the two renames, or a hand-edited
    config, is found by :func:`check_pair` when the folder is loaded, never read as a model
    whose config describes other weights.
    """
    import hashlib

    folder = Path(folder)
    with atomic_path(folder / CONFIG) as cfg, atomic_path(folder / WEIGHTS) as w:
        _write_json(cfg, config, sort_keys=False)
        pair = hashlib.sha256(cfg.read_bytes()).hexdigest()
        _write_safetensors(_state_tensors(module), w, metadata={"format": "pt", PAIR_KEY: pair})


#: The weights' metadata key holding the SHA-256 of their ``config.json``.
PAIR_KEY = "config_sha256"


def check_pair(folder: str | Path) -> None:
    """Refuse a model folder whose ``config.json`` is not the one its weights were saved with.

    Weights saved before the pair was recorded are not checked.
    """
    import hashlib

    folder = Path(folder)
    meta = safetensors_metadata(folder / WEIGHTS) or {}
    if PAIR_KEY not in meta:
        return
    digest = hashlib.sha256((folder / CONFIG).read_bytes()).hexdigest()
    if digest != meta[PAIR_KEY]:
        raise ModelFileError(
            f"{folder}: {CONFIG} is not the config {WEIGHTS} was saved with (it was edited, or a "
            "run was stopped between writing the two); `stardiff fit RECIPE --resume` writes "
            "both again from the checkpoint"
        )


def load_tensors(path: str | Path) -> dict:
    """Read a safetensors file; a missing, truncated or corrupt one is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"missing {path.name} in {path.parent}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ModelFileError(
            f"{path}: not a readable safetensors file ({e}); the file is truncated or damaged"
        ) from None


def load_weights(path: str | Path, module: torch.nn.Module) -> None:
    """Load safetensors weights into ``module``; every key and shape must match exactly."""
    path = Path(path)
    state = load_tensors(path)
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a size mismatch: weights of another configuration
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise ModelFileError(f"{path}: weights do not fit config.json ({first})") from None
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: weights do not fit config.json (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    check_finite_tensors(path, state)


def check_finite_tensors(path: Path, state: dict) -> None:
    """Refuse weights holding NaN or infinite values, naming the file and the tensor."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFileError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the weights are "
                "damaged (or saved from a diverged run)"
            )


def save_row_hashes(folder: str | Path, **hashes: np.ndarray) -> None:
    """Write sorted uint64 row hashes (e.g. ``train=``, ``validation=``) to ``rows.safetensors``."""
    tensors = {
        k: torch.from_numpy(np.sort(v.astype(np.uint64)).view(np.int64)) for k, v in hashes.items()
    }
    with atomic_path(Path(folder) / ROWS) as tmp:
        _write_safetensors(tensors, tmp, metadata={"format": "stardiff-row-hashes"})


def load_row_hashes(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The sorted uint64 row hashes of a model folder, or None if it records none."""
    path = Path(folder) / ROWS
    if not path.exists():
        return None
    return {k: v.numpy().view(np.uint64) for k, v in load_tensors(path).items()}


def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, rest = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                rest["state"].setdefault(str(pid), {})[key] = value
    return tensors, rest


def _unflatten_optimizer(tensors: dict, rest: dict) -> dict:
    state: dict = {int(k): dict(v) for k, v in rest["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


class TrainingState(NamedTuple):
    """What a checkpoint holds: the network's and optimizer's states, the random generators,
    ``info`` (``state.json``: epoch, history, scheduler, recipe, changes, …) and the weight
    average's state (None without ``train.ema``)."""

    model: dict
    optimizer: dict
    rng: dict
    info: dict
    ema: dict | None = None


def save_training_state(
    folder: str | Path, *, model, optimizer, rng: dict, info: dict, ema=None
) -> None:
    """Write ``folder/checkpoint/`` (state.safetensors + state.json) atomically as a whole.

    ``ema``: the module holding the weight average, kept with the rest so that a checkpoint
    alone resumes a run (never the model folder's weights, which may be another epoch's).
    """
    folder = Path(folder)
    tmp = temp_sibling(folder / CHECKPOINT)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
        }
        if ema is not None:
            tensors.update({f"ema.{k}": v for k, v in _state_tensors(ema).items()})
        opt_tensors, opt_rest = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors.update({f"rng.{k}": v.cpu() for k, v in rng.items()})
        _write_safetensors(tensors, tmp / "state.safetensors")
        _write_json(tmp / "state.json", {**info, "optimizer": opt_rest}, sort_keys=False)
        replace_folder(tmp, folder / CHECKPOINT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: ``state.json`` keys a checkpoint must hold, and their types.
_STATE_KEYS = {"epoch": int, "history": list, "scheduler": dict, "optimizer": dict}


def load_training_state(folder: str | Path) -> TrainingState:
    """Read a checkpoint; a damaged or hand-edited one is a one-line :class:`ModelFileError`."""
    ck = recover_folder(Path(folder) / CHECKPOINT)
    if not (ck / "state.safetensors").exists() or not (ck / "state.json").exists():
        raise FileNotFoundError(f"no training checkpoint in {folder} (looked for {ck})")
    tensors = load_tensors(ck / "state.safetensors")
    info = read_json(ck / "state.json")
    where = ck / "state.json"
    if not isinstance(info, dict):
        raise ModelFileError(f"{where}: not a stardiff checkpoint (not a JSON object)")
    for key, kind in _STATE_KEYS.items():
        if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
            raise ModelFileError(
                f"{where}: not a stardiff checkpoint ('{key}' missing or not {kind.__name__})"
            )
    if info["epoch"] < 0:
        raise ModelFileError(f"{where}: 'epoch' is {info['epoch']}, not a count of epochs")
    parts = {p: {} for p in ("model", "rng", "ema")}
    for k, v in tensors.items():
        head, _, rest = k.partition(".")
        if head in parts:
            parts[head][rest] = v
    try:
        optim = _unflatten_optimizer(tensors, info.pop("optimizer"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(f"{where}: not a stardiff checkpoint ({e!r})") from None
    return TrainingState(parts["model"], optim, parts["rng"], info, parts["ema"] or None)
