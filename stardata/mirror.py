"""Offline stand-ins for the remote releases, for tests and benchmarks (no network).

* :func:`write_allstar` writes an allStar-format FITS file with the DR17 column names and types.
* :func:`write_tiny_combined19` writes ``combined19/combine19.h5`` in the real layout so the real
  ``mwdust.Combined19()`` runs offline.
* :func:`synthetic_gaia_source`, :func:`synthetic_tmass`, :func:`synthetic_xp` make archive
  tables; :func:`real_xp_product` opens the real DR3 DataLink products shipped in astroquery.
* :class:`MirrorServer` serves static files with HTTP ``Range`` support and emulates the Gaia
  archive TAP (sync and async, with an uploaded id table) and DataLink endpoints on 127.0.0.1,
  with fault hooks (5xx on the Nth request, truncated bodies, dropped connections, stalls,
  ignored ``Range``).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import polars as pl
from astropy.io import fits

from stardata.sources.apogee import ALLSTAR_DTYPES, ALLSTAR_HDU

__all__ = [
    "COMBINED19_DISTMODS",
    "XP_PRODUCT_COLUMNS",
    "Fault",
    "MirrorServer",
    "real_xp_product",
    "synthetic_gaia_source",
    "synthetic_tmass",
    "synthetic_xp",
    "write_allstar",
    "write_tiny_combined19",
    "xp_files",
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


def _atomic_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


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
    tmp = _atomic_path(path)
    fits.HDUList(hdus).writeto(tmp, overwrite=True)
    os.replace(tmp, path)
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
    tmp = _atomic_path(path)
    with h5py.File(tmp, "w") as handle:
        handle.create_dataset("pixel_info", data=pixel_info)
        handle.create_dataset("best_fit", data=best_fit)
    os.replace(tmp, path)
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
    from stardata.sources.gaia import parse_xp_continuous

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


# --------------------------------------------------------------------------------------------
# Local HTTP server: static files with Range, Gaia TAP (sync/async + upload), DataLink, faults
# --------------------------------------------------------------------------------------------

XP_PRODUCT_COLUMNS = (
    "source_id",
    "solution_id",
    "bp_n_parameters",
    "bp_standard_deviation",
    "bp_coefficients",
    "bp_coefficient_errors",
    "bp_coefficient_correlations",
    "bp_n_relevant_bases",
    "rp_n_parameters",
    "rp_standard_deviation",
    "rp_coefficients",
    "rp_coefficient_errors",
    "rp_coefficient_correlations",
    "rp_n_relevant_bases",
)
_XP_EXT = {"csv": "csv", "ecsv": "ecsv", "fits": "fits", "votable": "xml", "votable_plain": "xml"}
_TAP_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE version="1.4" '
    'xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n <RESOURCE type="results">\n'
    '  <INFO name="QUERY_STATUS" value="ERROR">{message}</INFO>\n </RESOURCE>\n</VOTABLE>\n'
)


@dataclass
class Fault:
    """A failure injected into the requests whose path starts with ``prefix``.

    Attributes
    ----------
    prefix : str
        URL path prefix the fault applies to (``"/"`` for all).
    kind : {"status", "truncate", "drop", "stall", "ignore_range"}
        Answer with ``status``; send only ``keep`` of the body under a full Content-Length;
        close the connection without answering; wait ``delay`` seconds before answering (to
        trip the client's time-out); or ignore a ``Range`` header (HTTP 200).
    status : int
        HTTP status for ``kind="status"``.
    skip : int
        Let this many matching requests through first (``skip=N-1`` hits the Nth request).
    times : int
        How many requests the fault hits.
    keep : float
        Fraction of the body sent for ``kind="truncate"``.
    method : str, optional
        Only requests with this HTTP method (e.g. ``"POST"``).
    delay : float
        Seconds to wait for ``kind="stall"``.
    """

    prefix: str
    kind: str = "status"
    status: int = 503
    skip: int = 0
    times: int = 1
    keep: float = 0.5
    method: str | None = None
    delay: float = 1.0
    seen: int = 0
    fired: int = 0

    def take(self, path: str, method: str = "GET") -> bool:
        """Count a request and say whether the fault hits it."""
        if not path.startswith(self.prefix) or self.fired >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        self.fired += 1
        return True


class MirrorServer:
    """A threaded stdlib HTTP server on 127.0.0.1 that stands in for SDSS and the Gaia archive.

    Parameters
    ----------
    files : dict, optional
        URL path (e.g. ``"/sas/allStar.fits"``) to a file path or bytes, served with ``Range``.
    tables : dict, optional
        Archive tables by qualified name (``"gaiadr3.gaia_source"``) as polars DataFrames;
        queried by the TAP endpoints with an uploaded table (``tap_upload.<name>``).
    xp : polars.DataFrame, optional
        XP_CONTINUOUS rows served by the DataLink endpoint.
    shuffle : bool, optional
        Return TAP rows in a scrambled order, as nothing guarantees the archive's order.
    max_datalink_ids : int, optional
        The archive's DataLink limit (5,000 ids a request); more is answered with HTTP 400.

    Notes
    -----
    Endpoints: ``GET/HEAD <files>``; ``POST /tap-server/tap/sync`` and ``/tap-server/tap/async``
    (``REQUEST=doQuery&LANG=ADQL&QUERY=...&UPLOAD=ids,param:ids`` multipart), ``GET
    /tap-server/tap/async/<job>/{phase,results/result,error}``; ``POST /data-server/data``
    (``ID, RETRIEVAL_TYPE=XP_CONTINUOUS, FORMAT, DATA_STRUCTURE``), answering a zip. The ADQL
    understood is ``SELECT [TOP n] a.col [AS name], ... FROM t AS a [JOIN t2 AS b ON b.x =
    a.y]...`` (astroquery's synchronous ``launch_job`` adds ``TOP 2000``).
    Every request is appended to :attr:`requests`.
    """

    tap_path = "/tap-server/tap"
    datalink_path = "/data-server/data"

    def __init__(self, *, files=None, tables=None, xp=None, shuffle=True, max_datalink_ids=5000):
        self.files: dict[str, object] = dict(files or {})
        self.tables = {name.lower(): frame for name, frame in (tables or {}).items()}
        self.xp = xp
        self.shuffle = shuffle
        self.max_datalink_ids = max_datalink_ids
        self.faults: list[Fault] = []
        self.requests: list[dict] = []
        self._jobs: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MirrorServer:
        """Start serving on a free port (idempotent)."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            self._httpd.daemon_threads = True
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        if self._httpd is None:
            raise RuntimeError("MirrorServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def tap_url(self) -> str:
        """TAP base URL (pass as ``tap_url``)."""
        return self.url + self.tap_path

    @property
    def datalink_url(self) -> str:
        """DataLink URL (pass as ``datalink_url``)."""
        return self.url + self.datalink_path

    def add_file(self, url_path: str, content) -> str:
        """Serve ``content`` (a path or bytes) at ``url_path``; return its full URL."""
        self.files[url_path] = content
        return self.url + url_path

    def inject(self, prefix: str, kind: str = "status", **kwargs) -> Fault:
        """Add a :class:`Fault` for requests under ``prefix`` and return it."""
        fault = Fault(prefix=prefix, kind=kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def count(self, prefix: str, method: str | None = None) -> int:
        """Number of requests received under ``prefix`` (optionally of one method)."""
        return sum(
            1
            for r in self.requests
            if r["path"].startswith(prefix) and (method is None or r["method"] == method)
        )

    def _take_fault(self, path: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.take(path, method):
                    return fault
        return None

    # -- TAP -----------------------------------------------------------------------------------
    def run_query(self, query: str, uploads: dict[str, pl.DataFrame]) -> bytes:
        """Execute the supported ADQL subset; return a VOTable (raises ValueError on errors)."""
        frame, top = _execute_adql(query, uploads, self.tables)
        if self.shuffle and frame.height > 1:
            frame = frame.sample(fraction=1.0, shuffle=True, seed=frame.height)
        return _votable_bytes(frame if top is None else frame.head(top))

    def new_job(self, phase: str, payload: bytes) -> str:
        with self._lock:
            job_id = f"{len(self._jobs) + 1:06d}O"
            self._jobs[job_id] = (phase, payload)
        return job_id

    def job(self, job_id: str) -> tuple[str, bytes] | None:
        with self._lock:
            return self._jobs.get(job_id)

    # -- DataLink ------------------------------------------------------------------------------
    def datalink(self, fields: dict[str, str]) -> bytes:
        """Answer a DataLink request with a zip of XP_CONTINUOUS products (ValueError if bad)."""
        kind = fields.get("RETRIEVAL_TYPE", "").upper()
        if kind != "XP_CONTINUOUS":
            raise ValueError(f"Unsupported RETRIEVAL_TYPE {kind!r}")
        fmt = fields.get("FORMAT", "votable").lower()
        if fmt not in _XP_EXT:
            raise ValueError(f"Unsupported FORMAT {fmt!r}")
        ids = [int(re.sub(r"\D", "", item)) for item in fields.get("ID", "").split(",") if item]
        if not ids:
            raise ValueError("Missing ID")
        if len(ids) > self.max_datalink_ids:
            raise ValueError(f"Too many ids: {len(ids)} > {self.max_datalink_ids}")
        rows = self.xp.filter(pl.col("source_id").is_in(ids)) if self.xp is not None else None
        structure = fields.get("DATA_STRUCTURE", "INDIVIDUAL").upper()
        return xp_files(rows, fmt, combined=structure != "INDIVIDUAL")


def xp_files(rows: pl.DataFrame | None, fmt: str, *, combined: bool = False) -> bytes:
    """A DataLink zip holding ``rows`` as XP_CONTINUOUS product files in format ``fmt``."""
    buffer = io.BytesIO()
    ext = _XP_EXT[fmt]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        if rows is not None and rows.height:
            cols = [c for c in XP_PRODUCT_COLUMNS if c in rows.columns]
            rows = rows.select(cols)
            if combined:
                bundle.writestr(f"XP_CONTINUOUS_COMBINED.{ext}", _xp_file(rows, fmt))
            else:
                for k in range(rows.height):
                    sid = rows["source_id"][k]
                    name = f"XP_CONTINUOUS-Gaia DR3 {sid}.{ext}"
                    bundle.writestr(name, _xp_file(rows.slice(k, 1), fmt))
    return buffer.getvalue()


def _xp_file(rows: pl.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return _xp_csv(rows)
    table = _astropy_table(rows, masked_cells=fmt != "fits")
    out = io.BytesIO()
    if fmt == "ecsv":
        text = io.StringIO()
        table.write(text, format="ascii.ecsv", delimiter=",")
        return text.getvalue().encode()
    if fmt == "fits":
        table.write(out, format="fits")
    else:  # BINARY2 as the archive does (astropy 8.0.2's C TABLEDATA writer corrupted memory
        # when run in the server thread)
        table.write(out, format="votable", tabledata_format="binary2")
    return out.getvalue()


def _xp_csv(rows: pl.DataFrame) -> bytes:
    lines = [",".join(rows.columns)]
    for row in rows.iter_rows():
        cells = []
        for value in row:
            if isinstance(value, list | tuple | np.ndarray | pl.Series):
                inner = ", ".join("null" if v is None else repr(float(v)) for v in value)
                cells.append(f'"({inner})"')
            else:
                cells.append("" if value is None else str(value))
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def _astropy_table(frame: pl.DataFrame, *, masked_cells: bool = False):
    from astropy.table import MaskedColumn, Table

    table = Table()
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pl.Array | pl.List):
            cells = np.empty(series.len(), dtype=object)
            for k, value in enumerate(series.to_list()):
                cells[k] = np.array([np.nan if v is None else v for v in value or []])
                if "error" in name or "correlation" in name:
                    cells[k] = cells[k].astype(np.float32)
                if masked_cells:
                    cells[k] = np.ma.masked_invalid(cells[k])
            table[name] = cells
        elif series.dtype == pl.String:
            table[name] = np.array(series.fill_null("").to_list(), dtype=str)
        else:
            mask = series.is_null().to_numpy()
            values = series.to_numpy() if not mask.any() else series.fill_null(0).to_numpy()
            table[name] = MaskedColumn(values, mask=mask) if mask.any() else values
    return table


def _votable_bytes(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    _astropy_table(frame).write(out, format="votable", tabledata_format="binary2")
    return out.getvalue()


_FROM_ITEM = re.compile(
    r"(?:^|\s+(?:INNER\s+)?JOIN\s+)(?P<table>[\w.]+)(?:\s+AS)?\s+(?P<alias>\w+)"
    r"(?:\s+ON\s+(?P<left>\w+\.\w+)\s*=\s*(?P<right>\w+\.\w+))?",
    re.IGNORECASE,
)


def _execute_adql(query: str, uploads: dict, tables: dict) -> tuple[pl.DataFrame, int | None]:
    """Run the ADQL subset; return the rows and the ``TOP n`` limit (None if absent)."""
    pattern = r"\s*SELECT\s+(?:TOP\s+(\d+)\s+)?(.+?)\s+FROM\s+(.+?)\s*;?\s*$"
    match = re.match(pattern, query, re.I | re.S)
    if not match:
        raise ValueError("Unsupported ADQL (expected SELECT [TOP n] ... FROM ...)")
    top = int(match.group(1)) if match.group(1) else None
    items, from_clause = match.group(2), " ".join(match.group(3).split())
    frame, pos = None, 0
    for item in _FROM_ITEM.finditer(from_clause):
        if item.start() != pos:
            break
        pos = item.end()
        right = _lookup(item.group("table"), uploads, tables)
        alias = item.group("alias")
        right = right.rename({c: f"{alias}.{c}" for c in right.columns})
        if frame is None:
            frame = right
            continue
        if not item.group("left"):
            raise ValueError(f"JOIN {item.group('table')} needs an ON condition")
        keys = [item.group("left"), item.group("right")]
        new = [k for k in keys if k.split(".")[0] == alias]
        old = [k for k in keys if k.split(".")[0] != alias]
        if len(new) != 1 or len(old) != 1:
            raise ValueError(f"Bad ON condition: {' = '.join(keys)}")
        _need(frame, old[0])
        _need(right, new[0])
        frame = frame.join(right, left_on=old[0], right_on=new[0], how="inner", coalesce=False)
    if frame is None or pos != len(from_clause):
        raise ValueError(f"Unsupported FROM clause near: {from_clause[pos : pos + 40]!r}")
    return frame.select(_select_items(items, frame)), top


def _lookup(name: str, uploads: dict, tables: dict) -> pl.DataFrame:
    lower = name.lower()
    if lower.startswith("tap_upload."):
        frame = uploads.get(lower.split(".", 1)[1])
    else:
        frame = tables.get(lower)
    if frame is None:
        raise ValueError(f"Table not found: {name}")
    return frame


def _need(frame: pl.DataFrame, column: str) -> None:
    if column not in frame.columns:
        raise ValueError(f"Column not found: {column}")


def _select_items(items: str, frame: pl.DataFrame) -> list[pl.Expr]:
    exprs = []
    for raw in items.split(","):
        parts = raw.split()
        if len(parts) == 3 and parts[1].upper() == "AS":
            column, name = parts[0], parts[2]
        elif len(parts) == 1:
            column, name = parts[0], parts[0].split(".")[-1]
        else:
            raise ValueError(f"Unsupported select item: {raw.strip()!r}")
        _need(frame, column)
        exprs.append(pl.col(column).alias(name))
    return exprs


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and uploaded files of a POST body (url-encoded or multipart)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        parsed = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}, {}
    fields, uploads = {}, {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        disposition = head.decode(errors="replace")
        name = re.search(r'name="([^"]*)"', disposition)
        if name is None:
            continue
        if re.search(r'filename="', disposition):
            uploads[name.group(1)] = content
        else:
            fields[name.group(1)] = content.decode()
    return fields, uploads


def _upload_tables(fields: dict[str, str], files: dict[str, bytes]) -> dict[str, pl.DataFrame]:
    from astropy.table import Table

    tables = {}
    for spec in filter(None, fields.get("UPLOAD", "").split(";")):
        name, _, ref = spec.partition(",")
        key = ref.removeprefix("param:")
        if key not in files:
            raise ValueError(f"Upload {name}: no file part {key!r}")
        table = Table.read(io.BytesIO(files[key]), format="votable")
        tables[name.lower()] = pl.DataFrame({c: np.asarray(table[c]) for c in table.colnames})
    return tables


def _handler_for(mirror: MirrorServer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "MirrorServer/1.0"

        def log_message(self, *args) -> None:  # keep test output quiet
            return

        # -- plumbing ------------------------------------------------------------------------
        def _begin(self, method: str) -> Fault | None:
            path = urllib.parse.urlsplit(self.path).path
            record = {"method": method, "path": path, "headers": dict(self.headers)}
            body = b""
            if method == "POST":
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            record["body"] = body
            mirror.requests.append(record)
            self._path, self._body, self._truncate = path, body, None
            fault = mirror._take_fault(path, method)
            if fault is None:
                return None
            if fault.kind == "drop":
                self.close_connection = True
                return fault
            if fault.kind == "stall":
                time.sleep(fault.delay)
            if fault.kind == "status":
                self._send(fault.status, f"<html><body>Error {fault.status}</body></html>")
                return fault
            if fault.kind == "truncate":
                self._truncate = fault.keep
            self._fault_kind = fault.kind
            return None

        def _send(self, status: int, body, ctype="text/html", headers=None) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                if self._truncate is not None:
                    data = data[: int(len(data) * self._truncate)]
                    self.close_connection = True
                self.wfile.write(data)

        # -- verbs ---------------------------------------------------------------------------
        def do_HEAD(self) -> None:  # noqa: N802
            self._handle("HEAD")

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _handle(self, method: str) -> None:
            self._fault_kind, self._truncate = None, None
            try:
                if self._begin(method) is not None:
                    return
                if method == "POST":
                    self._post()
                elif self._path.startswith(mirror.tap_path + "/async/"):
                    self._job_get()
                else:
                    self._static()
            except OSError:  # the client went away (e.g. after its time-out)
                self.close_connection = True
            except Exception as exc:  # a bug in the emulator: answer it, do not hang
                self._truncate = None
                self._send(500, f"MirrorServer error: {type(exc).__name__}: {exc}", "text/plain")

        def _post(self) -> None:
            fields, files = _parse_form(self.headers.get("Content-Type", ""), self._body)
            if self._path == mirror.datalink_path:
                try:
                    self._send(200, mirror.datalink(fields), "application/zip")
                except ValueError as exc:
                    self._send(400, f"<html><body><li>{exc}</li></body></html>")
            elif self._path in (mirror.tap_path + "/sync", mirror.tap_path + "/async"):
                self._tap(fields, files, sync=self._path.endswith("/sync"))
            else:
                self._send(404, "Not found")

        # -- routes --------------------------------------------------------------------------
        def _static(self) -> None:
            content = mirror.files.get(self._path)
            if content is None:
                self._send(404, "Not found")
                return
            data = content if isinstance(content, bytes) else Path(content).read_bytes()
            match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if match and self._fault_kind != "ignore_range":
                start = int(match.group(1))
                stop = int(match.group(2)) + 1 if match.group(2) else len(data)
                if start >= len(data):
                    self._send(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                    return
                rng = f"bytes {start}-{min(stop, len(data)) - 1}/{len(data)}"
                self._send(
                    206,
                    data[start:stop],
                    "application/octet-stream",
                    {"Content-Range": rng, "Accept-Ranges": "bytes"},
                )
                return
            self._send(200, data, "application/octet-stream", {"Accept-Ranges": "bytes"})

        def _tap(self, fields: dict, files: dict, *, sync: bool) -> None:
            try:
                if fields.get("REQUEST", "doQuery") != "doQuery" or "QUERY" not in fields:
                    raise ValueError("Missing REQUEST=doQuery or QUERY")
                result, phase = (
                    mirror.run_query(fields["QUERY"], _upload_tables(fields, files)),
                    "COMPLETED",
                )
            except ValueError as exc:
                result, phase = _TAP_ERROR.format(message=exc).encode(), "ERROR"
            if sync:
                self._send(200 if phase == "COMPLETED" else 400, result, "text/xml")
                return
            job_id = mirror.new_job(phase, result)
            location = f"{mirror.url}{mirror.tap_path}/async/{job_id}"
            self._send(303, b"", headers={"Location": location})

        def _job_get(self) -> None:
            parts = self._path[len(mirror.tap_path + "/async/") :].split("/", 1)
            job = mirror.job(parts[0])
            if job is None:
                self._send(404, "No such job")
                return
            phase, payload = job
            what = parts[1] if len(parts) > 1 else ""
            if what == "phase":
                self._send(200, phase, "text/plain")
            elif what == "results/result" and phase == "COMPLETED":
                self._send(200, gzip.compress(payload, mtime=0), "application/x-votable+xml")
            elif what == "error" and phase == "ERROR":
                self._send(200, payload, "text/xml")
            elif what == "results/result":  # a failed job has no result: answer its error
                self._send(400, payload, "text/xml")
            else:
                self._send(404, f"Job {parts[0]} has no {what or 'summary'} in phase {phase}")

    return Handler
