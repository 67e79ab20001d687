"""Windows of rows: which columns a prediction sees, and one window's statistics.

:func:`plan` decides, once per table, which columns are given to the model (the model's
columns, never the requested ones) and which are copied through; :func:`windows` cuts a table
or a Parquet file into windows of rows, read one row group at a time; :func:`window` samples one
window and returns its statistics. Window ``k`` is seeded with ``SeedSequence([seed, k])``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardata.numbers import COUNT, SEED, Range, check_number
from stardiff.errors import GivenValueError, PredictError, warn_infinite
from stardiff.model import ROW_BLOCK
from stardiff.predict.statistics import draw_statistics, statistics_columns

__all__ = [
    "CHUNK",
    "KEEP_BY_DEFAULT",
    "check_counts",
    "check_numeric",
    "check_output",
    "error_inputs",
    "input_columns",
    "plan",
    "table_writer",
    "window",
    "windows",
]

KEEP_BY_DEFAULT = ("source_id", "gaia_source_id", "apogee_id", "name")


def input_columns(model_columns, names, request, requested_as_inputs: bool = False) -> list[str]:
    """The columns of a table that a prediction gives the model: the one rule of every path.

    The model's columns present in the table, in table order, *minus the requested ones*: a
    catalogue that carries its own labels must not be asked "teff given teff". Only with
    ``requested_as_inputs`` (a user's explicit choice, e.g. to check a model's self-consistency)
    are the requested columns given too.
    """
    known = set(model_columns)
    skip = set() if requested_as_inputs else set(request)
    return [c for c in names if c in known and c not in skip]


def error_inputs(model, names, given) -> dict[str, str]:
    """{given column: its error column} for the error columns a table has, when the model
    reads its inputs' errors (``data.errors``); {} otherwise."""
    features = getattr(model, "error_features", None)
    if features is None:
        return {}
    return features.present(names, given)


def plan(model, names: list[str], request: list[str], keep, where: str, requested_as_inputs=False):
    """Given columns (:func:`input_columns`), kept columns; report the rest once."""
    known = set(model.columns) | set(error_inputs(model, names, model.columns).values())
    given = input_columns(model.columns, names, request, requested_as_inputs)
    if keep is None:
        keep = [c for c in KEEP_BY_DEFAULT if c in names]
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


#: Rows per window of a prediction (a multiple of ``ROW_BLOCK``, checked apart).
CHUNK = Range(ROW_BLOCK, 2**40, integer=True)


def check_counts(n, seed, chunk_rows) -> tuple[int, int, int]:
    """``n``, ``seed`` and ``chunk_rows`` checked where they enter (one line naming each)."""
    n = check_number(n, "n", COUNT, PredictError)
    seed = check_number(seed, "seed", SEED, PredictError)
    chunk_rows = check_number(chunk_rows, "chunk_rows", CHUNK, PredictError)
    if chunk_rows % ROW_BLOCK:
        raise PredictError(
            f"chunk_rows must be a positive multiple of {ROW_BLOCK}, got {chunk_rows}"
        )
    return n, seed, chunk_rows


def check_output(out, inputs, keep, request, opts: dict) -> str:
    """The format of the output file ``out`` (by its name), or a one-line refusal.

    :func:`stardata.outpaths.check_table_file`: never an input, never a file the toolkit did not
    write (a CSV file counts as its own when its header is exactly the columns written here).
    """
    from stardata.outpaths import check_table_file

    columns = [*keep, "no_input", *statistics_columns(request, opts["quantiles"])]
    columns += [f"{c}_samples" for c in request] if opts["samples"] else []
    fmt = check_table_file(out, option="out", inputs=inputs, columns=columns)
    if fmt == "csv" and opts["samples"]:
        raise PredictError(f"out {out}: the draws (samples=True) need a .parquet file, not CSV")
    return fmt


def table_writer(out, fmt: str, schema: pa.Schema, row_group_size: int):
    """The writer of a prediction file (atomic): CSV, or Parquet marked as stardiff's."""
    from stardata.io import CsvRowWriter, ParquetRowWriter
    from stardata.outpaths import mark

    if fmt == "csv":
        return CsvRowWriter(out, schema)
    return ParquetRowWriter(
        out, schema, row_group_size=row_group_size, metadata=mark("stardiff predict")
    )


def check_numeric(schema: pa.Schema, given: list[str], where: str) -> None:
    for c in given:
        t = schema.field(c).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)):
            raise PredictError(f"{where}: column {c!r} is {t}, not numeric")


def window(model, block: pa.Table, given, keep, request, k: int, opts: dict) -> pa.Table:
    """Statistics of every requested density for one window of rows.

    Errors and warnings name rows of the whole table (window ``k`` starts at row
    ``k · opts["chunk_rows"]``) and ``opts["where"]``, never rows of the window.
    """
    n, seed, qs = opts["n"], opts["seed"], opts["quantiles"]
    offset, where = k * opts.get("chunk_rows", 0), opts.get("where", "table")
    values = {c: _given_column(block[c], c, where, offset) for c in given}
    errs = {c: _given_column(block[e], e, where, offset) for c, e in opts.get("errors", {}).items()}
    rows = block.num_rows
    if not values:  # nothing given: every row asks the unconditional density, row by row
        values = {model.columns[0]: np.full(rows, np.nan)}
    seed_k = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
    try:
        how = {"seed": seed_k, "sampler": opts["sampler"], "steps": opts["steps"]}
        draws = model.sample(values, request, n, errors=errs or None, **how)
    except GivenValueError as e:
        raise e.shifted(offset, where) from None
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


def _given_column(col: pa.ChunkedArray, name: str, where: str, offset: int) -> np.ndarray:
    """A given column as float64: null = NaN; infinite = NaN, said once with its row."""
    x = col.to_numpy(zero_copy_only=False).astype(np.float64)
    warn_infinite(x, name, where, offset)
    x[np.isinf(x)] = np.nan
    return x


def windows(source, columns: list[str], size: int, start: int) -> Iterator[tuple[int, pa.Table]]:
    """Windows ``start, start+1, ...`` of ``size`` rows, read one row group at a time.

    Row groups are read one by one (pyarrow's ``iter_batches`` reads ahead, and a fast reader
    before a slow sampler would hold most of the file), so memory is one row group plus one
    window.
    """
    # a window needs its rows even when no column is read (nothing given, nothing kept)
    columns = list(columns) or source.schema.names[:1]
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
