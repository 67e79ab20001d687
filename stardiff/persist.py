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

import torch
from safetensors.torch import load_file, save_file

from stardata.io import atomic_path, read_json, recover_folder, replace_folder, temp_sibling
from stardata.io import write_json as _write_json

__all__ = [
    "atomic_write_text",
    "write_json",
    "read_json",
    "save_weights",
    "load_weights",
    "save_training_state",
    "load_training_state",
]

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON in its own key order (config files read top-down)."""
    _write_json(path, data, sort_keys=False)


def save_weights(path: str | Path, module: torch.nn.Module) -> None:
    """Save a module's state dict (parameters and persistent buffers) as safetensors."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def load_weights(path: str | Path, module: torch.nn.Module) -> None:
    """Load safetensors weights into ``module``; every key must match exactly."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"missing weights file {path}")
    state = load_file(str(path))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path.name}: weights do not fit the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )


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
        save_file(tensors, str(tmp / "state.safetensors"))
        _write_json(tmp / "state.json", {**info, "optimizer": opt_rest}, sort_keys=False)
        replace_folder(tmp, folder / CHECKPOINT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_training_state(folder: str | Path) -> tuple[dict, dict, dict, dict]:
    """Read a checkpoint: ``(model_state, optimizer_state, rng_states, info)``."""
    ck = recover_folder(Path(folder) / CHECKPOINT)
    if not (ck / "state.safetensors").exists() or not (ck / "state.json").exists():
        raise FileNotFoundError(f"no training checkpoint in {folder} (looked for {ck})")
    tensors = load_file(str(ck / "state.safetensors"))
    info = read_json(ck / "state.json")
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    optim = _unflatten_optimizer(tensors, info.pop("optimizer"))
    return model, optim, rng, info
