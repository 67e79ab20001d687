"""The build's columns for matched Gaia DR3 sources: the same connectors and derived columns.

:func:`derived_block` joins one block of catalogue rows (by their Gaia source id) to
``gaia_source``, the 2MASS best neighbour and the XP coefficients through the connectors the
release build calls, derives the columns with :func:`stardata.derive.derive_gaia`, applies the
XP quality cuts of :func:`stardata.cuts.xp_quality_cuts`, masks XP as the build does
(:func:`stardata.derive.mask_xp`) and adds E(B−V) from
:func:`stardata.sources.extinction.ebv_combined19`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stardata import cuts
from stardata import derive as D
from stardata.columns import N_XP, XP_KINDS
from stardata.sources.tap import align_on_ids

__all__ = ["GAIA_WANTED", "OUTPUT_FLAGS", "derived_block"]

#: gaia_source columns fetched: those the derived columns need, position and XP availability.
GAIA_WANTED = (*D.GAIA_RAW, "ra", "dec", "l", "b", "has_xp_continuous")
#: Flags written after the derived columns.
OUTPUT_FLAGS = ("gaia_found", "tmass_found", "has_xp", "xp_good")
_DROPPED = D.XP_VECTORS


def derived_block(
    ids: np.ndarray,
    s,
    src,
    cache: Path,
    *,
    block: int = 0,
    structure=None,
    xp_bounds=None,
    extinction=True,
):
    """Every derived column of the rows whose Gaia DR3 source ids are ``ids`` (0 = none).

    Parameters
    ----------
    ids : numpy.ndarray of int64
        One block of the catalogue's matched source ids, in catalogue order.
    s : stardata.Settings
        The build's settings (thresholds, seeds, chunk sizes, retry policy).
    src : stardata.Sources
        Archive URLs, XP product format, dust-map folder.
    cache : Path
        Folder of the connectors' chunk caches.
    block : int
        The block's index: with ``s.ebv_seed`` it seeds the extinction draws, as in the build.
    structure : stardata.sources.xp.StructureChoice, optional
        The DataLink ``DATA_STRUCTURE`` choice shared by all blocks of a run (default: a new
        one from ``s.xp_data_structure``).
    xp_bounds : dict, optional
        ``{kind: [lo, hi]}`` of a release's ``xp_percentile_bounds`` (its manifest); without
        it the XP percentile cut is not applied (it needs the whole training table).
    extinction : bool
        Compute ``logebv`` (needs the Combined19 map); otherwise it is NaN.

    Returns
    -------
    dict of numpy.ndarray
        Gaia ``ra``/``dec``/``l``/``b`` as ``gaia_ra``, ``gaia_dec``, ``glon``, ``glat``; the
        columns of :func:`stardata.derive.derive_gaia` (without the raw coefficient arrays);
        ``logebv``, ``logebv_err``; ``cut_*`` flags and :data:`OUTPUT_FLAGS`.
    """
    from stardata.sources.gaia import query_gaia_source
    from stardata.sources.tmass import query_tmass
    from stardata.sources.xp import StructureChoice, fetch_xp_continuous

    remote = {"retries": s.retries, "backoff": s.backoff, "timeout": s.timeout, "progress": False}
    frame = query_gaia_source(
        ids,
        cache / "gaia_source",
        tap_url=src.gaia_tap_url,
        columns=GAIA_WANTED,
        chunk_size=s.gaia_chunk_size,
        **remote,
    )
    if "has_xp_continuous" in frame.columns:
        frame = frame.with_columns(frame["has_xp_continuous"].cast(float))
    gaia, gaia_found = align_on_ids(ids, frame, GAIA_WANTED, ints=D.GAIA_INT)
    frame = query_tmass(
        ids, cache / "tmass", tap_url=src.gaia_tap_url, chunk_size=s.gaia_chunk_size, **remote
    )
    tmass, tmass_found = align_on_ids(ids, frame, D.TMASS_RAW, strings=D.TMASS_STR)
    ask = ids[gaia_found & (np.nan_to_num(gaia["has_xp_continuous"], nan=1.0) > 0)]
    frame = fetch_xp_continuous(
        ask,
        cache / "xp_continuous",
        datalink_url=src.gaia_datalink_url,
        chunk_size=s.xp_chunk_size,
        data_format=src.xp_format,
        data_structure=structure or StructureChoice(s.xp_data_structure),
        **remote,
    )
    xp, has_xp = align_on_ids(
        ids, frame, D.XP_RAW, ints=D.XP_INT, vectors=dict.fromkeys(D.XP_VECTORS, N_XP)
    )
    cols = {
        "gaia_ra": gaia["ra"],
        "gaia_dec": gaia["dec"],
        "glon": gaia["l"],
        "glat": gaia["b"],
        **D.derive_gaia(gaia, xp, tmass, s),
    }
    # the APOGEE STARFLAG cut cannot apply to a star without APOGEE flags: it passes
    flagged = {**cols, "starflag": np.zeros(ids.size, np.int64)}
    checks = cuts.xp_quality_cuts(flagged, s)
    if xp_bounds is not None:
        lo = [float(xp_bounds[k][0]) for k in XP_KINDS]
        hi = [float(xp_bounds[k][1]) for k in XP_KINDS]
        norm = np.stack([cols[k] for k in XP_KINDS], axis=1)
        checks.append(cuts.xp_within_bounds(norm, lo, hi))
    cols["xp_good"] = np.logical_and.reduce([c.keep for c in checks])
    D.mask_xp(
        cols,
        cols["xp_good"],
        mask_irrelevant=s.mask_irrelevant_xp,
        propagate_from=s.xp_relevancy_propagate_from,
    )
    cols.update(_extinction(cols, s, src, gaia_found if extinction else None, block))
    for name in _DROPPED:
        cols.pop(name)
    for c in checks:
        cols[f"cut_{c.name}"] = c.keep
    cols["gaia_found"], cols["tmass_found"], cols["has_xp"] = gaia_found, tmass_found, has_xp
    cols["xp_good"] = cols.pop("xp_good")
    return cols


def _extinction(cols: dict, s, src, found: np.ndarray | None, block: int) -> dict:
    from stardata.sources.extinction import ebv_combined19

    n = cols["glon"].size
    out = {"logebv": np.full(n, np.nan), "logebv_err": np.full(n, np.nan)}
    idx = np.flatnonzero(found) if found is not None else np.zeros(0, int)
    if idx.size:
        out["logebv"][idx], out["logebv_err"][idx] = ebv_combined19(
            cols["glon"][idx],
            cols["glat"][idx],
            cols["parallax_corrected"][idx],
            cols["parallax_error"][idx],
            n_draws=s.ebv_n_draws,
            seed=int(np.random.SeedSequence([s.ebv_seed, block]).generate_state(1)[0]),
            dust_dir=str(src.resolved_dust_dir()),
            chunk=s.ebv_chunk_rows,
            star_parallax=cols["parallax"][idx],  # as the build: before the zero point
            nonpositive=s.ebv_nonpositive_draws,
        )
    return out
