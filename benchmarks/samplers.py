"""Accuracy of each sampler of one trained model on the California protocol.

    python -m benchmarks.samplers runs/california --seeds 2 --steps 10,20

Prints one JSON line per sampler (ancestral, then ddim and dpm2 at each K): the protocol
figures averaged over ``--seeds`` sampler seeds (the PIT KS of 500 rows alone varies by
~0.003 between seeds), with the spread of the KS values and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks import california_protocol as cp


def model_sampler(model, steps: int | None = None, seed: int = 0, method: str | None = None):
    """Adapt a DensityModel to the protocol's ``sampler(given, col, n, rng)`` interface."""
    how = {"seed": seed, "sampler": method, "steps": steps}

    def sampler(given: np.ndarray, col: int, n: int, rng) -> np.ndarray:
        cols = {c: given[:, j] for j, c in enumerate(cp.COLUMNS) if not np.isnan(given[:, j]).all()}
        if not cols:
            draws = model.sample({}, cp.COLUMNS[col], n * given.shape[0], **how)
            return draws.reshape(given.shape[0], n)
        return model.sample(cols, cp.COLUMNS[col], n, **how)

    return sampler


def score(model, method: str, steps: int | None, seeds: int) -> dict:
    """Protocol figures of one sampler, averaged over ``seeds`` sampler seeds."""
    t0 = time.perf_counter()
    runs = [
        cp.run_protocol(model_sampler(model, steps, seed=s, method=method), seed=s)
        for s in range(seeds)
    ]
    rec = {"sampler": method, "steps": steps, "seeds": seeds}
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    rec.update({k: round(float(np.mean([r[k] for r in runs])), 4) for k in cp.SCORES})
    for k in ("a_pit_ks", "b_pit_ks"):
        rec[f"{k}_sd"] = round(float(np.std([r[k] for r in runs])), 4)
    return rec


def main(argv=None) -> int:
    from stardiff import load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a California model folder")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", default="10,20", help="K of the few-step samplers, comma-separated")
    args = p.parse_args(argv)
    model = load(args.model)
    configs = [("ancestral", None)]
    configs += [(m, int(k)) for m in ("ddim", "dpm2") for k in args.steps.split(",")]
    for method, steps in configs:
        print(json.dumps({"model": args.model, **score(model, method, steps, args.seeds)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
