"""Quality of the California recipe for a training budget: train, then score the protocol.

    python -m benchmarks.train_budget epochs=128 noise_draws=8 [threads=1] [--out DIR]

Any ``[train]`` key of the recipe can be overridden as KEY=VALUE. Prints one JSON line with
the overrides, the training seconds and the protocol figures of the full ancestral sampler.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks import california_protocol as cp
from benchmarks.samplers import score

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "california.toml"


def _overrides(items: list[str], train) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not hasattr(train, key):
            raise SystemExit(f"train_budget: expected a [train] KEY=VALUE, got {item!r}")
        out[key] = type(getattr(train, key))(value)
    return out


def main(argv=None) -> int:
    from stardiff import fit
    from stardiff.recipe import load_recipe, override

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--out", help="keep the model here (default: a temporary folder)")
    args = p.parse_intermixed_args(argv)  # overrides may follow the options
    recipe = load_recipe(RECIPE)
    kv = _overrides(args.overrides, recipe.train)
    recipe = override(recipe, "train", **kv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = args.out or tmp
        model = fit(recipe, out=out, progress=False, figures=False, overwrite=True)
        rec = {**kv, "train_seconds": round(time.perf_counter() - t0, 1)}
        res = score(model, "ancestral", None, seeds=1)
    rec.update({k: res[k] for k in cp.SCORES})
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
