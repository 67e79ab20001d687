"""Input stages of a release build: the allStar file, deduplication, Gaia, 2MASS and XP joins.

Each returns its frozen record (:mod:`stardata.release.context`) and appends what it used to
``ctx.inputs`` (URL, size, SHA-256) for the manifest. Remote rows are always joined to the
allStar rows on ``source_id``, never by position.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from stardata import cuts
from stardata import derive as D
from stardata.columns import N_XP
from stardata.errors import InputFileError, OfflineMissing
from stardata.io import LazyWriter, sha256_file
from stardata.release.context import Context, InputRecord, StageRecord
from stardata.release.settings import COMBINED19_URL
from stardata.release.stagecache import (
    chunked_stage,
    n_groups,
    read_group,
    stage_key,
    to_table,
)
from stardata.sources.apogee import ALLSTAR_COLUMNS, fetch_allstar, iter_allstar, read_allstar
from stardata.sources.extinction import load_combined19
from stardata.sources.gaia import query_gaia_source
from stardata.sources.tap import align_on_ids
from stardata.sources.tmass import TMASS_COLUMNS, query_tmass
from stardata.sources.xp import StructureChoice, fetch_xp_continuous

__all__ = [
    "dust_map",
    "missing_offline",
    "stage_allstar",
    "stage_apogee",
    "stage_dust_map",
    "stage_gaia",
    "stage_tmass",
    "stage_xp",
]

_DEDUP_COLUMNS = ["APOGEE_ID", "SNR", "EXTRATARG", "GAIAEDR3_SOURCE_ID"]


def _allstar_path(ctx: Context) -> Path:
    return ctx.raw_dir / Path(urlparse(ctx.src.allstar_url).path).name


def dust_map(ctx: Context) -> Path:
    return ctx.src.resolved_dust_dir() / "combined19" / "combine19.h5"


def missing_offline(ctx: Context) -> list[str]:
    """Cached inputs an offline build needs but does not have."""
    missing = []
    if not _allstar_path(ctx).exists():
        missing.append(f"allStar file {_allstar_path(ctx)} (from {ctx.src.allstar_url})")
    for stage in ("gaia_source", "tmass", "xp"):
        if not ctx.record_path(stage).exists():
            missing.append(f"{stage} stage {ctx.path(stage)} (needs {_remote_url(ctx, stage)})")
    if not dust_map(ctx).exists():
        missing.append(f"Combined19 map {dust_map(ctx)} (from {COMBINED19_URL})")
    return missing


def _remote_url(ctx: Context, stage: str) -> str:
    return ctx.src.gaia_datalink_url if stage == "xp" else ctx.src.gaia_tap_url


def _offline_fail(ctx: Context, stage: str) -> None:
    why = ctx.stale.get(stage, f"{ctx.path(stage)} is not built")
    raise OfflineMissing(
        f"offline build: stage {stage} is not cached for these inputs ({why}); "
        f"it needs {_remote_url(ctx, stage)}"
    )


def stage_allstar(ctx: Context) -> InputRecord:
    """Download (or reuse) the allStar file; returns its input record."""
    src = ctx.src
    try:
        res = fetch_allstar(
            ctx.raw_dir,
            url=src.allstar_url,
            expected_size=src.allstar_size,
            sha256=src.allstar_sha256,
            sha1=src.allstar_sha1,
            offline=ctx.offline,
            **({} if ctx.offline else {**ctx.remote(), "progress": ctx.progress}),
        )
    except InputFileError as exc:
        if not ctx.offline:
            raise
        raise OfflineMissing(f"offline build: {exc}") from None
    rec = InputRecord("allStar", res.url, res.size, res.sha256)
    ctx.inputs.append(rec)
    return rec


def stage_apogee(ctx: Context, allstar: InputRecord) -> StageRecord:
    """Deduplicated allStar rows (every column the table needs), in allStar order."""
    s = ctx.s
    key = stage_key(
        "apogee", allstar.sha256, s.duplicate_extratarg_bit, s.dedup_gaia_source_id, s.chunk_rows
    )
    rec = ctx.done("apogee", key)
    if rec is None:
        path = _allstar_path(ctx)
        d = read_allstar(path, _DEDUP_COLUMNS, chunk_rows=s.chunk_rows)
        dd = cuts.deduplicate(
            d["APOGEE_ID"],
            d["SNR"],
            d["EXTRATARG"],
            d["GAIAEDR3_SOURCE_ID"] if s.dedup_gaia_source_id else None,
            duplicate_bit=s.duplicate_extratarg_bit,
        )
        n_all = d["APOGEE_ID"].size
        del d
        start = 0
        blocks = iter_allstar(path, ALLSTAR_COLUMNS, s.chunk_rows)
        total = -(-n_all // s.chunk_rows)
        with LazyWriter(ctx.path("apogee"), s.chunk_rows) as writer:
            for block in ctx.bar(blocks, desc="apogee", total=total):
                n = len(block["APOGEE_ID"])
                keep = dd.keep[start : start + n]
                start += n
                writer.write(to_table({k: v[keep] for k, v in block.items()}))
        counts = {
            "allstar_rows": n_all,
            "removed_duplicate_apogee_id": dd.removed_apogee_id,
            "removed_duplicate_gaia_source_id": dd.removed_gaia_source_id,
            "extratarg_duplicate_flagged": dd.flagged_extratarg,
            "extratarg_duplicate_flagged_kept": dd.flagged_kept,
            "deduplicated_rows": int(dd.keep.sum()),
        }
        rec = ctx.record(StageRecord, "apogee", key, rows=int(dd.keep.sum()), counts=counts)
    ctx.counts.update(rec.counts)
    return rec


def _block_ids(ctx: Context, k: int) -> np.ndarray:
    """Gaia source ids of block ``k`` of the deduplicated allStar rows (0: no Gaia match)."""
    ids = read_group(ctx.path("apogee"), k, ["GAIAEDR3_SOURCE_ID"])["GAIAEDR3_SOURCE_ID"]
    return ids.astype(np.int64)


def _input_record(ctx: Context, name: str, rec: StageRecord, url: str, kind: str) -> None:
    ctx.inputs.append(InputRecord(name, rec.url or url, rec.size, rec.sha256, kind, rec.rows))


def _remote_stage(ctx: Context, name: str, key: str, make, url: str) -> StageRecord:
    """A stage whose blocks come from a remote service (fails fast offline if not cached)."""
    rec = ctx.done(name, key)
    if rec is None:
        if ctx.offline:
            _offline_fail(ctx, name)
        rows = chunked_stage(ctx, name, key, n_groups(ctx.path("apogee")), make)
        rec = ctx.record(StageRecord, name, key, rows=rows, url=url)
    return rec


def stage_gaia(ctx: Context, apogee: StageRecord) -> StageRecord:
    """gaiadr3.gaia_source columns, joined on source_id to the allStar rows."""
    s, src = ctx.s, ctx.src
    key = stage_key("gaia_source", apogee.key, D.GAIA_RAW)  # where from is not what
    wanted = list(D.GAIA_RAW) + ["has_xp_continuous"]

    def make(k: int) -> dict:
        ids = _block_ids(ctx, k)
        frame = query_gaia_source(
            ids,
            ctx.cache_dir("gaia_source"),
            tap_url=src.gaia_tap_url,
            columns=wanted,
            chunk_size=s.gaia_chunk_size,
            progress=False,
            **ctx.remote(),
        )
        if "has_xp_continuous" in frame.columns:
            frame = frame.with_columns(frame["has_xp_continuous"].cast(float))
        cols, found = align_on_ids(ids, frame, wanted, ints=D.GAIA_INT)
        cols["has_xp_continuous"] = np.nan_to_num(cols["has_xp_continuous"], nan=1.0) > 0
        cols["gaia_found"] = found
        return cols

    rec = _remote_stage(ctx, "gaia_source", key, make, src.gaia_tap_url)
    _input_record(ctx, "gaia_source", rec, src.gaia_tap_url, "TAP upload join")
    return rec


def stage_tmass(ctx: Context, apogee: StageRecord) -> StageRecord:
    """2MASS of each star's Gaia DR3 best 2MASS neighbour (TAP), joined on source_id.

    The stage keeps the archive's values (NaN, or None for ``tmass_designation`` and
    ``ph_qual``, where a star has no 2MASS neighbour) and ``tmass_found``; the choice between
    APOGEE's and these J/H/K is a setting, made by the local ``derived`` stage.
    """
    s, src = ctx.s, ctx.src
    key = stage_key("tmass", apogee.key, TMASS_COLUMNS)

    def make(k: int) -> dict:
        ids = _block_ids(ctx, k)
        frame = query_tmass(
            ids,
            ctx.cache_dir("tmass"),
            tap_url=src.gaia_tap_url,
            chunk_size=s.gaia_chunk_size,
            progress=False,
            **ctx.remote(),
        )
        cols, found = align_on_ids(ids, frame, D.TMASS_RAW, strings=D.TMASS_STR)
        cols["tmass_found"] = found
        return cols

    rec = _remote_stage(ctx, "tmass", key, make, src.gaia_tap_url)
    kind = "TAP upload join gaiadr3.tmass_psc_xsc_best_neighbour x gaiadr1.tmass_original_valid"
    _input_record(ctx, "tmass", rec, src.gaia_tap_url, kind)
    return rec


def stage_xp(ctx: Context, apogee: StageRecord, gaia: StageRecord) -> StageRecord:
    """XP_CONTINUOUS coefficients (DataLink), joined on source_id; NaN where absent."""
    s, src = ctx.s, ctx.src
    structure = StructureChoice(s.xp_data_structure)  # one for all blocks
    key = stage_key("xp", apogee.key, gaia.key)

    def make(k: int) -> dict:
        g = read_group(ctx.path("gaia_source"), k, ["gaia_found", "has_xp_continuous"])
        ids = _block_ids(ctx, k)
        ask = ids[g["gaia_found"] & g["has_xp_continuous"]]
        frame = fetch_xp_continuous(
            ask,
            ctx.cache_dir("xp_continuous"),
            datalink_url=src.gaia_datalink_url,
            chunk_size=s.xp_chunk_size,
            progress=False,
            data_format=src.xp_format,
            data_structure=structure,
            **ctx.remote(),
        )
        cols, found = align_on_ids(
            ids, frame, D.XP_RAW, ints=D.XP_INT, vectors=dict.fromkeys(D.XP_VECTORS, N_XP)
        )
        cols["has_xp"] = found
        return cols

    rec = _remote_stage(ctx, "xp", key, make, src.gaia_datalink_url)
    _input_record(ctx, "xp_continuous", rec, src.gaia_datalink_url, "DataLink XP_CONTINUOUS")
    return rec


def stage_dust_map(ctx: Context) -> InputRecord:
    """Record the Combined19 map (mwdust downloads it on first use when online)."""
    path = dust_map(ctx)
    if not path.exists():
        if ctx.offline:
            raise OfflineMissing(f"offline build: Combined19 map {path} is missing")
        load_combined19(str(ctx.src.resolved_dust_dir()))  # mwdust downloads the map
    rec = InputRecord("combined19", COMBINED19_URL, path.stat().st_size, sha256_file(path))
    ctx.inputs.append(rec)
    return rec
