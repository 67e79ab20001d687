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


# Nearby fast-moving stars at J2016.0: name, ra, dec [deg], parallax [mas], pmra, pmdec [mas/yr],
# radial velocity [km/s]. Literature values, written down from memory and public pages quoting
# them (SIMBAD/Wikipedia, mostly Gaia DR3; Lacaille 9352, Lalande 21185, Wolf 359, van Maanen's
# star, eps Indi A, Luyten's star, Ross 128 and tau Ceti rounded, some Hipparcos-era). Positions
# of Barnard's star and Proxima are Gaia DR3's; the others are the J2000.0 literature position
# moved to J2016.0 with astropy. They are realistic inputs, not a reference: the tests compare
# this package's propagation with astropy's from the same rows, so an error in a value here
# changes no result. van Maanen's star (a white dwarf) has no radial velocity on purpose.
_NEARBY = [
    ("Barnard's star", 269.448502525, 4.739420051, 546.9759, -801.551, 10362.394, -110.47),
    ("Kapteyn's star", 77.95991387, -45.04377234, 254.1986, 6491.223, -5708.614, 245.05),
    ("Groombridge 1830", 178.26735689, 37.69281395, 109.0296, 4002.7, -5817.8, -98.05),
    ("61 Cyg A", 316.74849147, 38.76386201, 285.9949, 4164.209, 3249.614, -65.97),
    ("61 Cyg B", 316.75367424, 38.75607248, 286.0054, 4105.976, 3155.942, -64.59),
    ("Proxima Cen", 217.392321472, -62.676075117, 768.0665, -3781.741, 769.465, -22.4),
    ("Lacaille 9352", 346.50393300, -35.84716625, 304.2, 6766.6, 1327.0, 9.7),
    ("Lalande 21185", 165.83095421, 35.94868187, 392.64, -580.27, -4765.85, -84.7),
    ("Wolf 359", 164.10329842, 7.00233463, 415.18, -3842.0, -2725.0, 19.6),
    ("van Maanen's star", 12.29673829, 5.37656142, 231.7, 1231.3, -2711.8, np.nan),
    ("eps Indi A", 330.87244162, -56.79724764, 274.84, 3966.66, -2536.19, -40.4),
    ("Luyten's star", 111.85463233, 5.20936039, 262.96, 571.2, -3694.2, 18.2),
    ("Ross 128", 176.93768728, 0.79911918, 296.3, 607.3, -1223.0, -31.0),
    ("tau Ceti", 26.00905717, -15.93368386, 273.96, -1721.05, 854.16, -16.7),
]  # fmt: skip
NEARBY_STARS = pl.DataFrame(
    {
        "source_id": np.arange(1, len(_NEARBY) + 1, dtype=np.int64),
        "name": [s[0] for s in _NEARBY],
        **{
            col: np.array([s[k] for s in _NEARBY], np.float64)
            for k, col in enumerate(
                ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity"), start=1
            )
        },
        "ref_epoch": np.full(len(_NEARBY), 2016.0),
    }
)


def astropy_positions(table: pl.DataFrame, epoch: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions [deg] of ``table``'s stars at ``epoch`` by astropy's ``apply_space_motion``.

    The independent check of :func:`stardata.crossmatch.sky.propagate`: a star with a positive
    parallax moves from its distance, one without has none (astropy's zero-parallax case); a
    missing radial velocity is 0 km/s and a missing proper motion is none.
    """
    import warnings

    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    get = {c: table[c].to_numpy().astype(np.float64) for c in table.columns if c != "name"}
    n = table.height
    ref_epoch = get.get("ref_epoch", np.full(n, 2016.0))
    plx = get.get("parallax", np.full(n, np.nan))
    ra, dec = np.full(n, np.nan), np.full(n, np.nan)
    for e0 in np.unique(ref_epoch):
        for has_distance in (True, False):
            rows = (ref_epoch == e0) & ((np.nan_to_num(plx) > 0) == has_distance)
            if not rows.any():
                continue
            kw = {"distance": (plx[rows] * u.mas).to(u.pc, u.parallax())} if has_distance else {}
            star = SkyCoord(
                get["ra"][rows] * u.deg,
                get["dec"][rows] * u.deg,
                pm_ra_cosdec=np.nan_to_num(get["pmra"][rows]) * u.mas / u.yr,
                pm_dec=np.nan_to_num(get["pmdec"][rows]) * u.mas / u.yr,
                radial_velocity=np.nan_to_num(get["radial_velocity"][rows]) * u.km / u.s,
                obstime=Time(e0, format="jyear"),
                **kw,
            )
            with warnings.catch_warnings():  # ERFA's "dubious year" for dates before 1960
                warnings.simplefilter("ignore")
                moved = star.apply_space_motion(new_obstime=Time(epoch, format="jyear"))
            ra[rows], dec[rows] = moved.ra.deg, moved.dec.deg
    return ra, dec


def separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation [arcsec], accurate at any size (atan2 of cross and dot products)."""
    a = np.stack(_xyz(ra1, dec1), axis=-1)
    b = np.stack(_xyz(ra2, dec2), axis=-1)
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    return np.degrees(np.arctan2(cross, (a * b).sum(-1))) * 3600.0


def _xyz(ra, dec):
    a, d = np.radians(np.asarray(ra, np.float64)), np.radians(np.asarray(dec, np.float64))
    return np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)


def nearby_field(seed: int = 0, per_disk: int = 40, radius_arcsec: float = 30.0) -> pl.DataFrame:
    """:data:`NEARBY_STARS` among slow field stars, ~1e5 per deg² around their 1900-2016 paths.

    Field stars are scattered in disks of ``radius_arcsec`` around each nearby star's position
    at J1900, J1950, J2000 and J2016 (so a position moved wrongly can land on one of them). Field
    stars have small proper motions, a parallax of ~0.5 mas and no radial velocity.
    """
    rng = np.random.default_rng(seed)
    centres = [NEARBY_STARS.select("ra", "dec")]
    for epoch in (1900.0, 1950.0, 2000.0):
        r, d = astropy_positions(NEARBY_STARS, epoch)
        centres.append(pl.DataFrame({"ra": r, "dec": d}))
    c = pl.concat(centres)
    k = c.height * per_disk
    rho = radius_arcsec / 3600.0 * np.sqrt(rng.uniform(0, 1, k))
    phi = rng.uniform(0, 2 * np.pi, k)
    dec = np.repeat(c["dec"].to_numpy(), per_disk) + rho * np.sin(phi)
    ra = np.repeat(c["ra"].to_numpy(), per_disk) + rho * np.cos(phi) / np.cos(np.radians(dec))
    field = pl.DataFrame(
        {
            "source_id": np.arange(k, dtype=np.int64) + 1000,
            "name": [f"field{i}" for i in range(k)],
            "ra": np.mod(ra, 360.0),
            "dec": dec,
            "parallax": rng.normal(0.5, 0.3, k),
            "pmra": rng.normal(0, 5, k),
            "pmdec": rng.normal(0, 5, k),
            "radial_velocity": np.full(k, np.nan),
            "ref_epoch": np.full(k, 2016.0),
        }
    )
    return pl.concat([NEARBY_STARS, field])
