"""Stand-ins for the remote releases' contents: allStar, Combined19 and archive tables.

* :func:`write_allstar` writes an allStar-format FITS file with the DR17 column names and types.
* :func:`write_tiny_combined19` writes ``combined19/combine19.h5`` in the real layout so the real
  ``mwdust.Combined19()`` runs offline.
* :func:`synthetic_gaia_source`, :func:`synthetic_tmass`, :func:`synthetic_xp` make archive
  tables; :func:`real_xp_product` opens the real DR3 DataLink products shipped in astroquery.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import polars as pl
from astropy.io import fits

from stardata.io import atomic_path
from stardata.sources.apogee import ALLSTAR_DTYPES, ALLSTAR_HDU

__all__ = [
    "COMBINED19_DISTMODS",
    "real_xp_product",
    "synthetic_gaia_source",
    "synthetic_tmass",
    "synthetic_xp",
    "write_allstar",
    "write_tiny_combined19",
]

#: Distance-modulus grid of the Combined19 ``/best_fit`` columns (as mwdust assumes).
COMBINED19_DISTMODS = np.linspace(4.0, 18.875, 120)

# Character widths are not taken from the data model (values, not widths, matter to readers).
_STRING_WIDTHS = {"APOGEE_ID": 30, "TELESCOPE": 8, "FIELD": 24}
# A realistic handful of other DR17 allStar columns (names and types from the data model),
# so that the record layout is not just the columns the pipeline reads.
_EXTRA_COLUMNS = {
    "FILE": ("64A", None),
    "LOCATION_ID": ("J", np.int32),
    "NVISITS": ("J", np.int32),
    "SNREV": ("E", np.float32),
    "STARFLAGS": ("132A", None),
    "ANDFLAG": ("K", np.int64),
    "VHELIO_AVG": ("E", np.float32),
    "VSCATTER": ("E", np.float32),
    "GAIAEDR3_PARALLAX": ("E", np.float32),
    "PARAM": ("9E", np.float32),
    "ASPCAPFLAGS": ("132A", None),
    "MEMBERFLAG": ("K", np.int64),
    "ALPHA_M": ("E", np.float32),
    "FE_H": ("E", np.float32),
}
_TFORM = {"i8": "K", "i4": "J", "f4": "E", "f8": "D"}


def _fake_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(10**15, 6_917_528_997_577_384_320, size=n, dtype=np.int64)


def _allstar_values(n: int, rng: np.random.Generator, source_ids: np.ndarray) -> dict:
    from astropy.coordinates import SkyCoord

    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.95, 0.95, n)))
    gal = SkyCoord(ra=ra, dec=dec, unit="deg", frame="icrs").galactic
    h = rng.uniform(7.0, 13.5, n)
    jh = rng.uniform(0.2, 1.2, n)
    hk = rng.uniform(0.0, 0.4, n)
    values = {
        "APOGEE_ID": np.array(
            [f"2M{rng.integers(10**7, 10**8)}+{rng.integers(10**6, 10**7)}" for _ in range(n)]
        ),
        "TELESCOPE": rng.choice(["apo25m", "lco25m", "apo1m"], n, p=[0.7, 0.28, 0.02]),
        "FIELD": rng.choice(["N7789", "K2_C5_083-37", "060+00", "APOGEE2_BRIGHT"], n),
        "GAIAEDR3_SOURCE_ID": source_ids,
        "RA": ra,
        "DEC": dec,
        "GLON": gal.l.deg,
        "GLAT": gal.b.deg,
        "SNR": rng.gamma(3.0, 60.0, n),
        "J": h + jh,
        "J_ERR": rng.uniform(0.018, 0.05, n),
        "H": h,
        "H_ERR": rng.uniform(0.018, 0.05, n),
        "K": h - hk,
        "K_ERR": rng.uniform(0.018, 0.05, n),
        "STARFLAG": np.where(rng.random(n) < 0.15, 1 << rng.integers(0, 30, n), 0),
        "ASPCAPFLAG": np.where(rng.random(n) < 0.1, 1 << rng.choice([19, 23, 8, 34], n), 0),
        "EXTRATARG": np.zeros(n, dtype=np.int32),
        "TEFF": rng.uniform(3500.0, 7000.0, n),
        "TEFF_ERR": rng.uniform(10.0, 100.0, n),
        "LOGG": rng.uniform(0.5, 4.8, n),
        "LOGG_ERR": rng.uniform(0.02, 0.1, n),
        "M_H": rng.normal(-0.2, 0.3, n),
        "M_H_ERR": rng.uniform(0.005, 0.03, n),
    }
    bad = rng.random(n) < 0.03
    for band in ("J", "H", "K"):
        values[band] = np.where(bad & (rng.random(n) < 0.5), 99.999, values[band])
    no_label = rng.random(n) < 0.05
    for name in ("TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "M_H", "M_H_ERR"):
        values[name] = np.where(no_label, np.nan, values[name])
    return values


def _extra_values(n: int, rng: np.random.Generator, base: dict) -> dict:
    return {
        "FILE": np.array([f"apStar-dr17-{a}.fits" for a in base["APOGEE_ID"]]),
        "LOCATION_ID": rng.integers(1, 6000, n),
        "NVISITS": rng.integers(1, 30, n),
        "SNREV": base["SNR"] * 0.98,
        "STARFLAGS": np.array(["" if f == 0 else "BRIGHT_NEIGHBOR" for f in base["STARFLAG"]]),
        "ANDFLAG": np.zeros(n, dtype=np.int64),
        "VHELIO_AVG": rng.normal(0.0, 60.0, n),
        "VSCATTER": rng.exponential(0.3, n),
        "GAIAEDR3_PARALLAX": rng.exponential(0.5, n),
        "PARAM": rng.normal(0.0, 1.0, (n, 9)),
        "ASPCAPFLAGS": np.array(["" if f == 0 else "STAR_BAD" for f in base["ASPCAPFLAG"]]),
        "MEMBERFLAG": np.zeros(n, dtype=np.int64),
        "ALPHA_M": rng.normal(0.05, 0.1, n),
        "FE_H": base["M_H"] + 0.01,
    }


def write_allstar(
    path: str | os.PathLike,
    n_rows: int = 200,
    *,
    seed: int = 0,
    source_ids: Sequence[int] | None = None,
    duplicates: int = 5,
    overrides: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write an allStar-format FITS file (HDU1 table with DR17 column names and types).

    Parameters
    ----------
    path : path-like
        Output file (written atomically).
    n_rows : int, optional
        Number of rows (including duplicates).
    seed : int, optional
        Random seed; the file is a deterministic function of the arguments.
    source_ids : sequence of int, optional
        ``GAIAEDR3_SOURCE_ID`` values (length ``n_rows``); random ids by default, with 2% zeros
        (no Gaia match).
    duplicates : int, optional
        Number of trailing rows that repeat an earlier star on another telescope; the
        duplicate has EXTRATARG bit 4 set, as in DR17.
    overrides : dict, optional
        Column values that replace the generated ones (same length).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    if source_ids is None:
        ids = _fake_ids(rng, n_rows)
        ids[rng.random(n_rows) < 0.02] = 0
    else:
        ids = np.asarray(source_ids, dtype=np.int64)
        if ids.shape != (n_rows,):
            raise ValueError(f"source_ids has {ids.size} values for {n_rows} rows")
    values = _allstar_values(n_rows, rng, ids)
    for k in range(min(duplicates, n_rows // 2)):
        src, dup = k, n_rows - 1 - k
        for name in values:
            if name not in ("TELESCOPE", "SNR", "EXTRATARG"):
                values[name][dup] = values[name][src]
        values["TELESCOPE"][dup] = "lco25m" if values["TELESCOPE"][src] != "lco25m" else "apo25m"
        values["EXTRATARG"][dup] |= np.int32(1 << 4)
    values.update(overrides or {})
    extras = _extra_values(n_rows, rng, values)
    columns = [_column(name, values[name]) for name in ALLSTAR_DTYPES]
    columns += [_column(name, extras[name], *_EXTRA_COLUMNS[name]) for name in _EXTRA_COLUMNS]
    table = fits.BinTableHDU.from_columns(columns)
    primary = fits.PrimaryHDU()
    primary.header["V_APRED"] = ("dr17", "APOGEE reduction version")
    primary.header["V_ASPCAP"] = ("synspec_rev1", "ASPCAP version")
    aux = fits.BinTableHDU.from_columns(
        [fits.Column(name="PARAM_SYMBOL", format="9A", array=np.array(["TEFF", "LOGG"]))]
    )
    hdus = [primary, table, aux]
    if hdus.index(table) != ALLSTAR_HDU:
        raise AssertionError("allStar star table must be HDU 1")
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)
    return path


def _column(name: str, values, tform: str | None = None, dtype=None) -> fits.Column:
    kind = ALLSTAR_DTYPES.get(name)
    if tform is None and kind == "U":
        tform = f"{_STRING_WIDTHS[name]}A"
    elif tform is None:
        tform, dtype = _TFORM[kind], np.dtype(kind)
    array = np.asarray(values) if dtype is None else np.asarray(values).astype(dtype)
    return fits.Column(name=name, format=tform, array=array)


def write_tiny_combined19(
    dust_dir: str | os.PathLike,
    *,
    amplitudes: Sequence[float] | None = None,
    split_pixel: int = 0,
    scale_kpc: float = 1.5,
) -> Path:
    """Write a tiny full-sky ``combined19/combine19.h5`` in the layout mwdust reads.

    The map has the 12 HEALPix nside-1 pixels, except ``split_pixel`` which is refined into its
    4 nside-2 children (so the hierarchical lookup is exercised). Each pixel's E(B-V) grows with
    distance as ``a * (1 - exp(-d / scale_kpc))`` over the distance moduli
    :data:`COMBINED19_DISTMODS`.

    Parameters
    ----------
    dust_dir : path-like
        The ``$DUST_DIR`` folder.
    amplitudes : sequence of float, optional
        The 12 base-pixel amplitudes ``a`` (mag); by default pixel 1 has no dust, pixel 2 has
        ``a = 30`` (E(B-V) > 10 far away) and the others 0.05-1.5.
    split_pixel : int, optional
        Base pixel refined at nside 2 (its children get ``a``, ``1.1 a``, ``1.2 a``, ``1.3 a``).
    scale_kpc : float, optional
        Distance scale of the dust profile.

    Returns
    -------
    Path
        The written ``combine19.h5``.
    """
    if amplitudes is None:
        amplitudes = [0.3, 0.0, 30.0, 0.05, 0.8, 1.5, 0.2, 0.6, 1.0, 0.1, 0.4, 1.2]
    amps = np.asarray(amplitudes, dtype=float)
    if amps.shape != (12,):
        raise ValueError(f"amplitudes needs 12 values (nside-1 pixels), got {amps.size}")
    base = [p for p in range(12) if p != split_pixel]
    nside = np.array([1] * len(base) + [2] * 4, dtype="<u4")
    index = np.array(base + [4 * split_pixel + k for k in range(4)], dtype="<u8")
    amp = np.concatenate([amps[base], amps[split_pixel] * np.array([1.0, 1.1, 1.2, 1.3])])
    dist = 10.0 ** ((COMBINED19_DISTMODS - 10.0) / 5.0)
    best_fit = amp[:, None] * (1.0 - np.exp(-dist[None, :] / scale_kpc))
    pixel_info = np.empty(len(nside), dtype=[("nside", "<u4"), ("healpix_index", "<u8")])
    pixel_info["nside"], pixel_info["healpix_index"] = nside, index
    path = Path(dust_dir) / "combined19" / "combine19.h5"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("pixel_info", data=pixel_info)
        handle.create_dataset("best_fit", data=best_fit)
    return path


def synthetic_gaia_source(source_ids: Sequence[int], *, seed: int = 0) -> pl.DataFrame:
    """A ``gaiadr3.gaia_source`` subset for ``source_ids`` with the archive's column types."""
    ids = np.asarray(source_ids, dtype=np.int64)
    n, rng = ids.size, np.random.default_rng(seed)
    g = rng.uniform(6.0, 18.0, n)
    bprp = rng.uniform(0.3, 3.0, n)
    solved = rng.choice(np.array([31, 95, 3], dtype=np.int16), n, p=[0.6, 0.35, 0.05])
    parallax = rng.normal(0.8, 0.6, n)
    return pl.DataFrame(
        {
            "source_id": ids,
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-80, 80, n),
            "l": rng.uniform(0, 360, n),
            "b": rng.uniform(-60, 60, n),
            "parallax": np.where(solved == 3, np.nan, parallax),
            "parallax_error": np.where(solved == 3, np.nan, rng.uniform(0.01, 0.2, n)),
            "phot_g_mean_mag": g.astype(np.float32),
            "phot_bp_mean_mag": (g + 0.4 * bprp).astype(np.float32),
            "phot_rp_mean_mag": (g - 0.6 * bprp).astype(np.float32),
            "phot_bp_mean_flux_over_error": rng.uniform(50, 2000, n).astype(np.float32),
            "phot_rp_mean_flux_over_error": rng.uniform(50, 2000, n).astype(np.float32),
            "phot_bp_rp_excess_factor": rng.uniform(1.1, 1.6, n).astype(np.float32),
            "ruwe": rng.lognormal(0.0, 0.2, n).astype(np.float32),
            "astrometric_params_solved": solved,
            "nu_eff_used_in_astrometry": np.where(
                solved == 31, rng.uniform(1.3, 1.7, n), np.nan
            ).astype(np.float32),
            "pseudocolour": np.where(solved == 95, rng.uniform(1.3, 1.7, n), np.nan).astype(
                np.float32
            ),
            "ecl_lat": rng.uniform(-80, 80, n),
            "has_xp_continuous": g < 17.65,
        }
    )


def synthetic_tmass(source_ids: Sequence[int], *, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Gaia DR3's 2MASS best-neighbour table and the matching 2MASS rows for ``source_ids``.

    Returns
    -------
    dict
        ``{"gaiadr3.tmass_psc_xsc_best_neighbour": ..., "gaiadr1.tmass_original_valid": ...}``
        ready for :class:`MirrorServer`.
    """
    ids = np.asarray(source_ids, dtype=np.int64)
    n, rng = ids.size, np.random.default_rng(seed)
    names = [f"{rng.integers(10**7, 10**8)}+{rng.integers(10**6, 10**7)}" for _ in range(n)]
    h = rng.uniform(7.0, 13.5, n)
    best = pl.DataFrame(
        {
            "source_id": ids,
            "original_ext_source_id": names,
            "angular_distance": rng.uniform(0, 0.3, n),
        }
    )
    tmass = pl.DataFrame(
        {
            "designation": names,
            "j_m": (h + rng.uniform(0.2, 1.2, n)).astype(np.float32),
            "j_msigcom": rng.uniform(0.018, 0.05, n).astype(np.float32),
            "h_m": h.astype(np.float32),
            "h_msigcom": rng.uniform(0.018, 0.05, n).astype(np.float32),
            "ks_m": (h - rng.uniform(0.0, 0.4, n)).astype(np.float32),
            "ks_msigcom": rng.uniform(0.018, 0.05, n).astype(np.float32),
            "ph_qual": rng.choice(["AAA", "AAB", "ABC", "UAA"], n, p=[0.85, 0.08, 0.05, 0.02]),
        }
    )
    return {"gaiadr3.tmass_psc_xsc_best_neighbour": best, "gaiadr1.tmass_original_valid": tmass}


def real_xp_product(fmt: str = "fits", kind: str = "XP_CONTINUOUS") -> tuple[str, bytes]:
    """One real DR3 DataLink product file shipped with astroquery's tests.

    Parameters
    ----------
    fmt : {"csv", "ecsv", "fits", "vot"}
        Which of astroquery's zips to open.
    kind : {"XP_CONTINUOUS", "XP_SAMPLED", "MCMC_MSC"}
        Which product inside it.

    Returns
    -------
    (str, bytes)
        The member's file name and content.
    """
    import importlib.util

    # Locate the package without importing astroquery.gaia (its import contacts the archive).
    spec = importlib.util.find_spec("astroquery")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("astroquery is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "gaia" / "tests" / "data"
    archive = folder / f"gaia_dr3_source_id_5937083312263887616_dl_products_{fmt}.zip"
    if not archive.exists():
        raise FileNotFoundError(f"{archive} not found; is astroquery's test data installed?")
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            if name.startswith(kind + "-"):
                return name, bundle.read(name)
    raise KeyError(f"{archive}: no {kind} member")


def synthetic_xp(source_ids: Sequence[int], *, seed: int = 0) -> pl.DataFrame:
    """XP_CONTINUOUS rows for ``source_ids``: the real DR3 star's spectrum, perturbed per id."""
    from stardata.sources.xp import parse_xp_continuous

    name, data = real_xp_product("fits")
    real = parse_xp_continuous(io.BytesIO(data), name, correlations=True).row(0, named=True)
    ids = np.asarray(source_ids, dtype=np.int64)
    rng = np.random.default_rng(seed)
    rows = []
    for sid in ids:
        row = dict(real)
        row["source_id"] = int(sid)
        for band in ("bp", "rp"):
            coef = np.asarray(real[f"{band}_coefficients"])
            row[f"{band}_coefficients"] = coef * rng.lognormal(0.0, 0.3) + rng.normal(
                0.0, 0.5, coef.size
            )
            row[f"{band}_n_relevant_bases"] = int(rng.integers(8, 56))
        rows.append(row)
    return pl.DataFrame(rows, schema=pl.DataFrame([real]).schema)
