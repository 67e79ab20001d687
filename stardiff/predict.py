"""Per-row label densities for a whole table, streamed: ``stardiff predict`` and ``model.predict``.

For every row and requested column: the median, the robust std (1.4826·MAD), quantiles and, on
request, the draws themselves. A Parquet file is read and written in windows of ``chunk_rows``
rows (memory is bounded by one window and one input row group, never the file), and each
finished window is kept as its own small Parquet part, so a killed run resumes at the first
window not yet written; the parts become the output file in one rename at the end.

Reproducibility: window ``k`` (rows ``k·chunk_rows`` to ``(k+1)·chunk_rows``) is sampled with the
seed ``SeedSequence([seed, k])``, so the result depends on ``seed`` and ``chunk_rows`` but not on
how the input file is split into row groups, nor on being resumed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardiff.model.noise import ROW_BLOCK

__all__ = ["PredictError", "draw_statistics", "predict", "statistics_columns"]

STATE = "state.json"
MAD_TO_STD = 1.4826
_KEEP_BY_DEFAULT = ("source_id", "gaia_source_id", "apogee_id", "name")


class PredictError(ValueError):
    """A bad table or argument for :func:`predict`, explained in one line."""


def _qname(name: str, q: float) -> str:
    """``teff_q16`` for q = 0.16, ``teff_q2p5`` for 0.025: no dots, which LSDB's nested
    frames would read as struct fields."""
    return f"{name}_q{round(100 * q, 6):g}".replace(".", "p")


def _plan(model, names: list[str], request: list[str], keep, where: str):
    """Given columns (the model's, minus the requested ones), kept columns; report the rest once."""
    known = set(model.columns)
    given = [c for c in names if c in known and c not in request]
    if keep is None:
        keep = [c for c in _KEEP_BY_DEFAULT if c in names]
    missing = [c for c in keep if c not in names]
    if missing:
        raise PredictError(f"{where}: no column {missing[0]!r} to keep")
    ignored = [c for c in names if c not in known and c not in keep]
    if ignored:
        shown = ", ".join(ignored[:8]) + (", ..." if len(ignored) > 8 else "")
        warnings.warn(
            f"{where}: {len(ignored)} column(s) the model does not know are ignored: {shown}",
            UserWarning,
            stacklevel=3,
        )
    if not given:
        warnings.warn(
            f"{where}: no column of the model's vocabulary besides the requested ones; every "
            "row gets the unconditional density",
            UserWarning,
            stacklevel=3,
        )
    return given, list(keep)


def _check_numeric(schema: pa.Schema, given: list[str], where: str) -> None:
    for c in given:
        t = schema.field(c).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)):
            raise PredictError(f"{where}: column {c!r} is {t}, not numeric")


def statistics_columns(request: Sequence[str], quantiles: Sequence[float]) -> list[str]:
    """Names of :func:`draw_statistics`' columns, in order."""
    return [
        c
        for name in request
        for c in (f"{name}_median", f"{name}_std", *(_qname(name, q) for q in quantiles))
    ]


def draw_statistics(
    draws: dict, request: Sequence[str], rows: int, n: int, quantiles: Sequence[float]
) -> dict[str, np.ndarray]:
    """Per row: median, robust std (1.4826·MAD) and quantiles of each column's ``n`` draws."""
    out = {}
    for name in request:
        s = np.asarray(draws[name]).reshape(rows, n)
        med = np.median(s, axis=1)
        out[f"{name}_median"] = med
        out[f"{name}_std"] = MAD_TO_STD * np.median(np.abs(s - med[:, None]), axis=1)
        if len(quantiles):
            for q, v in zip(quantiles, np.quantile(s, quantiles, axis=1), strict=True):
                out[_qname(name, q)] = v
    return out


def _window(model, block: pa.Table, given, keep, request, k: int, opts: dict) -> pa.Table:
    """Statistics of every requested density for one window of rows."""
    n, seed, qs = opts["n"], opts["seed"], opts["quantiles"]
    values = {c: block[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in given}
    rows = block.num_rows
    seed_k = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
    draws = model.sample(
        values, request, n, seed=seed_k, sampler=opts["sampler"], steps=opts["steps"]
    )
    out = {c: block[c] for c in keep}
    present = np.zeros(rows, dtype=bool)
    for v in values.values():
        present |= np.isfinite(v)
    out["no_input"] = pa.array(~present)
    stats = draw_statistics(draws, request, rows, n, qs)
    out.update({c: pa.array(v) for c, v in stats.items()})
    if opts["samples"]:
        for name in request:
            flat = pa.array(np.asarray(draws[name]).astype(np.float32).ravel())
            out[f"{name}_samples"] = pa.FixedSizeListArray.from_arrays(flat, n)
    return pa.table(out)


def _windows(source, columns: list[str], size: int, start: int) -> Iterator[tuple[int, pa.Table]]:
    """Windows ``start, start+1, ...`` of ``size`` rows, read one row group at a time.

    Row groups are read one by one (pyarrow's ``iter_batches`` reads ahead, and a fast reader
    before a slow sampler would hold most of the file), so memory is one row group plus one
    window.
    """
    if isinstance(source, pa.Table):
        for k in range(start, -(-source.num_rows // size)):
            yield k, source.slice(k * size, size).select(columns)
        return
    pf: pq.ParquetFile = source
    skip, k = start * size, start
    pending: list[pa.Table] = []
    have = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if skip >= n:  # rows of windows already done
            skip -= n
            continue
        group = pf.read_row_group(g, columns=columns).slice(skip)
        skip = 0
        pending.append(group)
        have += group.num_rows
        while have >= size:
            table = pa.concat_tables(pending)
            yield k, table.slice(0, size).combine_chunks()
            k += 1
            rest = table.slice(size)
            pending, have = [rest], rest.num_rows
    if have:
        yield k, pa.concat_tables(pending).combine_chunks()


def _as_arrow(table) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if hasattr(table, "to_arrow"):  # polars
        return table.to_arrow()
    if hasattr(table, "iloc"):  # pandas
        return pa.Table.from_pandas(table, preserve_index=False)
    if hasattr(table, "colnames"):  # astropy
        return pa.table({c: np.asarray(table[c]) for c in table.colnames})
    if isinstance(table, dict):
        return pa.table({k: np.asarray(v) for k, v in table.items()})
    raise PredictError(f"table of type {type(table).__name__} not understood")


def predict(
    model,
    table,
    request: str | Sequence[str],
    *,
    n: int = 200,
    quantiles: Sequence[float] = (0.16, 0.5, 0.84),
    samples: bool = False,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    keep: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    chunk_rows: int = 4096,
    progress: bool = True,
):
    """Densities of the ``request`` columns for every row of ``table``.

    Parameters
    ----------
    model : stardiff.DensityModel
    table : path-like, DataFrame, Arrow or astropy table, or mapping
        Rows of given values (physical units, NaN = not given): the crossmatch output or any
        table with columns of the model's vocabulary. A path is a Parquet file, streamed.
        Requested columns present in the table are not given to the model; columns the model
        does not know are reported once and ignored.
    request : str or sequence of str
        Requestable columns.
    n : int
        Draws per row and column.
    quantiles : sequence of float
        Quantile levels, written as ``{col}_q{percent}`` (0.16 → ``_q16``, 0.025 → ``_q2p5``).
    samples : bool
        Also write the draws (``{col}_samples``, n float32 a row).
    seed, sampler, steps : optional
        As :meth:`stardiff.DensityModel.sample`.
    keep : sequence of str, optional
        Input columns copied to the output (default: ``source_id``, ``gaia_source_id``,
        ``apogee_id``, ``name`` where present).
    out : path-like, optional
        Parquet file to write (required for a path input); resumes a killed run of the same
        command.
    chunk_rows : int
        Rows per window (a multiple of 64); sets memory use and the seeding.
    progress : bool
        Progress bar.

    Returns
    -------
    polars.DataFrame or pathlib.Path
        Per row (input order): the kept columns, ``no_input`` (no given value: the
        unconditional density), and per requested column ``{col}_median``, ``{col}_std``,
        quantiles and samples. ``out`` when given.
    """
    request = [request] if isinstance(request, str) else list(request)
    model._request_list(request)  # unknown or non-requestable names: one-line error
    if n < 1:
        raise PredictError(f"n must be at least 1, got {n}")
    if chunk_rows < ROW_BLOCK or chunk_rows % ROW_BLOCK:
        raise PredictError(
            f"chunk_rows must be a positive multiple of {ROW_BLOCK}, got {chunk_rows}"
        )
    qs = np.asarray(quantiles, dtype=np.float64)
    if qs.size and (not np.all((qs >= 0) & (qs <= 1))):
        raise PredictError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    opts = {
        "n": int(n), "quantiles": qs, "samples": bool(samples), "seed": int(seed),
        "sampler": sampler, "steps": steps,
    }  # fmt: skip
    if isinstance(table, str | os.PathLike):
        if out is None:
            raise PredictError("a Parquet file is streamed: give out= for the result")
        from stardiff.predict_stream import predict_file

        return predict_file(
            model, Path(table), request, Path(out), keep, chunk_rows, opts, progress
        )
    arrow = _as_arrow(table)
    if arrow.num_rows == 0:
        raise PredictError("table has no rows")
    given, keep = _plan(model, arrow.column_names, request, keep, "table")
    _check_numeric(arrow.schema, given, "table")
    parts = [
        _window(model, block, given, keep, request, k, opts)
        for k, block in _windows(arrow, given + keep, chunk_rows, 0)
    ]
    result = pa.concat_tables(parts)
    if out is not None:
        from stardata.io import write_parquet

        return write_parquet(out, result)
    import polars as pl

    return pl.from_arrow(result)
