"""Epoch propagation against astropy on real nearby fast movers, and matches at plate epochs.

The stars are :data:`NEARBY_STARS` (literature astrometry of Barnard's star, Proxima, 61 Cyg
A/B, Kapteyn's star, Groombridge 1830, ...). Positions at 1900-2000 come from astropy's
``apply_space_motion`` (the independent tool); the code under test must land on them.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from stardata.crossmatch import CatalogError, crossmatch, match_local, propagate
from tests.stardata.crossmatch_fixtures import (
    NEARBY_STARS,
    astropy_positions,
    nearby_field,
    separation_arcsec,
)

EPOCHS = (1900.0, 1950.0, 2000.0)


def _moved(table: pl.DataFrame, epoch: float) -> tuple[np.ndarray, np.ndarray]:
    """``propagate`` of the table's rows to ``epoch``, as (ra, dec) [deg]."""
    col = {c: table[c].to_numpy().astype(np.float64) for c in table.columns if c != "name"}
    xyz = propagate(
        col["ra"],
        col["dec"],
        col["pmra"],
        col["pmdec"],
        epoch - col["ref_epoch"],
        parallax=col["parallax"],
        radial_velocity=col["radial_velocity"],
    )
    return _radec(xyz)


def _radec(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) [deg] of (N, 3) vectors of any length."""
    r = np.linalg.norm(xyz, axis=1)
    return np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])) % 360, np.degrees(np.arcsin(xyz[:, 2] / r))


@pytest.mark.parametrize("epoch", [*EPOCHS, 2016.0, 2100.0])
def test_propagation_equals_astropy_for_nearby_fast_stars(epoch):
    ra, dec = _moved(NEARBY_STARS, epoch)
    want_ra, want_dec = astropy_positions(NEARBY_STARS, epoch)
    sep = separation_arcsec(ra, dec, want_ra, want_dec)
    assert sep.max() < 1e-6, dict(zip(NEARBY_STARS["name"], sep, strict=True))  # < 1 µas


def test_propagation_is_straight_line_space_motion():
    """An independent model, no library: constant velocity in space from parallax, proper
    motion and radial velocity (ESA 1997, Hipparcos vol. 1 §1.5.5; no light time). Over a
    century it must agree with ERFA to the few mas that light time makes; proper motion alone
    (a great circle) is off by arcseconds for Barnard's and Kapteyn's stars."""
    s = {c: NEARBY_STARS[c].to_numpy() for c in NEARBY_STARS.columns if c != "name"}
    a, d = np.radians(s["ra"]), np.radians(s["dec"])
    p = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=1)
    east = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=1)
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=1)
    au_per_yr = 4.740470463533348  # km/s
    dist_au = 1000.0 / s["parallax"] * 648000.0 / np.pi
    v = (s["pmra"][:, None] * east + s["pmdec"][:, None] * north) / s["parallax"][:, None]
    v += (np.nan_to_num(s["radial_velocity"]) / au_per_yr)[:, None] * p  # AU/yr
    for epoch in EPOCHS:
        line = _radec(p * dist_au[:, None] + v * (epoch - 2016.0))
        off = separation_arcsec(*_moved(NEARBY_STARS, epoch), *line)
        assert off.max() < 0.005, (epoch, off.max())  # 3 mas at J1900
    barnard = NEARBY_STARS.filter(pl.col("name") == "Barnard's star")
    pm_only = barnard.with_columns(pl.lit(np.nan).alias(c) for c in ("parallax", "radial_velocity"))
    off = separation_arcsec(*_moved(pm_only, 1900.0), *_moved(barnard, 1900.0))
    assert 8.0 < off[0] < 9.5  # the 8.6″ the linear propagation was off at 1900


def test_missing_astrometry_is_handled_as_astropy_does():
    base = NEARBY_STARS.head(4)
    rows = base.with_columns(
        pl.Series("parallax", [np.nan, -1.5, 0.0, 546.9759]),
        pl.Series("radial_velocity", [np.nan, 12.0, np.nan, np.nan]),
    )
    for epoch in (1900.0, 2050.0):
        ra, dec = _moved(rows, epoch)
        want_ra, want_dec = astropy_positions(rows, epoch)
        assert separation_arcsec(ra, dec, want_ra, want_dec).max() < 1e-6
    still = rows.with_columns(pl.lit(np.nan).alias("pmra"), pl.lit(np.nan).alias("pmdec"))
    ra, dec = _moved(still, 1900.0)
    sep = separation_arcsec(ra, dec, still["ra"].to_numpy(), still["dec"].to_numpy())
    assert sep.max() < 1e-6  # no proper motion: no motion (radial velocity alone moves nothing)


def test_a_star_at_the_pole_moves_by_its_proper_motion():
    for dec in (90.0, -90.0, 89.99):
        moved = _radec(propagate([10.0], [dec], [3000.0], [-4000.0], -100.0, parallax=[1.0]))
        start = _radec(propagate([10.0], [dec], [0.0], [0.0], 0.0))
        assert separation_arcsec(*moved, *start)[0] == pytest.approx(500.0, rel=1e-3)


@pytest.fixture(scope="module")
def field() -> pl.DataFrame:
    return nearby_field()


def _plates(epochs=EPOCHS, jitter: float = 0.1, seed: int = 2) -> pl.DataFrame:
    """A catalogue of the nearby stars at each epoch (astropy's positions, jittered)."""
    rng = np.random.default_rng(seed)
    parts = []
    for epoch in epochs:
        ra, dec = astropy_positions(NEARBY_STARS, epoch)
        dec = dec + rng.normal(0, jitter, ra.size) / 3600
        ra = ra + rng.normal(0, jitter, ra.size) / 3600 / np.cos(np.radians(dec))
        parts.append(
            pl.DataFrame(
                {"star": NEARBY_STARS["name"], "truth": NEARBY_STARS["source_id"], "ra": ra}
            ).with_columns(pl.Series("dec", dec), pl.lit(epoch).alias("plate_epoch"))
        )
    return pl.concat(parts)


def test_old_plates_match_as_at_2000_through_the_api(field, tmp_path):
    plates = _plates()
    ref = field.drop("name")
    got = crossmatch(
        plates,
        epoch="plate_epoch",
        reference=ref,
        columns="match",
        progress=False,
        cache_dir=tmp_path,
    )
    assert got["gaia_source_id"].to_list() == plates["truth"].to_list()  # 42 of 42
    assert got["xm_separation_arcsec"].max() < 0.5
    # without parallax and radial velocity the reference is moved by proper motion alone, and
    # Barnard's and Kapteyn's stars are lost at 1900-1950 (2.4-8.6″ off): they matter
    bare = crossmatch(
        plates,
        epoch="plate_epoch",
        reference=ref.drop("parallax", "radial_velocity"),
        columns="match",
        progress=False,
        cache_dir=tmp_path,
    )
    lost = plates.filter(bare["gaia_source_id"] != plates["truth"])
    assert {"Barnard's star", "Kapteyn's star"} <= set(lost["star"].to_list())


def test_a_reference_at_another_epoch_is_moved_from_its_own(field):
    """A J2015.5 reference (Gaia DR2's epoch): positions there, ref_epoch 2015.5."""
    r, d = astropy_positions(field, 2015.5)
    dr2 = field.with_columns(
        pl.Series("ra", r), pl.Series("dec", d), pl.lit(2015.5).alias("ref_epoch")
    )
    plates = _plates()
    ra, dec = plates["ra"].to_numpy(), plates["dec"].to_numpy()
    ep = plates["plate_epoch"].to_numpy()
    got = match_local(ra, dec, ep, {c: dr2[c].to_numpy() for c in dr2.columns if c != "name"})
    assert got["source_id"].tolist() == plates["truth"].to_list()
    as_2016 = match_local(
        ra, dec, ep, {c: dr2[c].to_numpy() for c in dr2.columns if c not in ("name", "ref_epoch")}
    )
    assert (as_2016["source_id"] != plates["truth"].to_numpy()).sum() > 10  # 0.5 yr matters


@pytest.mark.parametrize(
    "frame, message",
    [
        ({"source_id": [5, -6]}, "reference table column 'source_id': row 1 has negative id -6"),
        ({"source_id": [5.0, 6.0]}, "reference table column 'source_id' is double; .*floats"),
        ({"source_id": [5, 5]}, "reference table column 'source_id': 1 id\\(s\\) appear"),
        ({"source_id": [5, 6], "ref_epoch": [2016.0, np.nan]}, "'ref_epoch': row 1 has no value"),
        ({"source_id": [5, 6], "ref_epoch": [2016.0, 16.0]}, "'ref_epoch': row 1 has 16 Julian"),
        ({"source_id": [5, 6], "pmra": ["a", "b"]}, "reference table column 'pmra' .*not numeric"),
    ],
)
def test_a_bad_reference_is_named_not_the_catalogue(frame, message, tmp_path):
    ref = pl.DataFrame({"ra": [1.0, 2.0], "dec": [1.0, 2.0], **frame})
    cat = pl.DataFrame({"ra": [1.0], "dec": [1.0]})
    with pytest.raises(CatalogError, match=message) as err:
        crossmatch(cat, reference=ref, columns="match", progress=False, cache_dir=tmp_path)
    assert "\n" not in str(err.value) and "catalogue" not in str(err.value)
    path = tmp_path / "gaia.parquet"
    ref.drop("source_id").write_parquet(path)
    with pytest.raises(CatalogError, match=f"reference {path} has no source id column"):
        crossmatch(cat, reference=path, columns="match", progress=False, cache_dir=tmp_path)
    with pytest.raises(CatalogError, match="nope.parquet: no such reference file"):
        crossmatch(cat, reference=tmp_path / "nope.parquet", columns="match", progress=False)


def test_propagation_warns_nothing_from_many_threads_at_once():
    """Small parallaxes are ERFA's status 1 ("distance overridden"), read as a status, not
    silenced with a warnings filter: filters are process-wide, and under Dask's threads one
    partition's filter could be undone by another while a third warned (a CI run saw it)."""
    import sys
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    n = 2000
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-80, 80, n)
    pm = rng.normal(0, 50, (2, n))
    parallax = np.where(np.arange(n) % 2 == 0, 0.0, 1e-9)  # every row overrides the distance

    def move(_):
        return propagate(ra, dec, pm[0], pm[1], 16.0, parallax=parallax)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often, as under a busy Dask scheduler
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with ThreadPoolExecutor(4) as pool:
                out = list(pool.map(move, range(200)))
    finally:
        sys.setswitchinterval(interval)
    assert not seen, seen[0].message
    assert all(np.array_equal(o, out[0]) for o in out)
    assert np.allclose(np.linalg.norm(out[0], axis=1), 1.0)
