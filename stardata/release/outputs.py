"""The output files of a release: ``stars.parquet`` and ``tokens.h5``, streamed from the stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from stardata import cuts
from stardata import derive as D
from stardata.io import LazyWriter
from stardata.release.context import Context
from stardata.release.settings import VOCABULARY
from stardata.release.stagecache import n_groups, parquet_file, read_group, to_table
from stardata.tokens import TokensH5Writer

__all__ = ["write_stars", "write_tokens"]

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
    kinds = [c for kind in VOCABULARY.names for c in (kind, f"{kind}_err")]
    first = _ID_COLUMNS + kinds
    cut_flags = [f"cut_{n}" for n in cuts.XP_CUT_ORDER]
    rest = [c for c in derived_names if c not in first and c not in _FLAG_COLUMNS + cut_flags]
    return first + rest + _FLAG_COLUMNS + cut_flags


def _star_block(ctx: Context, cols: dict, names: list[str]) -> pa.Table:
    """One block of the table: kept rows, XP masked by quality and relevancy."""
    keep = cols.pop("keep")
    cols = {n: v[keep] for n, v in cols.items()}
    D.mask_xp(
        cols,
        cols["xp_good"],
        mask_irrelevant=ctx.s.mask_irrelevant_xp,
        propagate_from=ctx.s.xp_relevancy_propagate_from,
    )
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
    names = _table_columns(parquet_file(derived).schema_arrow.names)
    with LazyWriter(out, ctx.s.row_group_size) as writer:
        for k in ctx.bar(range(n_groups(derived)), desc="stars.parquet"):
            writer.write(_star_block(ctx, _aligned_group(ctx, k), names))
    return writer.rows


def write_tokens(ctx: Context, stars: Path, out: Path, n_rows: int) -> None:
    """``tokens.h5`` from ``stars.parquet`` (same row order), one row group at a time."""
    kinds = list(VOCABULARY.names)
    extra = {"apogee_id": str, "gaia_source_id": np.int64, "split": str}
    pf = parquet_file(stars)
    with TokensH5Writer(out, n_rows, VOCABULARY, extra=extra) as w:
        for k in ctx.bar(range(pf.metadata.num_row_groups), desc="tokens.h5"):
            d = read_group(stars, k, kinds + [f"{n}_err" for n in kinds] + list(extra))
            values = np.stack([d[n] for n in kinds], axis=1)
            errors = np.stack([d[f"{n}_err"] for n in kinds], axis=1)
            w.write(values, errors, {n: d[n] for n in extra})
