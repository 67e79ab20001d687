"""Writing a crossmatch: the table in catalogue order, tokens.h5 and a manifest like the build's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from stardata.errors import CatalogError

__all__ = ["check_out", "own_entry", "write_or_return"]

OUTPUT = "crossmatch.parquet"
TOKENS = "tokens.h5"
HATS = "crossmatch_hats"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def _blocks(table, match, derived, s, src, cache, options, progress):
    """Arrow blocks of ``s.chunk_rows`` rows: the catalogue's columns, match, derived columns."""
    from stardata.release.stagecache import to_table
    from stardata.sources.xp import StructureChoice

    structure = StructureChoice(s.xp_data_structure)  # asked once for all blocks, as the build
    n = table.num_rows
    starts = range(0, n, s.chunk_rows)
    bar = None
    if progress and derived:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="crossmatch", unit="row")
    try:
        for k, start in enumerate(starts):
            stop = min(n, start + s.chunk_rows)
            cols = {name: v[start:stop] for name, v in match.items()}
            if derived:
                from stardata.crossmatch.join import derived_block

                cols.update(
                    derived_block(
                        cols["gaia_source_id"],
                        s,
                        src,
                        cache,
                        block=k,
                        structure=structure,
                        **options,
                    )
                )
            added = to_table(cols)
            clash = sorted(set(table.column_names) & set(added.column_names))
            if clash:
                raise CatalogError(
                    f"catalogue column(s) {', '.join(clash[:5])} clash with columns the "
                    "crossmatch adds; rename them"
                )
            block = table.slice(start, stop - start)
            for name in added.column_names:
                block = block.append_column(name, added[name])
            if bar is not None:
                bar.update(stop - start)
            yield block
    finally:
        if bar is not None:
            bar.close()


def _is_own_manifest(path: Path) -> dict | None:
    """The crossmatch manifest at ``path`` if this module wrote it, else None."""
    import json

    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("kind") == "crossmatch"
    return manifest if ok and isinstance(manifest.get("outputs"), dict) else None


def own_entry(out: Path):
    """Whether an entry of the folder ``out`` is a crossmatch's own: ``manifest.json`` of a
    crossmatch and the outputs it lists. Anything else makes ``out`` a folder that is refused."""
    manifest = _is_own_manifest(Path(out) / MANIFEST)
    names = {MANIFEST, *manifest["outputs"]} if manifest else set()
    return lambda p: p.name in names


def check_out(out: Path, inputs) -> None:
    """Refuse an ``out`` that is a file, an input, or a folder holding anything not a
    crossmatch's own (:mod:`stardata.outpaths`); call it before the work and under the lock."""
    from stardata.outpaths import check_folder

    check_folder(out, own_entry=own_entry(out), what="stardata crossmatch", inputs=inputs)


def write_or_return(
    table,
    match,
    info,
    *,
    out,
    derived,
    vocab,
    cache,
    s,
    src,
    options,
    catalog,
    progress,
    hats=None,
    inputs=(),
):
    """Write ``out/{crossmatch.parquet, tokens.h5, manifest.json}`` (or return the table).

    ``hats=(ra, dec)`` also writes ``crossmatch_hats/``, partitioned on those columns. ``out``
    follows :mod:`stardata.outpaths`: it is written under its lock, built beside and swapped
    in, and refused if it is a file, one of ``inputs`` or a folder holding anything else.
    """
    blocks = _blocks(table, match, derived, s, src, cache, options, progress)
    if out is None:
        import polars as pl

        return pl.from_arrow(pa.concat_tables(list(blocks)))
    from stardata.outpaths import claim

    with claim(out, "stardata crossmatch", folder=True):
        check_out(out, inputs)
        _write_folder(
            blocks, out, table, match, info, derived, vocab, s, src, options, catalog, hats
        )
    return out


def _write_folder(blocks, out, table, match, info, derived, vocab, s, src, options, catalog, hats):
    """Build the output folder beside ``out``, then swap it in (one writer: the caller's lock)."""
    from stardata.io import LazyWriter, replace_folder, temp_sibling

    tmp = temp_sibling(out)
    tmp.mkdir()
    try:
        with LazyWriter(tmp / OUTPUT, s.row_group_size) as writer:
            for block in blocks:
                writer.write(block)
        if vocab is not None:
            _write_tokens(tmp / OUTPUT, tmp / TOKENS, vocab, writer.rows)
        if hats is not None:
            from stardata.crossmatch.hats import local_client, quiet
            from stardata.hats import write_hats

            with quiet(), local_client() as client:
                write_hats(
                    tmp / OUTPUT,
                    tmp / HATS,
                    name="crossmatch",
                    ra=hats[0],
                    dec=hats[1],
                    client=client,
                    progress=False,
                )
        manifest = _manifest(tmp, table, match, info, derived, vocab, s, src, options, catalog)
        from stardata.io import write_json

        write_json(tmp / MANIFEST, manifest)
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_tokens(parquet: Path, path: Path, vocab, n_rows: int) -> None:
    """``tokens.h5`` of the vocabulary columns (absent or NaN = padding), a row group at a time."""
    import pyarrow.parquet as pq

    from stardata.tokens import TokensH5Writer

    pf = pq.ParquetFile(parquet)
    names = pf.schema_arrow.names
    with TokensH5Writer(path, n_rows, vocab, extra={"gaia_source_id": np.int64}) as w:
        for k in range(pf.metadata.num_row_groups):
            g = pf.read_row_group(k)
            values = np.stack([_floats(g, v, names) for v in vocab.names], axis=1)
            errors = np.stack([_floats(g, f"{v}_err", names) for v in vocab.names], axis=1)
            ids = g["gaia_source_id"].to_numpy().astype(np.int64)
            w.write(values, errors, {"gaia_source_id": ids})


def _floats(group: pa.Table, name: str, names: list[str]) -> np.ndarray:
    if name not in names:
        return np.full(group.num_rows, np.nan)
    return group[name].to_numpy(zero_copy_only=False).astype(np.float64)


def _manifest(folder, table, match, info, derived, vocab, s, src, options, catalog) -> dict:
    from dataclasses import asdict

    from stardata.io import content_digest, sha256_file
    from stardata.release import package_versions

    counts = {
        "rows": int(table.num_rows),
        "matched": int(np.count_nonzero(match["xm_matched"])),
        "ambiguous": int(np.count_nonzero(match["xm_ambiguous"])),
    }
    if derived:
        import pyarrow.parquet as pq

        flags = ["gaia_found", "tmass_found", "has_xp", "xp_good"]
        t = pq.read_table(folder / OUTPUT, columns=flags)
        counts.update({n: int(np.count_nonzero(t[n].to_numpy())) for n in flags})
    source = {"rows": int(table.num_rows), "columns": table.column_names}
    if isinstance(catalog, str | os.PathLike):
        source.update(path=str(catalog), sha256=sha256_file(catalog))
    outputs = {}
    for name in (OUTPUT, TOKENS, HATS):
        p = folder / name
        if p.exists():
            size, digest = content_digest(p)
            outputs[name] = {"sha256": digest, "size": size, "rows": counts["rows"]}
    return {
        "manifest_version": MANIFEST_VERSION,
        "kind": "crossmatch",
        "catalog": source,
        "match": info,
        "columns": "derived" if derived else "match",
        "options": {k: v for k, v in options.items() if k != "xp_bounds"}
        | {"xp_percentile_cut": options.get("xp_bounds") is not None},
        "packages": package_versions(),
        "settings": s.to_dict(),
        "sources": asdict(src),
        "seed": {"extinction": s.ebv_seed},
        "row_counts": counts,
        "vocabulary": None if vocab is None else list(vocab.names),
        "outputs": outputs,
    }
