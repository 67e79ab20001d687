"""Accuracy of each sampler of one trained model on the California protocol.

    python -m benchmarks.samplers runs/california --seeds 2 --steps 10,20
    python -m benchmarks.samplers runs/california --only dpm2 --steps 20 --distilled 4,2,1

Prints one JSON line per sampler (ancestral, then ddim and dpm2 at each K, then the distilled
students of ``--distilled`` K, which ``stardiff distill`` must have saved in the model folder):
the protocol figures averaged over ``--seeds`` sampler seeds (the PIT KS of 500 rows alone
varies by ~0.003 between seeds), with the spread of the KS values, the seconds taken and the
draws per second of the protocol's sampling. ``--record FILE`` appends the lines to FILE.
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
    draws = cp.N_EVAL * cp.N_SAMPLES_COND * (len(cp.COLUMNS) + 1)
    draws += cp.N_SAMPLES_UNCOND * len(cp.COLUMNS)
    rec["protocol_draws_per_s"] = round(seeds * draws / (time.perf_counter() - t0))
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
    p.add_argument(
        "--only",
        default="ancestral,ddim,dpm2",
        help="which of ancestral, ddim, dpm2 to score (comma-separated)",
    )
    p.add_argument("--distilled", default="", help="K of the saved distilled students to score")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--tag", default="", help="a name for the records")
    p.add_argument("--record", help="JSON-lines file to append the records to")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load(args.model)
    only = set(args.only.split(","))
    configs = [("ancestral", None)] if "ancestral" in only else []
    configs += [(m, int(k)) for m in ("ddim", "dpm2") if m in only for k in args.steps.split(",")]
    configs += [("distilled", int(k)) for k in args.distilled.split(",") if k]
    for method, steps in configs:
        rec = {"model": args.model, "tag": args.tag, **score(model, method, steps, args.seeds)}
        if method == "distilled":
            rec["distilled"] = {k: model.student(steps).info.get(k) for k in ("batches", "seconds")}
        print(json.dumps(rec), flush=True)
        if args.record:
            with open(args.record, "a") as f:
                f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
