"""Sky matching against a HATS catalogue of Gaia rows through LSDB (sky-scale references).

The reference may be a local HATS collection (e.g. written by :func:`stardata.hats.write_hats`)
or a URL of a public one such as Gaia DR3's; LSDB reads only the partitions the catalogue
touches. Epochs are handled the way LSDB documents it (LSDB itself does not move stars), with
the in-memory match's own propagation so that both give the same rows:

1. candidates are searched around the stored positions within ``radius + max_pm · |Δt|`` of
   each row (Δt from the row's epoch to the reference's ``ref_epoch``, J2016.0 for Gaia DR3),
   which must not exceed the reference's margin (the margin is what makes pairs across
   partition edges findable, so a match without one is refused rather than silently
   incomplete). Every star within that radius is a candidate: there is no neighbour cap, so a
   dense field (the bulge, a cluster) loses nothing;
2. inside each partition (:class:`stardata.crossmatch.lsdb_match.EpochCrossmatch`) the
   candidates are moved to the row's epoch by :func:`stardata.crossmatch.sky.propagate`
   (ERFA pmsafe: proper motion, parallax, radial velocity) and kept within ``radius``: they
   are counted and the nearest is taken. The stored ``ra``/``dec`` are never overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

import numpy as np

from stardata.crossmatch.sky import ASTROMETRY, GAIA_EPOCH
from stardata.errors import CatalogError

__all__ = [
    "GAIA_ID_ORDER",
    "is_hats_reference",
    "local_client",
    "lookup_ids",
    "match_hats",
    "quiet",
]

#: A Gaia DR3 source_id holds its nested HEALPix index at order 12 in its top bits
#: (``source_id >> 35``), so the partitions that can hold an id are known without an index
#: catalogue (hats-import's index step needs an old dask on Python 3.11).
GAIA_ID_ORDER = 12
_GAIA_ID_SHIFT = 35
#: Notices LSDB and HATS print on every call that tell the user nothing they can act on.
_NOTICES = ("Looking for catalog - found collection",)


class _DropNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_NOTICES)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence LSDB's and HATS's routine notices for the duration (not their real warnings).

    Dropped: the root-logger line "Looking for catalog - found collection", the warning that
    partitions are computed from the Parquet files (a catalogue written without its CSV of
    partitions), and pandas-4 deprecation warnings raised inside ``lsdb``, ``hats`` and
    ``nested_pandas``. Anything else (e.g. LSDB's warning that a result will not fit in memory)
    still shows.
    """
    root, drop = logging.getLogger(), _DropNotices()
    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Computing partitions from catalog parquet")
            try:
                from pandas.errors import Pandas4Warning
            except ImportError:  # pragma: no cover - older pandas
                pass
            else:
                warnings.filterwarnings(
                    "ignore", category=Pandas4Warning, module=r"(lsdb|hats|nested_pandas)\b"
                )
            yield
    finally:
        root.removeFilter(drop)


@contextlib.contextmanager
def local_client() -> Iterator:
    """An in-process Dask client (one thread, no nanny) that warns about nothing.

    ``dashboard_address=None`` does not disable the scheduler's HTTP server in
    ``distributed``: it still binds port 8787, and warns "Port 8787 is already in use" when
    another cluster has it. A random free port (``":0"``) never clashes.
    """
    from dask.distributed import Client

    with Client(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as client:
        yield client


def _is_lsdb(reference) -> bool:
    return type(reference).__module__.startswith("lsdb")


def _name(reference) -> str:
    """How errors name the reference: its path or URL, or the LSDB catalogue's name."""
    if _is_lsdb(reference):
        return f"HATS reference {getattr(reference, 'name', None) or 'catalogue'!r}"
    return f"HATS reference {os.fspath(reference)}"


def is_hats_reference(reference) -> bool:
    """Whether ``reference`` names a HATS catalogue (an LSDB catalogue, local folder or URL)."""
    if reference is None:
        return False
    if _is_lsdb(reference):
        return True
    if isinstance(reference, str | os.PathLike):
        from stardata.hats import is_hats

        text = os.fspath(reference)
        return is_hats(text) or (
            "://" in text and not text.lower().endswith((".csv", ".fits", ".parquet", ".xml"))
        )
    return False


def _partitions_holding(pixels, ids: np.ndarray) -> list:
    """The partitions (HEALPix pixels of any order) that contain any of the Gaia ``ids``."""
    p12 = np.sort(np.asarray(ids, np.int64) >> _GAIA_ID_SHIFT)
    keep = []
    for px in pixels:
        d = GAIA_ID_ORDER - px.order
        if d >= 0:  # an order-12 range inside the partition
            lo, hi = px.pixel << (2 * d), (px.pixel + 1) << (2 * d)
        else:  # a partition deeper than order 12: its order-12 parent
            lo = px.pixel >> (-2 * d)
            hi = lo + 1
        if np.searchsorted(p12, hi) > np.searchsorted(p12, lo):
            keep.append(px)
    return keep


def _open(reference, need: list[str], optional=(), every: bool = False) -> tuple:
    """The reference catalogue with the ``need`` columns and those of ``optional`` it has
    (``every``: all its columns), and its name for messages.

    Raises
    ------
    CatalogError
        An unreadable reference, or one without a ``need`` column (naming the reference).
    """
    from stardata.hats import open_hats

    name = _name(reference)
    if _is_lsdb(reference):
        ref, have = reference, list(reference.columns)
    else:
        try:
            have = list(open_hats(reference).columns)  # lazy: reads the schema only
        except (ValueError, FileNotFoundError) as exc:
            text = " ".join(str(exc).split())
            raise CatalogError(f"{name}: not a readable HATS catalogue ({text})") from None
        ref = None
    absent = [c for c in need if c not in have]
    if absent:
        shown = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "")
        raise CatalogError(f"{name} has no {', '.join(absent)} column (columns: {shown})")
    if ref is None:
        ref = open_hats(
            reference, columns=None if every else need + [c for c in optional if c in have]
        )
    return ref, name


def lookup_ids(reference, ids, columns=None, progress: bool = False):
    """Rows of a HATS Gaia catalogue with the given ``source_id`` values.

    Reads only the partitions whose sky holds one of the ids (from the HEALPix index in the
    ids' top bits), never the whole catalogue.

    Parameters
    ----------
    reference : lsdb.Catalog, path or URL
        HATS catalogue with a ``source_id`` column (Gaia DR3 ids).
    ids : array-like of int
    columns : sequence of str, optional
        Columns to return (``source_id`` always included); default all.
    progress : bool
        LSDB's progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per id found (ids absent from the catalogue are simply missing).

    Raises
    ------
    CatalogError
        The reference is unreadable or lacks ``source_id`` or one of ``columns``.
    """
    from stardata.hats import require_hats

    require_hats()
    ids = np.unique(np.asarray(ids, np.int64))
    ids = ids[ids > 0]
    with quiet():
        need = list(dict.fromkeys(["source_id", *(columns or ())]))
        ref, _ = _open(reference, need, every=columns is None)
        hold = _partitions_holding(ref.get_healpix_pixels(), ids)
        meta = ref.meta
        if not hold:
            return meta.iloc[:0].reset_index(drop=True)
        wanted = set(ids.tolist())
        found = (
            ref.partitions[hold]
            .map_partitions(lambda f: f[f["source_id"].isin(wanted)], meta=meta)
            .compute(progress_bar=progress)
        )
    return found.reset_index(drop=True)


def _open_reference(reference) -> tuple:
    """The reference with the columns the match needs, its name and its margin [arcsec]."""
    ref, name = _open(reference, ["source_id", "ra", "dec"], ASTROMETRY)
    if ref.margin is None:
        raise CatalogError(
            f"{name} has no margin catalogue: pairs across partition edges would be lost; "
            "open it as a collection or write it with a margin (stardata.hats.write_hats)"
        )
    margin = ref.margin.hc_structure.catalog_info.margin_threshold
    return ref, name, float(margin) if margin is not None else 0.0


def _epoch_range(ref, name: str, progress: bool) -> tuple[float, float]:
    """Smallest and largest ``ref_epoch`` of the reference (J2016.0 without the column).

    From the Parquet statistics of a catalogue on disk (no data read); a catalogue without
    statistics (one built in memory) has its ``ref_epoch`` column read.
    """
    if "ref_epoch" not in ref.columns:
        return GAIA_EPOCH, GAIA_EPOCH
    stats = None
    if ref.hc_structure.on_disk:  # the statistics of the whole catalogue, even if filtered
        stats = ref.aggregate_column_statistics(
            include_columns=["ref_epoch"], use_default_columns=False, warn_on_modified_catalog=False
        )
    if stats is not None and "ref_epoch" in stats.index:
        row = stats.loc["ref_epoch"]
        lo, hi, nulls = float(row["min_value"]), float(row["max_value"]), int(row["null_count"])
    else:
        import pandas as pd

        def extent(frame):
            e = frame["ref_epoch"].to_numpy(np.float64, na_value=np.nan)
            ok = e[np.isfinite(e)]
            return pd.DataFrame(
                {
                    "lo": [ok.min() if ok.size else np.inf],
                    "hi": [ok.max() if ok.size else -np.inf],
                    "nulls": [e.size - ok.size],
                }
            )

        meta = pd.DataFrame({"lo": [0.0], "hi": [0.0], "nulls": [0]}).iloc[:0]
        parts = ref[["ref_epoch"]].map_partitions(extent, meta=meta).compute(progress_bar=progress)
        lo, hi, nulls = parts["lo"].min(), parts["hi"].max(), int(parts["nulls"].sum())
    if nulls:
        raise CatalogError(f"{name}: {nulls} row(s) have no ref_epoch")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return GAIA_EPOCH, GAIA_EPOCH  # no rows
    return lo, hi


def match_hats(
    ra: np.ndarray,
    dec: np.ndarray,
    epoch: np.ndarray,
    reference,
    radius: float = 1.0,
    max_pm: float = 0.5,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Nearest reference star within ``radius`` of each position, after propagation.

    The same rows as :func:`stardata.crossmatch.sky.match_local` against the same stars, for
    every star whose motion between its ``ref_epoch`` and the row's epoch is at most
    ``max_pm`` per year (tested at bulge density, 1e6 stars/deg²).

    Parameters
    ----------
    ra, dec : numpy.ndarray
        The catalogue's positions [deg]; NaN rows are left unmatched.
    epoch : numpy.ndarray
        Each position's epoch [Julian yr].
    reference : lsdb.Catalog, path or URL
        A HATS catalogue of Gaia rows with a margin: ``source_id``, ``ra``, ``dec`` and, to
        move the stars, ``pmra``, ``pmdec`` [mas/yr], ``parallax`` [mas],
        ``radial_velocity`` [km/s] and ``ref_epoch`` [Julian yr; J2016.0 when absent].
    radius : float
        Match radius [arcsec].
    max_pm : float
        Largest motion looked for [arcsec/yr]; ``radius + max_pm · |Δt|`` must fit in the
        reference's margin.
    progress : bool
        LSDB's progress bars.

    Returns
    -------
    dict of numpy.ndarray
        As :func:`stardata.crossmatch.sky.match_local` (``reference_row`` is -1: a HATS
        catalogue has no row numbers).

    Raises
    ------
    CatalogError
        An unreadable reference, one without a margin or a needed column, or a search radius
        wider than the margin.
    """
    from stardata.hats import require_hats

    lsdb = require_hats()
    with quiet():
        return _match_hats(lsdb, ra, dec, epoch, reference, radius, max_pm, progress)


def _match_hats(lsdb, ra, dec, epoch, reference, radius, max_pm, progress):
    import pandas as pd

    from stardata.crossmatch.lsdb_match import SEPARATION, EpochCrossmatch, search_radius

    n = ra.size
    out = {
        "source_id": np.zeros(n, np.int64),
        "reference_row": np.full(n, -1, np.int64),
        "separation_arcsec": np.full(n, np.nan),
        "n_candidates": np.zeros(n, np.int32),
    }
    ref, name, margin = _open_reference(reference)
    usable = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    epochs = _epoch_range(ref, name, progress)
    if usable.size:
        search = search_radius(epoch[usable], epochs, radius, max_pm)
        widest = int(np.argmax(search))
        if search[widest] > margin:
            dt = (search[widest] - radius) / max_pm if max_pm else 0.0
            raise CatalogError(
                f"{name}: search radius {search[widest]:.2f} arcsec (radius {radius} + max_pm "
                f"{max_pm} arcsec/yr × {dt:.1f} yr) exceeds the reference's {margin:g} arcsec "
                "margin; lower max_pm or use a reference with a wider margin"
            )
    else:
        out["ambiguous"] = out["n_candidates"] > 1
        return out
    left = lsdb.from_dataframe(
        pd.DataFrame(
            {"_row": usable, "ra": ra[usable], "dec": dec[usable], "epoch": epoch[usable]}
        ),
        ra_column="ra",
        dec_column="dec",
        margin_threshold=None,
    )
    pairs = left.crossmatch(
        ref,
        algorithm=EpochCrossmatch(radius, max_pm, epochs, name=name),
        require_right_margin=True,
        suffixes=("_cat", "_gaia"),
        suffix_method="all_columns",
    )
    found = pairs[["_row_cat", "source_id_gaia", SEPARATION]].compute(progress_bar=progress)
    if len(found):
        rows = found["_row_cat"].to_numpy(np.int64)
        sep = found[SEPARATION].to_numpy(np.float64)
        ids = found["source_id_gaia"].to_numpy(np.int64)
        order = np.lexsort((ids, sep, rows))  # per row: nearest first, then the smaller id
        rows, sep, ids = rows[order], sep[order], ids[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        out["source_id"][rows[first]] = ids[first]
        out["separation_arcsec"][rows[first]] = sep[first]
        out["n_candidates"][:] = np.bincount(rows, minlength=n)[:n]
    out["ambiguous"] = out["n_candidates"] > 1
    return out
