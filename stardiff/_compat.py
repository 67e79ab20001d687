"""The old paths of modules that moved in 0.2.0 (see ``CHANGELOG.md``); they warn when used.

``import stardiff.sampling`` (say) raises a ``DeprecationWarning`` naming the new path and
returns a module whose names come from the new one(s) (:class:`stardata.moved.MovedFinder`).
"""

from __future__ import annotations

import os

from stardata.moved import MovedFinder

__all__ = ["CHANGED", "MOVED", "install"]

#: old module → the module(s) its public names now live in, searched in order.
MOVED: dict[str, tuple[str, ...]] = {
    "stardiff.budget": ("stardiff.train.budget",),
    "stardiff.data": ("stardiff.tables", "stardiff.train.batches"),
    "stardiff.distributed": ("stardiff.train.distributed",),
    "stardiff.ema": ("stardiff.train.ema",),
    "stardiff.evaldata": ("stardiff.evaluate.rows",),
    "stardiff.evaluate_figures": ("stardiff.evaluate.figures",),
    "stardiff.folders": ("stardiff.persist.folder",),
    "stardiff.guards": ("stardiff.infer.guards",),
    "stardiff.inputs": ("stardiff.infer.inputs",),
    "stardiff.joint": ("stardiff.infer.joint",),
    "stardiff.model.sampler": ("stardiff.model.samplers",),
    "stardiff.predict_stream": ("stardiff.predict.stream",),
    "stardiff.prepared": ("stardiff.train.prepared",),
    "stardiff.rowhash": ("stardiff.persist.rowhash",),
    "stardiff.sampling": ("stardiff.model.samplers",),
    "stardiff.sky": ("stardiff.predict.sky",),
    "stardiff.step": ("stardiff.train.step",),
}


def _predict_catalog(model, *args, **kwargs):
    """``stardiff.sky.predict_catalog`` took a model folder; the new one takes a model."""
    from stardiff.infer import load
    from stardiff.predict import predict_catalog

    if isinstance(model, str | os.PathLike):
        model = load(model)
    return predict_catalog(model, *args, **kwargs)


#: names whose signature changed: served by a wrapper that accepts the old arguments.
CHANGED = {("stardiff.sky", "predict_catalog"): _predict_catalog}


def install() -> None:
    """Serve the old paths (once per process)."""
    MovedFinder(MOVED, CHANGED).install()
