"""What may change when a run resumes, and how the change is recorded.

``stardiff fit RECIPE --resume`` continues a checkpoint with the recipe as it is now. The
checkpoint records the recipe it was trained with; every key that differs is either

* **refused** with one line naming the key, the old and the new value: the model's shape
  (``[model]``), the data and its split (``[data]``, ``[transforms]``) and every training key
  whose change would make the run something else than "the same run, continued" (the batches,
  the seed, the weight average, a switch between epochs and a time budget); or
* **applied** from the next epoch on and **recorded**: ``{"key", "from", "to", "epoch"}`` in the
  model's ``config.json`` (``training.changes``) and the checkpoint, ``epoch`` being the first
  epoch trained with the new value. These are :data:`CHANGEABLE`: more epochs (never fewer than
  done), another time budget, the learning rates and weight decay (the optimizer and the
  schedule take the new values), the gradient clip, how often to checkpoint, and where and how
  fast it runs (device, threads, compile, bf16).

``[evaluate]`` keys only change the figures and are taken as they are. The table itself must
hold the same training and validation rows (:func:`check_rows`): a table rewritten since is
another run's data, whatever its path.
"""

from __future__ import annotations

import json

from stardiff.errors import RecipeError

__all__ = ["CHANGEABLE", "apply_changes", "check_rows", "recipe_changes", "rows_digest"]

#: Training keys that may change on resume (applied from the next epoch, recorded).
CHANGEABLE = frozenset(
    {
        "train.epochs",
        "train.time_budget",
        "train.lr",
        "train.lr_min",
        "train.weight_decay",
        "train.grad_clip",
        "train.checkpoint_every",
        "train.device",
        "train.threads",
        "train.compile",
        "train.bf16",
    }
)
#: Keys that say nothing about the training itself.
_IGNORED_SECTIONS = ("evaluate.", "name")
_IGNORED = frozenset({"train.out"})


def _flat(recipe: dict) -> dict:
    """``{"section.key": value}`` of a recipe's ``to_dict()``, in JSON form."""
    out = {}
    for section, body in json.loads(json.dumps(recipe)).items():
        if isinstance(body, dict) and section != "transforms":
            out.update({f"{section}.{k}": v for k, v in body.items()})
        else:
            out[section] = body
    return out


def recipe_changes(before: dict, after: dict, epochs_done: int) -> list[dict]:
    """The changes between the checkpoint's recipe and the resuming one, or a refusal.

    Parameters
    ----------
    before, after : dict
        ``Recipe.to_dict()`` of the checkpoint's run and of the resuming recipe.
    epochs_done : int
        Epochs the checkpoint holds: a change takes effect from epoch ``epochs_done + 1``.

    Returns
    -------
    list of dict
        ``{"key", "from", "to", "epoch"}`` for each applied change.

    Raises
    ------
    RecipeError
        A key that may not change, or fewer epochs than done (one line naming the key).
    """
    old, new = _flat(before), _flat(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in _IGNORED or key.startswith(_IGNORED_SECTIONS) or old.get(key) == new.get(key):
            continue
        a, b = old.get(key), new.get(key)
        if key not in CHANGEABLE:
            raise RecipeError(
                f"--resume: '{key}' was {a!r} in the checkpoint's run and is {b!r} now; it cannot "
                "change within a run (start a new one, or put it back)"
            )
        _check_change(key, a, b, epochs_done)
        changes.append({"key": key, "from": a, "to": b, "epoch": epochs_done + 1})
    return changes


def _check_change(key: str, a, b, epochs_done: int) -> None:
    if key == "train.epochs" and b < epochs_done:
        raise RecipeError(
            f"--resume: 'train.epochs' = {b} is fewer than the {epochs_done} epochs this run has "
            "done; give at least as many"
        )
    if key == "train.time_budget" and bool(a) != bool(b):
        raise RecipeError(
            f"--resume: 'train.time_budget' was {a} and is {b} now; a run cannot switch between "
            "an epoch count and a time budget"
        )


def apply_changes(optimizer, scheduler, recipe, changes: list[dict]) -> None:
    """Give the optimizer and the learning-rate schedule the resuming recipe's values.

    A checkpoint restores the old learning rates and weight decay; a recorded change of
    ``train.lr``, ``train.lr_min`` or ``train.weight_decay`` must reach them, or the run would
    say one thing and do another. Other changeable keys are read from the recipe each step.
    """
    keys = {c["key"] for c in changes}
    t = recipe.train
    if "train.lr" in keys:
        scheduler.base_lrs = [t.lr for _ in scheduler.base_lrs]
        for group in optimizer.param_groups:
            group["initial_lr"] = t.lr
    if "train.lr_min" in keys:
        scheduler.eta_min = t.lr_min
    if "train.weight_decay" in keys:
        for group in optimizer.param_groups:
            group["weight_decay"] = t.weight_decay


def rows_digest(hashes: dict | None) -> str | None:
    """SHA-256 of a run's training and validation row hashes: which rows it trains on."""
    import hashlib

    import numpy as np

    if not hashes:
        return None
    h = hashlib.sha256()
    for key in ("train", "validation"):
        h.update(np.sort(np.asarray(hashes[key], dtype=np.uint64)).tobytes())
    return h.hexdigest()


def check_rows(before: str | None, now: str | None, recipe) -> None:
    """Refuse a resume whose table no longer holds the checkpoint's training rows."""
    if before is not None and now is not None and before != now:
        raise RecipeError(
            f"--resume: {recipe.table_path()} holds other training or validation rows than the "
            "checkpoint's run (the table changed since); a run continues on its own rows: "
            "start a new one, or restore the table"
        )
