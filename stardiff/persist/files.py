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
    "ROWS",
    "WEIGHTS",
    "atomic_write_text",
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
]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint"
ROWS = "rows.safetensors"  # content hashes of the training and validation rows


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


def save_weights(path: str | Path, module: torch.nn.Module) -> None:
    """Save a module's state dict (parameters and persistent buffers) as safetensors."""
    with atomic_path(path) as tmp:
        _write_safetensors(_state_tensors(module), tmp, metadata={"format": "pt"})


def save_model_files(folder: str | Path, config: dict, module: torch.nn.Module) -> None:
    """Write ``config.json`` and ``model.safetensors`` as a pair.

    Both are written in full to temporary siblings before either is renamed into place, so a
    failure while writing (a full disk) leaves the folder as it was: never weights without
    their config.
    """
    folder = Path(folder)
    with atomic_path(folder / CONFIG) as cfg, atomic_path(folder / WEIGHTS) as w:
        _write_json(cfg, config, sort_keys=False)
        _write_safetensors(_state_tensors(module), w, metadata={"format": "pt"})


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


def save_training_state(folder: str | Path, *, model, optimizer, rng: dict, info: dict) -> None:
    """Write ``folder/checkpoint/`` (state.safetensors + state.json) atomically as a whole."""
    folder = Path(folder)
    tmp = temp_sibling(folder / CHECKPOINT)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
        }
        opt_tensors, opt_rest = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors.update({f"rng.{k}": v.cpu() for k, v in rng.items()})
        _write_safetensors(tensors, tmp / "state.safetensors")
        _write_json(tmp / "state.json", {**info, "optimizer": opt_rest}, sort_keys=False)
        replace_folder(tmp, folder / CHECKPOINT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_training_state(folder: str | Path) -> tuple[dict, dict, dict, dict]:
    """Read a checkpoint: ``(model_state, optimizer_state, rng_states, info)``."""
    ck = recover_folder(Path(folder) / CHECKPOINT)
    if not (ck / "state.safetensors").exists() or not (ck / "state.json").exists():
        raise FileNotFoundError(f"no training checkpoint in {folder} (looked for {ck})")
    tensors = load_tensors(ck / "state.safetensors")
    info = read_json(ck / "state.json")
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    try:
        optim = _unflatten_optimizer(tensors, info.pop("optimizer"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(f"{ck / 'state.json'}: not a stardiff checkpoint ({e!r})") from None
    return model, optim, rng, info
