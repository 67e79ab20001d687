"""A small Gaia sky for the crossmatch tests: archive tables, a reference table, a catalogue.

Thirty stars with positions spread over a few square degrees, one with a proper motion of
~1.2″/yr (so at J2000 it sits ~19″ from its J2016.0 position), two stars 0.6″ apart (an
ambiguous match at 1″), and catalogue rows with no counterpart.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from stardata.testing import synthetic_gaia_source, synthetic_tmass, synthetic_xp

N_STARS = 30
FAST = 5  # the high proper-motion star
PAIR = (7, 8)  # the close pair
IDS = np.arange(1, N_STARS + 1, dtype=np.int64) * 1_000_003 + 4_000_000_000_000


def gaia_table(seed: int = 0) -> pl.DataFrame:
    """``gaiadr3.gaia_source`` rows with astrometry for positional matching."""
    rng = np.random.default_rng(seed)
    g = synthetic_gaia_source(IDS, seed=seed)
    ra = 150.0 + rng.uniform(0, 2.0, N_STARS)
    dec = 20.0 + rng.uniform(0, 2.0, N_STARS)
    pmra = rng.normal(0, 5, N_STARS)
    pmdec = rng.normal(0, 5, N_STARS)
    pmra[FAST], pmdec[FAST] = 900.0, -800.0  # mas/yr: 1.2″/yr
    ra[PAIR[1]] = ra[PAIR[0]] + 0.6 / 3600 / np.cos(np.radians(dec[PAIR[0]]))
    dec[PAIR[1]] = dec[PAIR[0]]
    pmra[list(PAIR)], pmdec[list(PAIR)] = 0.0, 0.0
    return g.with_columns(
        pl.Series("ra", ra),
        pl.Series("dec", dec),
        pl.Series("pmra", pmra),
        pl.Series("pmdec", pmdec),
        pl.Series("radial_velocity", np.full(N_STARS, np.nan)),
        pl.Series("ref_epoch", np.full(N_STARS, 2016.0)),
        pl.Series("parallax", np.abs(g["parallax"].fill_nan(0.5).to_numpy()) + 0.1),
    )


def archive_tables(seed: int = 0) -> tuple[dict, pl.DataFrame]:
    """Tables for :class:`stardata.testing.MirrorServer` and its XP rows."""
    tables = {"gaiadr3.gaia_source": gaia_table(seed), **synthetic_tmass(IDS, seed=seed)}
    return tables, synthetic_xp(IDS[IDS % 3 != 0], seed=seed)


def position_at(gaia: pl.DataFrame, i: int, epoch: float) -> tuple[float, float]:
    """Star ``i``'s position at ``epoch`` (small-angle, independent of the code under test)."""
    dt = epoch - 2016.0
    dec = gaia["dec"][i] + gaia["pmdec"][i] * dt / 3.6e6
    ra = gaia["ra"][i] + gaia["pmra"][i] * dt / 3.6e6 / np.cos(np.radians(gaia["dec"][i]))
    return float(ra), float(dec)


def catalogue(gaia: pl.DataFrame, epoch: float = 2000.0) -> pl.DataFrame:
    """Rows: stars 0..11 at ``epoch`` (0.2″ jitter) in scrambled order, plus 3 with no star."""
    rng = np.random.default_rng(1)
    order = [11, 3, FAST, 0, PAIR[0], 9, 1, 10, 2, 4, 6]
    rows = []
    for i in order:
        ra, dec = position_at(gaia, i, epoch)
        ra += rng.normal(0, 0.1) / 3600
        dec += rng.normal(0, 0.1) / 3600
        rows.append({"name": f"star{i}", "ra": ra, "dec": dec, "label": float(i), "truth": i})
    for k, (ra, dec) in enumerate([(151.0, 25.0), (10.0, -30.0), (152.5, 21.0)]):
        rows.append({"name": f"none{k}", "ra": ra, "dec": dec, "label": np.nan, "truth": -1})
    return pl.DataFrame(rows)
