"""The local stages of a release build (derived columns, selection, extinction) and its outputs.

The input stages (allStar, Gaia, 2MASS, XP) are in :mod:`stardata.inputs`; the stage cache and
block I/O they all share are in :mod:`stardata.stagecache`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardata import columns as C
from stardata import cuts
from stardata import derive as D
from stardata.io import LazyWriter, ParquetRowWriter, write_json
from stardata.split import split_ids
from stardata.stagecache import (
    Context,
    chunked_stage,
    n_groups,
    read_group,
    stage_key,
    to_numpy,
    to_table,
)

__all__ = ["Context", "read_group", "run", "to_table"]


# -- local stages ------------------------------------------------------------------------------
def stage_derive(ctx: Context, apogee: dict, gaia: dict, xp: dict, tmass: dict) -> dict:
    """Derived columns and per-row cut flags (all but the XP percentile cut).

    Its record also holds the row counts and the APOGEE vs 2MASS J/H/K comparison
    (:func:`photometry_report`).
    """
    s = ctx.s
    key = stage_key("derive", apogee["key"], gaia["key"], xp["key"], tmass["key"], s.to_dict())
    paths = [ctx.path(n) for n in ("apogee", "gaia_source", "xp", "tmass")]

    def make(k: int) -> dict:
        a, g, x, t = (read_group(p, k) for p in paths)
        cols = D.derive(a, g, x, t, s)
        for cut in cuts.xp_quality_cuts(cols, s):
            cols[f"cut_{cut.name}"] = cut.keep
        cols["gaia_found"], cols["has_xp"] = g["gaia_found"], x["has_xp"]
        cols["tmass_found"] = t["tmass_found"]
        return cols

    rec = chunked_stage(ctx, "derived", key, n_groups(paths[0]), make)
    if "counts" not in rec or "photometry" not in rec:
        flags = ["gaia_found", "has_xp", "tmass_found", "labels_good"]
        t = pq.read_table(ctx.path("derived"), columns=flags)
        rec["counts"] = {f"rows_{n}": int(np.count_nonzero(t[n].to_numpy())) for n in flags}
        rec["photometry"] = photometry_report(ctx.path("derived"), s.jhk_prefer)
        write_json(ctx.stage_dir / "derived.json", rec)
    ctx.counts.update(rec["counts"])
    return rec


def photometry_report(derived: Path, prefer: str) -> dict:
    """APOGEE vs Gaia-linked 2MASS J/H/K over the deduplicated rows, and which one was used.

    Returns
    -------
    dict
        ``prefer`` and, per band ``j``, ``h``, ``k``: the counts and differences of
        :func:`stardata.sources.tmass.compare_band` (APOGEE minus 2MASS, mag; None when no star
        has both) and
        ``used_apogee``, ``used_tmass``, ``used_none`` (rows whose band came from each source).
    """
    from stardata.sources.tmass import compare_band

    report: dict = {"prefer": prefer}
    for band in ("j", "h", "k"):
        names = [f"apogee_{band}", f"tmass_{band}", f"{band}_src"]
        d = to_numpy(pq.read_table(derived, columns=names))
        stats = compare_band(d[names[0]], d[names[1]])
        stats = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in stats.items()}
        src = d[names[2]]
        for used in ("apogee", "tmass"):
            stats[f"used_{used}"] = int(np.count_nonzero(src == used))
        stats["used_none"] = int(np.count_nonzero(src == ""))
        report[band] = stats
    return report


def stage_select(ctx: Context, derived: dict) -> dict:
    """XP percentile bounds, which rows keep XP, which rows stay, and each row's split."""
    s = ctx.s
    key = stage_key("select", derived["key"], s.to_dict())
    rec = ctx.done("select", key)
    if rec is None:
        path = ctx.path("derived")
        lo, hi = [], []
        for kind in ctx.bar(C.XP_KINDS, desc="xp percentiles", total=len(C.XP_KINDS)):
            col = pq.read_table(path, columns=[kind])[kind].to_numpy()
            b = cuts.xp_percentile_bounds(col[:, None], s.xp_percentile_lo, s.xp_percentile_hi)
            lo.append(float(b[0][0]))
            hi.append(float(b[1][0]))
        need = [f"cut_{n}" for n in cuts.XP_CUT_ORDER if n != "xp_percentile"]
        need += ["starflag", "aspcapflag", "apogee_id", "labels_good", *C.XP_KINDS]
        totals: dict = {}
        fractions = dict(s.split_fractions)
        with ParquetRowWriter(ctx.path("select"), _SELECT_SCHEMA, row_group_size=s.chunk_rows) as w:
            for k in ctx.bar(range(n_groups(path)), desc="select"):
                d = read_group(path, k, need)
                norm = np.stack([d[n] for n in C.XP_KINDS], axis=1)
                pct = cuts.xp_within_bounds(norm, lo, hi)
                by_name = {
                    n: cuts.Cut(n, d[f"cut_{n}"]) for n in cuts.XP_CUT_ORDER if n != pct.name
                }
                by_name[pct.name] = pct
                seq = cuts.sequential_counts([by_name[n] for n in cuts.XP_CUT_ORDER])
                xp_good = np.logical_and.reduce([c.keep for c in by_name.values()])
                complete = d["cut_xp_complete"]
                if s.apogee_only_requires_clean_flags:
                    ap = cuts.apogee_only_good(complete, d["starflag"], d["aspcapflag"]).keep
                else:
                    ap = ~complete & d["labels_good"]
                keep = xp_good | ap
                split = split_ids(d["apogee_id"], seed=s.split_seed, fractions=fractions)
                _add_counts(totals, seq, keep, xp_good, ap, split, d["labels_good"])
                w.write(
                    to_table(
                        {
                            "cut_xp_percentile": pct.keep,
                            "xp_good": xp_good,
                            "apogee_only_good": ap,
                            "keep": keep,
                            "split": split,
                        }
                    )
                )
        rec = ctx.record("select", key, bounds={"lo": lo, "hi": hi}, **totals)
    ctx.counts.update(rec["counts"])
    return rec


_SELECT_SCHEMA = pa.schema(
    [
        ("cut_xp_percentile", pa.bool_()),
        ("xp_good", pa.bool_()),
        ("apogee_only_good", pa.bool_()),
        ("keep", pa.bool_()),
        ("split", pa.string()),
    ]
)


def _add_counts(totals, seq, keep, xp_good, ap, split, labels_good) -> None:
    cuts_tot = totals.setdefault("cuts", [])
    if not cuts_tot:
        cuts_tot.extend({"cut": r["cut"], "failed": 0, "removed": 0, "remaining": 0} for r in seq)
    for tot, r in zip(cuts_tot, seq, strict=True):
        for f in ("failed", "removed", "remaining"):
            tot[f] += r[f]
    c = totals.setdefault("counts", {})
    for name, v in (
        ("rows_xp_good", xp_good),
        ("rows_apogee_only_good", ap & ~xp_good),
        ("stars", keep),
        ("stars_with_labels", keep & labels_good),
    ):
        c[name] = c.get(name, 0) + int(np.count_nonzero(v))
    c["removed_no_good_xp_or_labels"] = c.get("removed_no_good_xp_or_labels", 0) + int(
        np.count_nonzero(~keep)
    )
    for name in np.unique(split[keep]):
        c[f"split_{name}"] = c.get(f"split_{name}", 0) + int(
            np.count_nonzero(keep & (split == name))
        )


def stage_extinction(ctx: Context, derived: dict, select: dict, dust_sha256: str) -> dict:
    """log E(B−V) from Combined19 with Monte-Carlo distances, for the kept rows."""
    from stardata.sources.extinction import ebv_combined19

    s = ctx.s
    key = stage_key(
        "extinction",
        derived["key"],
        select["key"],
        s.ebv_n_draws,
        s.ebv_seed,
        s.ebv_chunk_rows,
        dust_sha256,
    )
    dust_dir = str(ctx.src.resolved_dust_dir())

    def make(k: int) -> dict:
        d = read_group(
            ctx.path("derived"), k, ["glon", "glat", "parallax_corrected", "parallax_error"]
        )
        idx = np.flatnonzero(read_group(ctx.path("select"), k, ["keep"])["keep"])
        out = {
            "logebv": np.full(d["glon"].size, np.nan),
            "logebv_err": np.full(d["glon"].size, np.nan),
        }
        if idx.size:
            seed = int(np.random.SeedSequence([s.ebv_seed, k]).generate_state(1)[0])
            out["logebv"][idx], out["logebv_err"][idx] = ebv_combined19(
                d["glon"][idx],
                d["glat"][idx],
                d["parallax_corrected"][idx],
                d["parallax_error"][idx],
                n_draws=s.ebv_n_draws,
                seed=seed,
                dust_dir=dust_dir,
                chunk=s.ebv_chunk_rows,
            )
        return out

    return chunked_stage(ctx, "extinction", key, n_groups(ctx.path("derived")), make)


# -- outputs -----------------------------------------------------------------------------------
_ID_COLUMNS = [
    "apogee_id",
    "telescope",
    "field",
    "gaia_source_id",
    "tmass_designation",
    "ra",
    "dec",
    "glon",
    "glat",
    "split",
]
_FLAG_COLUMNS = [
    "gaia_found",
    "tmass_found",
    "has_xp",
    "labels_good",
    "xp_good",
    "apogee_only_good",
]


def _table_columns(derived_names: list[str]) -> list[str]:
    from stardata.release import VOCABULARY

    kinds = [c for kind in VOCABULARY.names for c in (kind, f"{kind}_err")]
    first = _ID_COLUMNS + kinds
    cut_flags = [f"cut_{n}" for n in cuts.XP_CUT_ORDER]
    rest = [c for c in derived_names if c not in first and c not in _FLAG_COLUMNS + cut_flags]
    return first + rest + _FLAG_COLUMNS + cut_flags


def _star_block(ctx: Context, cols: dict, names: list[str]) -> pa.Table:
    """One block of the table: kept rows, XP masked by quality and relevancy."""
    keep = cols.pop("keep")
    cols = {n: v[keep] for n, v in cols.items()}
    D.mask_xp(cols, cols["xp_good"], mask_irrelevant=ctx.s.mask_irrelevant_xp)
    return to_table({n: cols[n] for n in names})


def _aligned_group(ctx: Context, k: int) -> dict:
    cols = read_group(ctx.path("derived"), k)
    for name in ("select", "extinction"):
        cols.update(read_group(ctx.path(name), k))
    return cols


def write_stars(ctx: Context, out: Path) -> int:
    """Stream the kept rows into ``out`` (stars.parquet) with fixed row groups.

    Stage files share their row groups, so group ``k`` of each holds the same rows.
    """
    derived = ctx.path("derived")
    names = _table_columns(pq.read_schema(derived).names)
    with LazyWriter(out, ctx.s.row_group_size) as writer:
        for k in ctx.bar(range(n_groups(derived)), desc="stars.parquet"):
            writer.write(_star_block(ctx, _aligned_group(ctx, k), names))
    return writer.rows


def write_tokens(ctx: Context, stars: Path, out: Path, n_rows: int) -> None:
    """``tokens.h5`` from ``stars.parquet`` (same row order), one row group at a time."""
    from stardata.release import VOCABULARY
    from stardata.tokens import TokensH5Writer

    kinds = list(VOCABULARY.names)
    extra = {"apogee_id": str, "gaia_source_id": np.int64, "split": str}
    pf = pq.ParquetFile(stars)
    with TokensH5Writer(out, n_rows, VOCABULARY, extra=extra) as w:
        for k in ctx.bar(range(pf.metadata.num_row_groups), desc="tokens.h5"):
            d = read_group(stars, k, kinds + [f"{n}_err" for n in kinds] + list(extra))
            values = np.stack([d[n] for n in kinds], axis=1)
            errors = np.stack([d[f"{n}_err"] for n in kinds], axis=1)
            w.write(values, errors, {n: d[n] for n in extra})


def run(ctx: Context, out_dir: Path) -> dict:
    """Run every stage, write ``stars.parquet`` and ``tokens.h5`` into ``out_dir``."""
    from stardata import inputs

    allstar = inputs.stage_allstar(ctx)
    apogee = inputs.stage_apogee(ctx, allstar)
    gaia = inputs.stage_gaia(ctx, apogee)
    tmass = inputs.stage_tmass(ctx, apogee)
    xp = inputs.stage_xp(ctx, apogee, gaia)
    dust = inputs.stage_dust_map(ctx)
    derived = stage_derive(ctx, apogee, gaia, xp, tmass)
    select = stage_select(ctx, derived)
    stage_extinction(ctx, derived, select, dust["sha256"])
    n = write_stars(ctx, out_dir / "stars.parquet")
    write_tokens(ctx, out_dir / "stars.parquet", out_dir / "tokens.h5", n)
    counts = dict(ctx.counts)
    return {
        "inputs": ctx.inputs,
        "row_counts": counts,
        "cuts": select["cuts"],
        "photometry": derived["photometry"],
        "xp_percentile_bounds": {
            kind: [lo, hi]
            for kind, lo, hi in zip(
                C.XP_KINDS, select["bounds"]["lo"], select["bounds"]["hi"], strict=True
            )
        },
    }
