"""Model folders and training checkpoints: safetensors + JSON, written atomically.

A model folder holds ``config.json`` (every hyper-parameter, the vocabulary, the
transforms and standardization, the schedule, the package version) and
``model.safetensors`` (the weights, schedule buffers included). Training state
(optimizer, RNG, epoch, history) lives apart in ``checkpoint/``. Nothing is ever
unpickled: loading reads JSON and safetensors only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

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


def _tmp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing {path.name} in {path.parent}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def save_weights(path: str | Path, module: torch.nn.Module) -> None:
    """Save a module's state dict (parameters and persistent buffers) as safetensors."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = _tmp_path(path)
    try:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=folder))
    try:
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
        }
        opt_tensors, opt_rest = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors.update({f"rng.{k}": v.cpu() for k, v in rng.items()})
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**info, "optimizer": opt_rest}, indent=1))
        final, old = folder / CHECKPOINT, folder / f".{CHECKPOINT}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_training_state(folder: str | Path) -> tuple[dict, dict, dict, dict]:
    """Read a checkpoint: ``(model_state, optimizer_state, rng_states, info)``."""
    ck = Path(folder) / CHECKPOINT
    if not (ck / "state.safetensors").exists() or not (ck / "state.json").exists():
        raise FileNotFoundError(f"no training checkpoint in {folder} (looked for {ck})")
    tensors = load_file(str(ck / "state.safetensors"))
    info = read_json(ck / "state.json")
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    optim = _unflatten_optimizer(tensors, info.pop("optimizer"))
    return model, optim, rng, info
