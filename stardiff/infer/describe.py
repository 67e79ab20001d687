"""What a model folder holds, as ``stardiff info`` prints it: one call, :func:`describe`."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["describe", "history_summary"]


def history_summary(folder: str | Path) -> dict:
    """Epochs, final and best losses and total time from the folder's ``metrics.csv``.

    Returns an empty dict when the folder has no (or an empty) ``metrics.csv``.
    """
    path = Path(folder) / "metrics.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    val = [_loss(r["val_loss"]) for r in rows]
    scored = [i for i, v in enumerate(val) if v is not None]
    best = min(scored, key=lambda i: val[i]) if scored else None
    return {
        "epochs": int(rows[-1]["epoch"]),
        "final_train_loss": float(rows[-1]["train_loss"]),
        "final_val_loss": val[-1],  # None: no validation rows (JSON null, never NaN)
        "best_val_loss": None if best is None else val[best],
        "best_epoch": None if best is None else int(rows[best]["epoch"]),
        "train_seconds": round(sum(float(r["seconds"]) for r in rows), 1),
    }


def _loss(text: str) -> float | None:
    """A loss cell of ``metrics.csv``: empty or NaN (no validation) is None."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


def describe(folder: str | Path) -> dict:
    """A JSON-ready description of a saved model.

    Parameters
    ----------
    folder : path-like
        A model folder written by :func:`stardiff.fit`.

    Returns
    -------
    dict
        Version, parameter count, network configuration, vocabulary, requestable columns,
        non-identity transforms, training settings with a summary of the loss history, the
        recipe the model was trained from, and the distilled heads saved beside it.
    """
    from stardata.io import finite_json
    from stardiff.infer.density import load

    model = load(folder)
    cfg = model.config()
    training = model.meta.get("training", {})
    return finite_json(
        {
            "model": str(folder),
            "stardiff_version": cfg["stardiff_version"],
            "n_parameters": model.n_parameters(),
            "network": cfg["network"],
            "vocabulary": list(model.columns),
            "requestable": model.requestable,
            "transforms": {
                c: t.kind
                for c, t in zip(model.columns, model.pre.transforms, strict=True)
                if t.kind != "identity"
            },
            "training": {**training, "history": history_summary(model.folder)},
            "recipe": model.meta.get("recipe", {}),
            "distilled": _distilled(model.folder),
        }
    )  # JSON has no NaN: a missing loss is null


def _distilled(folder: Path) -> dict:
    """The distilled heads beside the model (``stardiff distill``): K → steps and how trained;
    ``{}`` without any, ``{"error": ...}`` for a damaged index."""
    from stardiff import persist
    from stardiff.errors import ModelFileError

    try:
        index = persist.read_distilled(folder) or {}
    except ModelFileError as e:
        return {"error": str(e)}
    keep = ("steps", "teacher", "batches", "seconds", "validation_rms")
    heads = {k: {f: v.get(f) for f in keep} for k, v in index.get("heads", {}).items()}
    return {"default": index["default"], "heads": heads} if heads else {}
