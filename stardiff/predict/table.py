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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from stardata.tables import read_rows
from stardiff.errors import PredictError
from stardiff.predict.stream import predict_file
from stardiff.predict.windows import (
    check_counts,
    check_numeric,
    check_output,
    error_inputs,
    plan,
    table_writer,
    window,
    windows,
)

__all__ = ["predict"]


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
    requested_as_inputs: bool = False,
):
    """Densities of the ``request`` columns for every row of ``table``.

    Parameters
    ----------
    model : stardiff.DensityModel
    table : path-like, DataFrame, Arrow or astropy table, or mapping
        Rows of given values (physical units, NaN = not given): the crossmatch output or any
        table with columns of the model's vocabulary. A path is a Parquet, CSV, FITS or
        VOTable file (the crossmatch's reader, :func:`stardata.tables.read_rows`), streamed
        to ``out``: a Parquet file one row group at a time, the others read whole.
        Requested columns present in the table are not given to the model (see
        ``requested_as_inputs``); columns the model does not know are reported once and ignored.
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
    requested_as_inputs : bool
        Also give the model the requested columns where the table has them ("teff given
        teff": a self-consistency check, never a prediction). Off by default, as on every
        path (:func:`stardiff.predict.windows.input_columns`).

    Returns
    -------
    polars.DataFrame or pathlib.Path
        Per row (input order): the kept columns, ``no_input`` (no given value: the
        unconditional density), and per requested column ``{col}_median``, ``{col}_std``,
        quantiles and samples. ``out`` when given.
    """
    request = [request] if isinstance(request, str) else list(request)
    model.check_request(request)  # unknown or non-requestable names: one-line error
    n, seed, chunk_rows = check_counts(n, seed, chunk_rows)
    qs = np.asarray(quantiles, dtype=np.float64)
    if qs.size and (not np.all((qs >= 0) & (qs <= 1))):
        raise PredictError(f"quantiles must lie in [0, 1], got {list(quantiles)}")
    opts = {
        "n": int(n), "quantiles": qs, "samples": bool(samples), "seed": int(seed),
        "sampler": sampler, "steps": steps, "requested_as_inputs": bool(requested_as_inputs),
        "chunk_rows": chunk_rows,
        "where": os.fspath(table) if isinstance(table, str | os.PathLike) else "table",
    }  # fmt: skip
    if isinstance(table, str | os.PathLike):
        if out is None:
            raise PredictError("a table file is streamed: give out= for the result")
        return predict_file(
            model, Path(table), request, Path(out), keep, chunk_rows, opts, progress
        )
    arrow = read_rows(table, "table", PredictError)
    given, keep = plan(
        model, arrow.column_names, request, keep, "table", opts["requested_as_inputs"]
    )
    opts["errors"] = error_inputs(model, arrow.column_names, given)
    errs = list(opts["errors"].values())
    check_numeric(arrow.schema, given + errs, "table")
    fmt = None if out is None else check_output(out, [], keep, request, opts)
    parts = [
        window(model, block, given, keep, request, k, opts)
        for k, block in windows(arrow, given + keep + errs, chunk_rows, 0)
    ]
    result = pa.concat_tables(parts)
    if out is not None:
        with table_writer(out, fmt, result.schema, 65536) as w:
            w.write(result)
        return Path(out)
    import polars as pl

    return pl.from_arrow(result)
