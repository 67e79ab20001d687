"""Input stages of a release build: the allStar file, deduplication, Gaia and XP joins.

Each returns its stage record (see :class:`stardata.pipeline.Context`) and appends what it used
to ``ctx.inputs`` (URL, size, SHA-256) for the manifest. Remote rows are always joined to the
allStar rows on ``source_id``, never by position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stardata import columns as C
from stardata import cuts
from stardata.io import LazyWriter, sha256_file
from stardata.pipeline import (
    Context,
    _chunked_stage,
    _groups,
    _key,
    read_group,
    to_table,
)

__all__ = [
    "dust_map",
    "missing_offline",
    "stage_allstar",
    "stage_apogee",
    "stage_dust_map",
    "stage_gaia",
    "stage_xp",
]

COMBINED19_URL = "https://zenodo.org/record/3566060/files/combine19.h5"
_DEDUP_COLUMNS = ["APOGEE_ID", "SNR", "EXTRATARG", "GAIAEDR3_SOURCE_ID"]


def _allstar_path(ctx: Context) -> Path:
    from urllib.parse import urlparse

    return ctx.raw_dir / Path(urlparse(ctx.src.allstar_url).path).name


def dust_map(ctx: Context) -> Path:
    return ctx.src.resolved_dust_dir() / "combined19" / "combine19.h5"


def missing_offline(ctx: Context) -> list[str]:
    """Cached inputs an offline build needs but does not have."""
    missing = []
    if not _allstar_path(ctx).exists():
        missing.append(f"allStar file {_allstar_path(ctx)} (from {ctx.src.allstar_url})")
    for stage in ("gaia_source", "xp"):
        if not (ctx.stage_dir / f"{stage}.json").exists():
            missing.append(f"{stage} stage {ctx.path(stage)} (needs {_remote_url(ctx, stage)})")
    if not dust_map(ctx).exists():
        missing.append(f"Combined19 map {dust_map(ctx)} (from {COMBINED19_URL})")
    return missing


def _remote_url(ctx: Context, stage: str) -> str:
    return ctx.src.gaia_tap_url if stage == "gaia_source" else ctx.src.gaia_datalink_url


def _offline_fail(ctx: Context, stage: str) -> None:
    from stardata.release import OfflineMissing

    raise OfflineMissing(
        f"offline build: stage {stage} is not cached for these inputs ({ctx.path(stage)}); "
        f"it needs {_remote_url(ctx, stage)}"
    )


def stage_allstar(ctx: Context) -> dict:
    """Download (or reuse) the allStar file; returns its input record."""
    from stardata.sources.apogee import fetch_allstar

    path = _allstar_path(ctx)
    s, src = ctx.s, ctx.src
    if ctx.offline:
        digest = sha256_file(path)
        if src.allstar_sha256 and digest != src.allstar_sha256:
            from stardata.release import OfflineMissing

            raise OfflineMissing(f"offline build: cached {path} does not match the expected sha256")
        rec = {"url": src.allstar_url, "size": path.stat().st_size, "sha256": digest}
    else:
        res = fetch_allstar(
            ctx.raw_dir,
            url=src.allstar_url,
            expected_size=src.allstar_size,
            sha256=src.allstar_sha256,
            retries=s.retries,
            backoff=s.backoff,
            timeout=s.timeout,
            progress=ctx.progress,
        )
        rec = {"url": res.url, "size": res.size, "sha256": res.sha256}
    ctx.inputs.append({"name": "allStar", **rec})
    return rec


def stage_apogee(ctx: Context, allstar: dict) -> dict:
    """Deduplicated allStar rows (every column the table needs), in allStar order."""
    from stardata.sources.apogee import ALLSTAR_COLUMNS, iter_allstar, read_allstar

    s = ctx.s
    key = _key(
        "apogee", allstar["sha256"], s.duplicate_extratarg_bit, s.dedup_gaia_source_id, s.chunk_rows
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
        rec = ctx.record("apogee", key, rows=int(dd.keep.sum()), counts=counts)
    ctx.counts.update(rec["counts"])
    return rec


def _align(ids: np.ndarray, frame, names, ints=()) -> tuple[dict, np.ndarray]:
    """Rows of ``frame`` (with ``source_id``) placed at the positions of ``ids`` (join on id)."""
    fid = frame["source_id"].to_numpy().astype(np.int64)
    fid, first = np.unique(fid, return_index=True)
    pos = np.clip(np.searchsorted(fid, ids), 0, max(len(fid) - 1, 0))
    found = (ids > 0) & (len(fid) > 0) & (fid[pos] == ids if len(fid) else False)
    src = first[pos[found]]
    out = {}
    for name in names:
        values = frame[name].to_numpy() if name in frame.columns else None
        if values is not None and values.ndim == 2:
            arr = np.full((ids.size, values.shape[1]), np.nan)
        elif name in ints:
            arr = np.zeros(ids.size, dtype=np.int64)
        else:
            arr = np.full(ids.size, np.nan)
        if values is not None and found.any():
            picked = values[src]
            if name in ints:
                picked = np.nan_to_num(picked.astype(np.float64), nan=0).astype(np.int64)
            arr[found] = picked
        out[name] = arr
    return out, found


def stage_gaia(ctx: Context, apogee: dict) -> dict:
    """gaiadr3.gaia_source columns, joined on source_id to the allStar rows."""
    from stardata.sources.gaia import query_gaia_source

    s, src = ctx.s, ctx.src
    key = _key("gaia_source", apogee["key"], C.GAIA_RAW)  # where from is not what
    if ctx.offline and ctx.done("gaia_source", key) is None:
        _offline_fail(ctx, "gaia_source")
    wanted = list(C.GAIA_RAW) + ["has_xp_continuous"]

    def make(k: int) -> dict:
        ids = read_group(ctx.path("apogee"), k, ["GAIAEDR3_SOURCE_ID"])["GAIAEDR3_SOURCE_ID"]
        ids = ids.astype(np.int64)
        frame = query_gaia_source(
            ids,
            ctx.cache_dir("gaia_source"),
            tap_url=src.gaia_tap_url,
            columns=wanted,
            chunk_size=s.gaia_chunk_size,
            progress=False,
            retries=s.retries,
            backoff=s.backoff,
            timeout=s.timeout,
        )
        if "has_xp_continuous" in frame.columns:
            frame = frame.with_columns(frame["has_xp_continuous"].cast(float))
        cols, found = _align(ids, frame, wanted, ints=C.GAIA_INT)
        cols["has_xp_continuous"] = np.nan_to_num(cols["has_xp_continuous"], nan=1.0) > 0
        cols["gaia_found"] = found
        return cols

    rec = _chunked_stage(
        ctx, "gaia_source", key, _groups(ctx.path("apogee")), make, url=src.gaia_tap_url
    )
    ctx.inputs.append(
        {
            "name": "gaia_source",
            "url": rec.get("url", src.gaia_tap_url),
            "kind": "TAP upload join",
            "rows": rec["rows"],
            "size": rec["size"],
            "sha256": rec["sha256"],
        }
    )
    return rec


def stage_xp(ctx: Context, apogee: dict, gaia: dict) -> dict:
    """XP_CONTINUOUS coefficients (DataLink), joined on source_id; NaN where absent."""
    from stardata.sources.gaia import fetch_xp_continuous

    s, src = ctx.s, ctx.src
    key = _key("xp", apogee["key"], gaia["key"])
    if ctx.offline and ctx.done("xp", key) is None:
        _offline_fail(ctx, "xp")

    def make(k: int) -> dict:
        g = read_group(ctx.path("gaia_source"), k, ["gaia_found", "has_xp_continuous"])
        ids = read_group(ctx.path("apogee"), k, ["GAIAEDR3_SOURCE_ID"])["GAIAEDR3_SOURCE_ID"]
        ids = ids.astype(np.int64)
        ask = ids[g["gaia_found"] & g["has_xp_continuous"]]
        frame = fetch_xp_continuous(
            ask,
            ctx.cache_dir("xp_continuous"),
            datalink_url=src.gaia_datalink_url,
            chunk_size=s.xp_chunk_size,
            progress=False,
            data_format=src.xp_format,
            data_structure=src.xp_structure,
            retries=s.retries,
            backoff=s.backoff,
            timeout=s.timeout,
        )
        cols, found = _align(
            ids, frame, C.XP_RAW, ints=("bp_n_relevant_bases", "rp_n_relevant_bases")
        )
        for band in ("bp", "rp"):
            for name in (f"{band}_coefficients", f"{band}_coefficient_errors"):
                if cols[name].ndim == 1:  # no star of this block has XP
                    cols[name] = np.full((ids.size, C.N_XP), np.nan)
        cols["has_xp"] = found
        return cols

    rec = _chunked_stage(
        ctx, "xp", key, _groups(ctx.path("apogee")), make, url=src.gaia_datalink_url
    )
    ctx.inputs.append(
        {
            "name": "xp_continuous",
            "url": rec.get("url", src.gaia_datalink_url),
            "kind": "DataLink XP_CONTINUOUS",
            "rows": rec["rows"],
            "size": rec["size"],
            "sha256": rec["sha256"],
        }
    )
    return rec


def stage_dust_map(ctx: Context) -> dict:
    """Record the Combined19 map (mwdust downloads it on first use when online)."""
    path = dust_map(ctx)
    if not path.exists():
        if ctx.offline:
            from stardata.release import OfflineMissing

            raise OfflineMissing(f"offline build: Combined19 map {path} is missing")
        from stardata.sources.extinction import load_combined19

        load_combined19(str(ctx.src.resolved_dust_dir()))  # mwdust downloads the map
    rec = {
        "name": "combined19",
        "url": COMBINED19_URL,
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
    }
    ctx.inputs.append(rec)
    return rec
