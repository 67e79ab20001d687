"""Crossmatch throughput: positions against a local reference table of Gaia rows; prints JSON.

    python -m benchmarks.crossmatch                       # 1e5 positions vs 1e6 reference rows
    python -m benchmarks.crossmatch --positions 10000 --reference 100000

The reference is uniform on the sky with Gaia-like proper motions (a few with ~1″/yr),
parallaxes and, for a fifth of the rows, radial velocities (so the propagation does its full
work); the catalogue holds 90 % of positions taken from reference stars moved to J2000.0
(0.1″ jitter) and 10 % random positions, in a random order. Timed:
``stardata.crossmatch.crossmatch(..., reference=..., epoch=2000.0, columns="match")``
(reading, checking, propagating, matching, building the output table). Peak memory is the
process's peak RSS, next to its RSS before the call (inputs built). Run it on an idle machine;
a shared one moves the wall time (set OMP_NUM_THREADS=1 to compare runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import polars as pl

from benchmarks import rss_gb


def _inputs(n_pos: int, n_ref: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n_ref)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_ref)))
    pm = rng.lognormal(np.log(5.0), 1.0, (2, n_ref)) * rng.choice([-1, 1], (2, n_ref))
    fast = rng.random(n_ref) < 1e-3
    pm[:, fast] *= 1000.0 / np.maximum(np.abs(pm[:, fast]), 1.0)  # ~1″/yr
    ref = pl.DataFrame(
        {
            "source_id": np.arange(1, n_ref + 1, dtype=np.int64) * 1000,
            "ra": ra,
            "dec": dec,
            "pmra": pm[0],
            "pmdec": pm[1],
            "parallax": rng.lognormal(np.log(0.5), 1.0, n_ref),
            "radial_velocity": np.where(rng.random(n_ref) < 0.2, rng.normal(0, 40, n_ref), np.nan),
        }
    )
    n_hit = int(0.9 * n_pos)
    pick = rng.choice(n_ref, n_hit, replace=False)
    dt = 2000.0 - 2016.0
    d = dec[pick] + pm[1, pick] * dt / 3.6e6 + rng.normal(0, 0.1, n_hit) / 3600
    r = ra[pick] + pm[0, pick] * dt / 3.6e6 / np.cos(np.radians(dec[pick]))
    r += rng.normal(0, 0.1, n_hit) / 3600 / np.cos(np.radians(dec[pick]))
    extra = n_pos - n_hit
    cat_ra = np.concatenate([np.mod(r, 360), rng.uniform(0, 360, extra)])
    cat_dec = np.concatenate(
        [np.clip(d, -90, 90), np.degrees(np.arcsin(rng.uniform(-1, 1, extra)))]
    )
    order = rng.permutation(n_pos)
    cat = pl.DataFrame({"id": np.arange(n_pos), "ra": cat_ra[order], "dec": cat_dec[order]})
    return cat, ref, n_hit


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--positions", type=int, default=100_000)
    p.add_argument("--reference", type=int, default=1_000_000)
    p.add_argument("--radius", type=float, default=1.0, help="arcsec")
    a = p.parse_args(argv)
    from stardata.crossmatch import crossmatch

    cat, ref, n_hit = _inputs(a.positions, a.reference)
    before = rss_gb()
    t0 = time.perf_counter()
    out = crossmatch(
        cat, reference=ref, epoch=2000.0, radius=a.radius, columns="match", progress=False
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    record = {
        "benchmark": "crossmatch_local_reference",
        "positions": a.positions,
        "reference_rows": a.reference,
        "radius_arcsec": a.radius,
        "epoch": 2000.0,
        "wall_s": round(wall, 3),
        "positions_per_s": round(a.positions / wall),
        "rss_before_gb": round(before, 3),
        "peak_rss_gb": round(peak, 3),
        "matched": int(out["xm_matched"].sum()),
        "expected_matched_at_least": n_hit,
        "ambiguous": int(out["xm_ambiguous"].sum()),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
