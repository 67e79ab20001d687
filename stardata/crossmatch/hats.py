"""Sky matching against a HATS catalogue of Gaia rows through LSDB (sky-scale references).

The reference may be a local HATS collection (e.g. written by :func:`stardata.hats.write_hats`)
or a URL of a public one such as Gaia DR3's; LSDB reads only the partitions the catalogue
touches. Epochs are handled the way LSDB documents it (LSDB itself does not move stars):

1. crossmatch on the stored (J2016.0) positions with a search radius widened by the largest
   proper motion looked for, ``radius + max_pm · |Δt|``, which must not exceed the
   reference's margin (the margin is what makes pairs across partition edges findable, so a
   match without one is refused rather than silently incomplete);
2. inside each partition, add the candidates' positions propagated to each row's epoch as new
   columns (the stored ``ra``/``dec`` are never overwritten) and refine on them: keep the
   candidates within ``radius``, count them, take the nearest.
"""

from __future__ import annotations

import os

import numpy as np

from stardata.crossmatch.sky import GAIA_EPOCH, chord_arcsec, propagate, unit_vectors
from stardata.errors import CatalogError

__all__ = ["GAIA_ID_ORDER", "is_hats_reference", "lookup_ids", "match_hats"]

MAX_CANDIDATES = 16  # neighbours kept per row in the widened search, before refinement
#: A Gaia DR3 source_id holds its nested HEALPix index at order 12 in its top bits
#: (``source_id >> 35``), so the partitions that can hold an id are known without an index
#: catalogue (hats-import's index step needs an old dask on Python 3.11).
GAIA_ID_ORDER = 12
_GAIA_ID_SHIFT = 35


def is_hats_reference(reference) -> bool:
    """Whether ``reference`` names a HATS catalogue (an LSDB catalogue, local folder or URL)."""
    if reference is None:
        return False
    if type(reference).__module__.startswith("lsdb"):
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


def lookup_ids(reference, ids, columns=None):
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

    Returns
    -------
    pandas.DataFrame
        One row per id found (ids absent from the catalogue are simply missing).
    """
    from stardata.hats import open_hats

    ids = np.unique(np.asarray(ids, np.int64))
    ids = ids[ids > 0]
    if type(reference).__module__.startswith("lsdb"):
        ref = reference
    else:
        cols = None if columns is None else list(dict.fromkeys(["source_id", *columns]))
        ref = open_hats(reference, columns=cols)
    if "source_id" not in ref.columns:
        raise CatalogError("HATS reference has no source_id column")
    hold = _partitions_holding(ref.get_healpix_pixels(), ids)
    meta = ref.meta
    if not hold:
        return meta.iloc[:0].reset_index(drop=True)
    wanted = set(ids.tolist())
    found = (
        ref.partitions[hold]
        .map_partitions(lambda f: f[f["source_id"].isin(wanted)], meta=meta)
        .compute()
    )
    return found.reset_index(drop=True)


def _open_reference(reference):
    """The reference catalogue with the columns the match needs, and its margin width."""
    from stardata.hats import open_hats

    need = ["source_id", "ra", "dec"]
    if type(reference).__module__.startswith("lsdb"):
        ref = reference
    else:
        probe = open_hats(reference)
        cols = need + [c for c in ("pmra", "pmdec") if c in probe.columns]
        ref = open_hats(reference, columns=cols)
    absent = [c for c in need if c not in ref.columns]
    if absent:
        raise CatalogError(f"HATS reference lacks column(s) {absent}")
    if ref.margin is None:
        raise CatalogError(
            "HATS reference has no margin catalogue: pairs across partition edges would be "
            "lost; open it as a collection or write it with a margin (stardata.hats.write_hats)"
        )
    margin = ref.margin.hc_structure.catalog_info.margin_threshold
    return ref, float(margin) if margin is not None else 0.0


def _refine(frame, radius: float):
    """Per partition: candidates moved to each row's epoch, kept within ``radius``."""
    import pandas as pd

    if len(frame) == 0:
        return pd.DataFrame(
            {"_row": np.zeros(0, np.int64), "source_id": np.zeros(0, np.int64), "sep": []}
        )
    has_pm = "pmra_gaia" in frame.columns
    nan = np.full(len(frame), np.nan)
    moved = propagate(
        frame["ra_gaia"].to_numpy(np.float64),
        frame["dec_gaia"].to_numpy(np.float64),
        frame["pmra_gaia"].to_numpy(np.float64, na_value=np.nan) if has_pm else nan,
        frame["pmdec_gaia"].to_numpy(np.float64, na_value=np.nan) if has_pm else nan,
        frame["epoch_cat"].to_numpy(np.float64) - GAIA_EPOCH,
    )
    own = unit_vectors(frame["ra_cat"].to_numpy(np.float64), frame["dec_cat"].to_numpy(np.float64))
    sep = chord_arcsec(np.linalg.norm(moved - own, axis=1))
    keep = sep <= radius
    return pd.DataFrame(
        {
            "_row": frame["_row_cat"].to_numpy(np.int64)[keep],
            "source_id": frame["source_id_gaia"].to_numpy(np.int64)[keep],
            "sep": sep[keep],
        }
    )


def match_hats(
    ra: np.ndarray,
    dec: np.ndarray,
    epoch: np.ndarray,
    reference,
    radius: float = 1.0,
    max_pm: float = 0.5,
) -> dict[str, np.ndarray]:
    """Nearest reference star within ``radius`` of each position, after propagation.

    Parameters
    ----------
    ra, dec : numpy.ndarray
        The catalogue's positions [deg]; NaN rows are left unmatched.
    epoch : numpy.ndarray
        Each position's epoch [Julian yr].
    reference : lsdb.Catalog, path or URL
        A HATS catalogue of Gaia rows (``source_id``, ``ra``, ``dec``; ``pmra``/``pmdec``
        [mas/yr] to propagate) with a margin.
    radius : float
        Match radius [arcsec].
    max_pm : float
        Largest proper motion [arcsec/yr] looked for; ``radius + max_pm · |Δt|`` must fit in
        the reference's margin.

    Returns
    -------
    dict of numpy.ndarray
        As :func:`stardata.crossmatch.sky.match_local` (``reference_row`` is -1: a HATS
        catalogue has no row numbers).
    """
    import pandas as pd

    from stardata.hats import require_hats

    lsdb = require_hats()
    n = ra.size
    out = {
        "source_id": np.zeros(n, np.int64),
        "reference_row": np.full(n, -1, np.int64),
        "separation_arcsec": np.full(n, np.nan),
        "n_candidates": np.zeros(n, np.int32),
    }
    ref, margin = _open_reference(reference)
    usable = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    dt = float(np.max(np.abs(epoch[usable] - GAIA_EPOCH))) if usable.size else 0.0
    search = radius + max_pm * dt
    if search > margin:
        raise CatalogError(
            f"search radius {search:.2f} arcsec (radius {radius} + max_pm {max_pm} arcsec/yr × "
            f"{dt:.1f} yr) exceeds the reference's {margin:g} arcsec margin; lower max_pm or "
            "use a reference with a wider margin"
        )
    if usable.size == 0:
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
        n_neighbors=MAX_CANDIDATES,
        radius_arcsec=search,
        require_right_margin=True,
        suffixes=("_cat", "_gaia"),
        suffix_method="all_columns",
    )
    meta = pd.DataFrame(
        {"_row": np.zeros(0, np.int64), "source_id": np.zeros(0, np.int64), "sep": []}
    )
    found = pairs.map_partitions(_refine, radius, meta=meta).compute()
    if len(found):
        found = found.sort_values(["_row", "sep", "source_id"], kind="stable")
        rows = found["_row"].to_numpy(np.int64)
        first = np.r_[True, rows[1:] != rows[:-1]]
        best = found[first]
        idx = best["_row"].to_numpy(np.int64)
        out["source_id"][idx] = best["source_id"].to_numpy(np.int64)
        out["separation_arcsec"][idx] = best["sep"].to_numpy(np.float64)
        counts = np.bincount(rows, minlength=n)
        out["n_candidates"][:] = counts[:n]
    out["ambiguous"] = out["n_candidates"] > 1
    return out
