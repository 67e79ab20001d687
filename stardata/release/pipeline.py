"""The local stages of a release build (derived columns, selection, extinction), and :func:`run`.

The input stages (allStar, Gaia, 2MASS, XP) are in :mod:`stardata.release.inputs`, the output
files in :mod:`stardata.release.outputs`; the stage cache and block I/O they all share are in
:mod:`stardata.release.stagecache`, the context and stage records in
:mod:`stardata.release.context`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from stardata import columns as C
from stardata import cuts
from stardata import derive as D
from stardata.errors import BuildError
from stardata.io import ParquetRowWriter
from stardata.release import inputs, outputs
from stardata.release.context import Context, DerivedRecord, SelectRecord, StageRecord
from stardata.release.settings import Settings
from stardata.release.stagecache import (
    chunked_stage,
    n_groups,
    parquet_file,
    read_group,
    stage_key,
    to_numpy,
    to_table,
)
from stardata.sources.extinction import ebv_combined19
from stardata.sources.tmass import compare_band
from stardata.split import split_ids

__all__ = ["BuildResult", "Context", "read_group", "run", "to_table"]


@dataclass(frozen=True)
class BuildResult:
    """What :func:`run` made, for the manifest."""

    inputs: tuple[dict, ...]
    row_counts: dict[str, int]
    cuts: tuple[dict, ...]
    photometry: dict
    xp_percentile_bounds: dict[str, list[float]]
    #: ``{stage: {"sha256", "size", "key"}}`` of every stage file the outputs were made from
    stages: dict[str, dict]


# -- local stages ------------------------------------------------------------------------------
def stage_derive(
    ctx: Context,
    apogee: StageRecord,
    gaia: StageRecord,
    xp: StageRecord,
    tmass: StageRecord,
) -> DerivedRecord:
    """Derived columns and per-row cut flags (all but the XP percentile cut).

    Its record also holds the row counts and the APOGEE vs 2MASS J/H/K comparison
    (:func:`photometry_report`).
    """
    s = ctx.s
    key = stage_key("derive", apogee.key, gaia.key, xp.key, tmass.key, s.to_dict())
    paths = [ctx.path(n) for n in ("apogee", "gaia_source", "xp", "tmass")]

    def make(k: int) -> dict:
        a, g, x, t = (read_group(p, k) for p in paths)
        cols = D.derive(a, g, x, t, s)
        for cut in cuts.xp_quality_cuts(cols, s):
            cols[f"cut_{cut.name}"] = cut.keep
        cols["gaia_found"], cols["has_xp"] = g["gaia_found"], x["has_xp"]
        cols["tmass_found"] = t["tmass_found"]
        return cols

    rec = ctx.done("derived", key, DerivedRecord)
    if rec is None:
        rows = chunked_stage(ctx, "derived", key, n_groups(paths[0]), make)
        flags = ["gaia_found", "has_xp", "tmass_found", "labels_good"]
        t = parquet_file(ctx.path("derived")).read(columns=flags)
        counts = {f"rows_{n}": int(np.count_nonzero(t[n].to_numpy())) for n in flags}
        photometry = photometry_report(ctx.path("derived"), s.jhk_prefer)
        rec = ctx.record(
            DerivedRecord, "derived", key, rows=rows, counts=counts, photometry=photometry
        )
    ctx.counts.update(rec.counts)
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
    report: dict = {"prefer": prefer}
    for band in ("j", "h", "k"):
        names = [f"apogee_{band}", f"tmass_{band}", f"{band}_src"]
        d = to_numpy(parquet_file(derived).read(columns=names))
        stats = compare_band(d[names[0]], d[names[1]])
        stats = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in stats.items()}
        src = d[names[2]]
        for used in ("apogee", "tmass"):
            stats[f"used_{used}"] = int(np.count_nonzero(src == used))
        stats["used_none"] = int(np.count_nonzero(src == ""))
        report[band] = stats
    return report


def stage_select(ctx: Context, derived: DerivedRecord) -> SelectRecord:
    """XP percentile bounds, which rows keep XP, which rows stay, and each row's split.

    Raises
    ------
    BuildError
        When the cuts keep no star, naming the cut that removed the last ones.
    """
    s = ctx.s
    key = stage_key("select", derived.key, s.to_dict())
    rec = ctx.done("select", key, SelectRecord)
    if rec is None:
        path = ctx.path("derived")
        lo, hi = [], []
        for kind in ctx.bar(C.XP_KINDS, desc="xp percentiles", total=len(C.XP_KINDS)):
            col = parquet_file(path).read(columns=[kind])[kind].to_numpy()
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
        rec = ctx.record(
            SelectRecord,
            "select",
            key,
            rows=n_rows(ctx.path("select")),
            counts=totals["counts"],
            bounds_lo=tuple(lo),
            bounds_hi=tuple(hi),
            cuts=tuple(totals["cuts"]),
        )
    ctx.counts.update(rec.counts)
    if rec.counts.get("stars", 0) == 0:
        raise BuildError(emptied_by(rec, s))
    return rec


def n_rows(path: Path) -> int:
    return parquet_file(path).metadata.num_rows


#: The settings behind each XP cut (named in the error when a cut removes every star).
_CUT_SETTINGS = {
    "xp_complete": "every star lacks some of the 110 XP coefficients",
    "xp_percentile": "xp_percentile_lo, xp_percentile_hi",
    "bprp_range": "bprp_min, bprp_max",
    "g_range": "g_min, g_max",
    "ruwe": "xp_ruwe_max",
    "bp_rp_excess_factor": "excess_factor_max",
    "starflag_neighbour": "xp_starflag_bits",
}


def emptied_by(rec: SelectRecord, s: Settings) -> str:
    """One line naming the XP cut that removed the last star with XP (when no star is kept)."""
    last = next((c for c in rec.cuts if c["remaining"] == 0), None)
    if last is None:  # stars had good XP but none was kept: cannot happen with the cuts above
        xp = "no star with good XP"
    else:
        before = last["remaining"] + last["removed"]
        why = _CUT_SETTINGS.get(last["cut"], "")
        xp = f"XP cut {last['cut']} ({why}) removed the last {before} star(s) with XP"
    rule = (
        "STARFLAG == 0 and ASPCAPFLAG == 0"
        if s.apogee_only_requires_clean_flags
        else "good APOGEE labels"
    )
    return f"the cuts keep no star: {xp}, and no star without complete XP has {rule}"


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


def stage_extinction(
    ctx: Context, derived: DerivedRecord, select: SelectRecord, dust_sha256: str
) -> StageRecord:
    """log E(B−V) from Combined19 with Monte-Carlo distances, for the kept rows."""
    s = ctx.s
    key = stage_key(
        "extinction",
        derived.key,
        select.key,
        s.ebv_n_draws,
        s.ebv_seed,
        s.ebv_chunk_rows,
        s.ebv_nonpositive_draws,
        dust_sha256,
    )
    dust_dir = str(ctx.src.resolved_dust_dir())

    def make(k: int) -> dict:
        d = read_group(
            ctx.path("derived"),
            k,
            ["glon", "glat", "parallax_corrected", "parallax_error", "parallax"],
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
                star_parallax=d["parallax"][idx],  # LB24: the archive's, before the zero point
                nonpositive=s.ebv_nonpositive_draws,
            )
        return out

    rec = ctx.done("extinction", key)
    if rec is None:
        rows = chunked_stage(ctx, "extinction", key, n_groups(ctx.path("derived")), make)
        rec = ctx.record(StageRecord, "extinction", key, rows=rows)
    return rec


def run(ctx: Context, out_dir: Path) -> BuildResult:
    """Run every stage, write ``stars.parquet`` and ``tokens.h5`` into ``out_dir``."""
    allstar = inputs.stage_allstar(ctx)
    apogee = inputs.stage_apogee(ctx, allstar)
    gaia = inputs.stage_gaia(ctx, apogee)
    tmass = inputs.stage_tmass(ctx, apogee)
    xp = inputs.stage_xp(ctx, apogee, gaia)
    dust = inputs.stage_dust_map(ctx)
    derived = stage_derive(ctx, apogee, gaia, xp, tmass)
    select = stage_select(ctx, derived)
    extinction = stage_extinction(ctx, derived, select, dust.sha256)
    n = outputs.write_stars(ctx, out_dir / "stars.parquet")
    outputs.write_tokens(ctx, out_dir / "stars.parquet", out_dir / "tokens.h5", n)
    records = (apogee, gaia, tmass, xp, derived, select, extinction)
    return BuildResult(
        inputs=tuple(i.to_json() for i in ctx.inputs),
        row_counts=dict(ctx.counts),
        cuts=select.cuts,
        photometry=derived.photometry,
        xp_percentile_bounds={
            kind: [lo, hi]
            for kind, lo, hi in zip(C.XP_KINDS, select.bounds_lo, select.bounds_hi, strict=True)
        },
        stages={r.name: {"key": r.key, "sha256": r.sha256, "size": r.size} for r in records},
    )
