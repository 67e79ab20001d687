"""Crossmatch correctness at sky scale, each figure against an independent answer; prints JSON.

    python -m benchmarks.crossmatch_accuracy               # everything (~1 min on 2 cores)
    python -m benchmarks.crossmatch_accuracy --no-dense    # without the two dense fields

Measured:

- ``propagation``: :func:`stardata.crossmatch.propagate` against astropy's
  ``SkyCoord.apply_space_motion`` for the 14 nearby fast movers of
  ``tests/stardata/crossmatch_fixtures.py`` (Barnard's star, Proxima, 61 Cyg A/B, Kapteyn's
  star, Groombridge 1830, ...; literature astrometry) at J1900, J1950 and J2000: the largest
  separation [mas].
- ``plate_epochs``: those stars at J1900/1950/2000 (astropy's positions, 0.1″ noise) among
  field stars (~1e5 per deg² around their paths), matched within 1″ against a local reference
  table (``match_local``) and against the same rows as a HATS catalogue (``match_hats``,
  built in memory with a 1,300″ margin, ``max_pm`` 10.5″/yr): right, missed, wrong per epoch;
  ``reference_epoch`` the same with the reference at J2015.5 (Gaia DR2's epoch).
- ``dense_field``: 200 of the stars moving at 0.5-0.95 × ``max_pm`` (3 % of all) in a field at
  the bulge's density (1e6 per deg², 10″ margin, ``max_pm`` 0.5″/yr) and at the mean Gaia DR3
  density (4.4e4 per deg², 60″ margin, ``max_pm`` 3″/yr), at J2000 (astropy's positions,
  0.1″ noise): the HATS match against the truth and row for row against the KD-tree match.

Only public functions are called (``propagate``, ``match_local``, ``match_hats``), so the
script also measures an older checkout (``propagate`` without parallax is then reported as
such).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np
import polars as pl

EPOCHS = (1900.0, 1950.0, 2000.0)


def _moved(table: pl.DataFrame, epoch: float) -> tuple[np.ndarray, np.ndarray, str]:
    from stardata.crossmatch import propagate

    c = {k: table[k].to_numpy().astype(np.float64) for k in table.columns if k != "name"}
    dt = epoch - c["ref_epoch"]
    try:
        xyz = propagate(
            c["ra"],
            c["dec"],
            c["pmra"],
            c["pmdec"],
            dt,
            parallax=c["parallax"],
            radial_velocity=c["radial_velocity"],
        )
        how = "proper motion, parallax, radial velocity"
    except TypeError:  # an older propagate: proper motion only
        xyz = propagate(c["ra"], c["dec"], c["pmra"], c["pmdec"], dt)
        how = "proper motion only"
    ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360
    return ra, np.degrees(np.arcsin(np.clip(xyz[:, 2], -1, 1))), how


def propagation() -> dict:
    from tests.stardata.crossmatch_fixtures import (
        NEARBY_STARS,
        astropy_positions,
        separation_arcsec,
    )

    out = {"stars": NEARBY_STARS.height}
    for epoch in EPOCHS:
        ra, dec, how = _moved(NEARBY_STARS, epoch)
        sep = separation_arcsec(ra, dec, *astropy_positions(NEARBY_STARS, epoch)) * 1e3
        worst = int(np.argmax(sep))
        out[f"J{epoch:.0f}"] = {
            "max_sep_mas": float(f"{sep.max():.3g}"),
            "worst": NEARBY_STARS["name"][worst],
        }
        out["uses"] = how
    return out


def _score(got: np.ndarray, truth: np.ndarray) -> dict:
    return {
        "right": int((got == truth).sum()),
        "missed": int((got == 0).sum()),
        "wrong": int(((got != truth) & (got != 0)).sum()),
        "of": int(truth.size),
    }


def _plates(stars: pl.DataFrame, seed: int = 2) -> dict:
    """``stars`` at each epoch by astropy, with 0.1″ noise: {epoch: (ra, dec, truth)}."""
    from tests.stardata.crossmatch_fixtures import astropy_positions

    rng = np.random.default_rng(seed)
    out = {}
    for epoch in EPOCHS:
        ra, dec = astropy_positions(stars, epoch)
        dec = dec + rng.normal(0, 0.1, ra.size) / 3600
        ra = ra + rng.normal(0, 0.1, ra.size) / 3600 / np.cos(np.radians(dec))
        out[epoch] = (ra, dec, stars["source_id"].to_numpy())
    return out


def _as_dict(ref: pl.DataFrame) -> dict:
    return {k: ref[k].to_numpy() for k in ref.columns if k != "name"}


def _hats(ref: pl.DataFrame, margin: float, **kw):
    import lsdb

    frame = ref.drop("name") if "name" in ref.columns else ref
    return lsdb.from_dataframe(frame.to_pandas(), margin_threshold=margin, **kw)


def plate_epochs() -> dict:
    from stardata.crossmatch import match_local
    from stardata.crossmatch.hats import match_hats
    from tests.stardata.crossmatch_fixtures import astropy_positions, nearby_field

    field = nearby_field()
    r, d = astropy_positions(field, 2015.5)
    dr2 = field.with_columns(
        pl.Series("ra", r), pl.Series("dec", d), pl.lit(2015.5).alias("ref_epoch")
    )
    out = {}
    for label, ref in (("plate_epochs", field), ("reference_epoch_2015.5", dr2)):
        cat = _hats(ref, 1300.0, highest_order=5)
        rows = {}
        for epoch, (ra, dec, truth) in _plates(ref.filter(pl.col("source_id") < 1000)).items():
            ep = np.full(ra.size, epoch)
            local = match_local(ra, dec, ep, _as_dict(ref), radius=1.0)
            hats = match_hats(ra, dec, ep, cat, radius=1.0, max_pm=10.5)
            rows[f"J{epoch:.0f}"] = {
                "local": _score(local["source_id"], truth),
                "hats": _score(hats["source_id"], truth),
            }
        out[label] = rows
    return out


def _field(
    density: float, side: float, max_pm: float, seed: int
) -> tuple[pl.DataFrame, tuple[float, float]]:
    """Stars uniform in a ``side``° square centred on a corner of four order-8 pixels; 3 % move
    at 0.5-0.95 × ``max_pm`` [″/yr], the others at a few mas/yr."""
    import healpy

    rng = np.random.default_rng(seed)
    pix = healpy.ang2pix(2**8, 266.4, -29.0, nest=True, lonlat=True)
    corner = healpy.boundaries(2**8, pix, step=1, nest=True)[:, 0]
    ra0, dec0 = (float(v[0]) for v in healpy.vec2ang(corner, lonlat=True))
    n = int(density * side**2)
    dec = dec0 + rng.uniform(-side / 2, side / 2, n)
    ra = ra0 + rng.uniform(-side / 2, side / 2, n) / np.cos(np.radians(dec0))
    pm = rng.normal(0, 3, (2, n))
    fast = rng.random(n) < 0.03
    angle = rng.uniform(0, 2 * np.pi, fast.sum())
    pm[:, fast] = (
        rng.uniform(0.5, 0.95, fast.sum()) * max_pm * 1e3 * np.stack([np.cos(angle), np.sin(angle)])
    )
    ref = pl.DataFrame(
        {
            "source_id": np.arange(1, n + 1, dtype=np.int64) * 11,
            "ra": ra,
            "dec": dec,
            "pmra": pm[0],
            "pmdec": pm[1],
            "parallax": rng.lognormal(np.log(0.3), 0.7, n),
            "radial_velocity": np.where(rng.random(n) < 0.2, rng.normal(0, 100, n), np.nan),
            "ref_epoch": np.full(n, 2016.0),
        }
    )
    return ref, (ra0, dec0)


def dense_field() -> dict:
    from stardata.crossmatch import match_local
    from stardata.crossmatch.hats import match_hats
    from tests.stardata.crossmatch_fixtures import astropy_positions

    out = {}
    cases = (
        ("bulge_1e6_per_deg2", 1e6, 0.1, 10.0, 0.5),
        ("mean_gaia_4.4e4", 4.4e4, 0.5, 60.0, 3.0),
    )
    for label, density, side, margin, max_pm in cases:
        ref, _ = _field(density, side, max_pm, seed=5)
        rng = np.random.default_rng(6)
        speed = np.hypot(ref["pmra"].to_numpy(), ref["pmdec"].to_numpy())
        pick = rng.choice(np.flatnonzero(speed > 0.4e3 * max_pm), 200, replace=False)
        ra, dec = astropy_positions(ref[pick], 2000.0)
        dec = dec + rng.normal(0, 0.1, 200) / 3600
        ra = ra + rng.normal(0, 0.1, 200) / 3600 / np.cos(np.radians(dec))
        truth = ref["source_id"].to_numpy()[pick]
        ep = np.full(200, 2000.0)
        cat = _hats(
            ref, margin, lowest_order=5, highest_order=8, partition_rows=max(4000, ref.height // 3)
        )
        t0 = time.perf_counter()
        hats = match_hats(ra, dec, ep, cat, radius=1.0, max_pm=max_pm)
        wall = time.perf_counter() - t0
        local = match_local(ra, dec, ep, _as_dict(ref), radius=1.0)
        out[label] = {
            "reference_rows": ref.height,
            "margin_arcsec": margin,
            "max_pm": max_pm,
            "hats": _score(hats["source_id"], truth),
            "kdtree": _score(local["source_id"], truth),
            "hats_equals_kdtree_rows": int((hats["source_id"] == local["source_id"]).sum()),
            "n_candidates_equal": bool((hats["n_candidates"] == local["n_candidates"]).all()),
            "hats_wall_s": round(wall, 2),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-dense", action="store_true", help="skip the two dense fields")
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")  # ERFA's "dubious year" before 1960, LSDB's deprecations
    record = {"benchmark": "crossmatch_accuracy", "propagation": propagation(), **plate_epochs()}
    if not a.no_dense:
        record["dense_field"] = dense_field()
    record["machine"] = f"{platform.machine()}, {platform.processor() or 'cpu'}"
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
