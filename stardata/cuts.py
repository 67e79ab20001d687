"""Named quality cuts and APOGEE deduplication.

Every cut is a pure function returning a :class:`Cut`: its name, a boolean ``keep`` mask (True =
passes) and the number of rows it fails. Missing inputs (NaN) fail a cut, as LB24's comparisons
did. :func:`sequential_counts` turns a list of cuts into "rows removed by each cut, in order",
which is what the manifest reports. Thresholds are arguments; their defaults (the LB24 values)
live in :class:`stardata.release.Settings`, the one place settings are declared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stardata.columns import bits_set

__all__ = [
    "XP_CUT_ORDER",
    "xp_quality_cuts",
    "Cut",
    "Dedup",
    "apogee_only_good",
    "deduplicate",
    "in_range",
    "below",
    "bits_unset",
    "sequential_counts",
    "xp_complete",
    "xp_percentile_bounds",
    "xp_within_bounds",
]


@dataclass(frozen=True)
class Cut:
    """One named cut: ``keep`` is True where a row passes; ``failed`` counts the rest."""

    name: str
    keep: np.ndarray

    @property
    def failed(self) -> int:
        return int(self.keep.size - np.count_nonzero(self.keep))


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def in_range(name: str, x, lo: float, hi: float) -> Cut:
    """``lo < x < hi`` (strict; NaN fails)."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return Cut(name, (x > lo) & (x < hi))


def below(name: str, x, hi: float) -> Cut:
    """``x < hi`` (strict; NaN fails)."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return Cut(name, x < hi)


def bits_unset(name: str, flags, bits: Sequence[int]) -> Cut:
    """None of ``bits`` set in an integer bitmask."""
    return Cut(name, ~bits_set(flags, tuple(bits)))


def xp_complete(coeffs) -> Cut:
    """All XP coefficients present: finite and not exactly 0 (LB24's 0 → NaN convention).

    Parameters
    ----------
    coeffs : array_like, shape (N, K)
        BP and RP coefficients side by side (K = 110), NaN where the star has no spectrum.
    """
    c = _f64(coeffs)
    return Cut("xp_complete", np.all(np.isfinite(c) & (c != 0.0), axis=1))


def xp_percentile_bounds(norm, lo: float = 0.2, hi: float = 99.8) -> tuple[np.ndarray, np.ndarray]:
    """Per-coefficient ``lo`` and ``hi`` percentiles of G-normalized coefficients (NaN ignored).

    A column that is all NaN gets NaN bounds (so every row fails it).
    """
    n = _f64(norm)
    if n.ndim != 2:
        raise ValueError(f"expected (N, K) normalized coefficients, got shape {n.shape}")
    lo_v = np.full(n.shape[1], np.nan)
    hi_v = np.full(n.shape[1], np.nan)
    for j in range(n.shape[1]):
        col = n[:, j]
        col = col[np.isfinite(col)]
        if col.size:
            lo_v[j], hi_v[j] = np.percentile(col, [lo, hi])
    return lo_v, hi_v


def xp_within_bounds(norm, lo_bounds, hi_bounds) -> Cut:
    """Every normalized coefficient strictly inside its column's bounds (NaN fails)."""
    n = _f64(norm)
    with np.errstate(invalid="ignore"):
        ok = (n > _f64(lo_bounds)[None, :]) & (n < _f64(hi_bounds)[None, :])
    return Cut("xp_percentile", np.all(ok, axis=1))


def apogee_only_good(has_complete_xp, starflag, aspcapflag) -> Cut:
    """LB24's APOGEE path: no complete XP, STARFLAG == 0 and ASPCAPFLAG == 0."""
    sf = np.asarray(starflag).astype(np.int64)
    af = np.asarray(aspcapflag).astype(np.int64)
    return Cut("apogee_only_good", ~np.asarray(has_complete_xp, bool) & (sf == 0) & (af == 0))


def sequential_counts(cuts: Sequence[Cut], alive=None) -> list[dict]:
    """Rows removed by each cut when the cuts are applied in order.

    Parameters
    ----------
    cuts : sequence of Cut
        All with the same length.
    alive : array_like of bool, optional
        Rows still in play before the first cut (default: all).

    Returns
    -------
    list of dict
        ``{"cut", "failed", "removed", "remaining"}`` per cut: ``failed`` counts rows failing
        the cut on its own (among ``alive``), ``removed`` those it removes after the cuts before it.
    """
    if not cuts:
        return []
    start = np.ones(cuts[0].keep.size, bool) if alive is None else np.asarray(alive, bool)
    alive = start.copy()
    out = []
    for cut in cuts:
        if cut.keep.shape != alive.shape:
            raise ValueError(f"cut {cut.name!r} has {cut.keep.size} rows, expected {alive.size}")
        failed = int(np.count_nonzero(start & ~cut.keep))
        removed = int(np.count_nonzero(alive & ~cut.keep))
        alive &= cut.keep
        out.append(
            {"cut": cut.name, "failed": failed, "removed": removed, "remaining": int(alive.sum())}
        )
    return out


@dataclass(frozen=True)
class Dedup:
    """Result of :func:`deduplicate`: ``keep`` mask and how many rows each step removed."""

    keep: np.ndarray
    removed_apogee_id: int
    removed_gaia_source_id: int
    flagged_extratarg: int
    flagged_kept: int


def _first_of_groups(keys: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Positions (into the original arrays) of the first row of each key group along ``order``."""
    sorted_keys = keys[order]
    first = np.ones(order.size, bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return order[first]


def deduplicate(apogee_id, snr, extratarg, gaia_source_id=None, *, duplicate_bit: int = 4) -> Dedup:
    """Keep one allStar row per star.

    Within each ``APOGEE_ID``, rows without the EXTRATARG duplicate bit come first, then the
    highest SNR (NaN lowest), then the earliest row (deterministic ties). A second pass keeps one
    row per positive Gaia ``source_id`` by the same rule, so two APOGEE ids matched to the same
    Gaia star cannot land in different splits.

    Parameters
    ----------
    apogee_id : array_like of str, shape (N,)
    snr : array_like of float, shape (N,)
    extratarg : array_like of int, shape (N,)
    gaia_source_id : array_like of int, shape (N,), optional
        Values ≤ 0 mean "no Gaia match" and are never merged.
    duplicate_bit : int
        EXTRATARG bit marking a duplicate (4 in DR17).

    Returns
    -------
    Dedup
    """
    ids = np.char.strip(np.asarray(apogee_id).astype(str))
    n = ids.size
    s = _f64(snr)
    s = np.where(np.isfinite(s), s, -np.inf)
    dup = bits_set(extratarg, (duplicate_bit,))
    rows = np.arange(n)
    # lexsort: last key is primary.
    order = np.lexsort((rows, -s, dup.astype(np.int8), ids))
    keep = np.zeros(n, bool)
    keep[_first_of_groups(ids, order)] = True
    removed_id = n - int(keep.sum())
    removed_gaia = 0
    if gaia_source_id is not None:
        gid = np.asarray(gaia_source_id).astype(np.int64)
        cand = np.flatnonzero(keep & (gid > 0))
        sub = np.lexsort((cand, -s[cand], dup[cand].astype(np.int8), gid[cand]))
        winners = _first_of_groups(gid[cand], sub)
        drop = np.setdiff1d(cand, cand[winners], assume_unique=True)
        keep[drop] = False
        removed_gaia = int(drop.size)
    return Dedup(
        keep=keep,
        removed_apogee_id=removed_id,
        removed_gaia_source_id=removed_gaia,
        flagged_extratarg=int(dup.sum()),
        flagged_kept=int((dup & keep).sum()),
    )


#: Order in which the XP cuts are applied and reported (LB24's order).
XP_CUT_ORDER = (
    "xp_complete",
    "xp_percentile",
    "bprp_range",
    "g_range",
    "ruwe",
    "bp_rp_excess_factor",
    "starflag_neighbour",
)


def xp_quality_cuts(cols: dict, s) -> list[Cut]:
    """The XP cuts that need no global statistics (every one but ``xp_percentile``).

    Parameters
    ----------
    cols : dict
        Columns from :func:`stardata.columns.derive`.
    s : stardata.release.Settings
    """
    coeffs = np.concatenate([cols["bp_coefficients"], cols["rp_coefficients"]], axis=1)
    return [
        xp_complete(coeffs),
        in_range("bprp_range", cols["bprp"], s.bprp_min, s.bprp_max),
        in_range("g_range", cols["phot_g_mean_mag"], s.g_min, s.g_max),
        below("ruwe", cols["ruwe"], s.xp_ruwe_max),
        below("bp_rp_excess_factor", cols["phot_bp_rp_excess_factor"], s.excess_factor_max),
        bits_unset("starflag_neighbour", cols["starflag"], s.xp_starflag_bits),
    ]
