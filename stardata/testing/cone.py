"""The Gaia archive's positional join with epoch propagation, as the local test archive answers it.

Understands the shape :data:`stardata.crossmatch.CONE_QUERY` sends (the archive's documented
pattern): ``SELECT u.a AS x, g.b AS y, DISTANCE(POINT('ICRS', u.ra, u.dec),
EPOCH_PROP_POS(g.ra, g.dec, g.parallax, g.pmra, g.pmdec, g.radial_velocity, g.ref_epoch,
u.epoch)) AS sep FROM tap_upload.t AS u JOIN table AS g ON 1 = CONTAINS(POINT('ICRS', g.ra,
g.dec), CIRCLE('ICRS', u.ra, u.dec, u.r))``. Propagation uses astropy's
``SkyCoord.apply_space_motion`` (an implementation independent of :mod:`stardata.crossmatch`,
so tests compare two).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import polars as pl

__all__ = ["execute_cone", "is_cone_query"]

_REF = r"(\w+)\.(\w+)"
_POINT = rf"POINT\(\s*(?:'ICRS'\s*,\s*)?{_REF}\s*,\s*{_REF}\s*\)"
_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<items>.+?)\s+FROM\s+tap_upload\.(?P<upload>\w+)\s+AS\s+(?P<u>\w+)\s+"
    r"JOIN\s+(?P<table>[\w.]+)\s+AS\s+(?P<g>\w+)\s+ON\s+1\s*=\s*CONTAINS\(\s*"
    rf"(?P<point>{_POINT})\s*,\s*CIRCLE\(\s*(?:'ICRS'\s*,\s*)?(?P<circle>{_REF}\s*,\s*{_REF}"
    rf"\s*,\s*{_REF})\s*\)\s*\)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_DISTANCE = re.compile(
    rf"DISTANCE\(\s*(?P<point>{_POINT})\s*,\s*EPOCH_PROP_POS\((?P<args>[^()]*)\)\s*\)\s+AS\s+"
    r"(?P<name>\w+)",
    re.IGNORECASE,
)
_COLUMN = re.compile(rf"^\s*{_REF}(?:\s+AS\s+(\w+))?\s*$", re.IGNORECASE)


def is_cone_query(query: str) -> bool:
    """Whether ``query`` is the positional join this module answers."""
    return bool(_QUERY.match(query))


def _refs(text: str) -> list[tuple[str, str]]:
    return re.findall(_REF, text)


def execute_cone(query: str, uploads: dict, tables: dict) -> tuple[pl.DataFrame, None]:
    """Answer the positional join: one row per (upload row, table row within the circle)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    m = _QUERY.match(query)
    if m is None:
        raise ValueError("Unsupported positional join")
    upload = uploads.get(m["upload"].lower())
    table = tables.get(m["table"].lower())
    if upload is None or table is None:
        raise ValueError(f"Table not found: {m['upload'] if upload is None else m['table']}")
    frames = {m["u"]: upload, m["g"]: table}

    def col(ref: tuple[str, str]) -> np.ndarray:
        alias, name = ref
        if alias not in frames or name not in frames[alias].columns:
            raise ValueError(f"Column not found: {alias}.{name}")
        return frames[alias][name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    (ga, gra), (gd, gdec) = _refs(m["point"])
    circle = _refs(m["circle"])
    if {ga, gd} != {m["g"]} or {a for a, _ in circle} != {m["u"]}:
        raise ValueError("CONTAINS must test the table's POINT in the upload's CIRCLE")
    centre = SkyCoord(col(circle[0]) * u.deg, col(circle[1]) * u.deg)
    stars = SkyCoord(col((ga, gra)) * u.deg, col((gd, gdec)) * u.deg)
    reach = col(circle[2])
    i_up, i_tab, sep, _ = stars.search_around_sky(centre, np.nanmax(reach, initial=0.0) * u.deg)
    keep = sep.deg <= reach[i_up]
    i_up, i_tab = i_up[keep], i_tab[keep]

    def pair(ref: tuple[str, str]) -> np.ndarray:  # the column's value for each candidate pair
        return col(ref)[i_up if ref[0] == m["u"] else i_tab]

    out = {}
    items = m["items"]
    for d in _DISTANCE.finditer(items):
        out[d["name"]] = _propagated_distance(d, pair)
    for raw in _DISTANCE.sub("", items).split(","):
        if not raw.strip():
            continue
        c = _COLUMN.match(raw)
        if c is None:
            raise ValueError(f"Unsupported select item: {raw.strip()!r}")
        alias, name, label = c.group(1), c.group(2), c.group(3) or c.group(2)
        if alias not in frames or name not in frames[alias].columns:
            raise ValueError(f"Column not found: {alias}.{name}")
        rows = i_up if alias == m["u"] else i_tab
        out[label] = frames[alias][name].to_numpy()[rows]
    return pl.DataFrame(out), None


def _propagated_distance(d, pair) -> np.ndarray:
    """DISTANCE(upload point, EPOCH_PROP_POS(...)) [deg] for each candidate pair."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    refs = _refs(d["args"])
    if len(refs) != 8:
        raise ValueError("EPOCH_PROP_POS takes 8 arguments")
    ra, dec, plx, pmra, pmdec, rv, t0, t1 = (pair(r) for r in refs)
    if len(ra) == 0:
        return np.zeros(0)
    t0 = np.nan_to_num(t0, nan=2016.0)
    dist = np.where(np.isfinite(plx) & (plx > 0), 1000.0 / np.where(plx > 0, plx, 1.0), 1e9)
    star = SkyCoord(
        ra=ra * u.deg,
        dec=dec * u.deg,
        distance=dist * u.pc,
        pm_ra_cosdec=np.nan_to_num(pmra) * u.mas / u.yr,
        pm_dec=np.nan_to_num(pmdec) * u.mas / u.yr,
        radial_velocity=np.nan_to_num(rv) * u.km / u.s,
        obstime=Time(t0, format="jyear", scale="tcb"),
    )
    with warnings.catch_warnings():  # ERFA notes the placeholder distance of parallax-less stars
        warnings.simplefilter("ignore")
        moved = star.apply_space_motion(dt=(t1 - t0) * u.yr)
    (ua, ura), (ud, udec) = _refs(d["point"])
    point = SkyCoord(pair((ua, ura)) * u.deg, pair((ud, udec)) * u.deg)
    return point.separation(SkyCoord(moved.ra, moved.dec)).deg
