"""Tables in, training batches out.

:func:`read_table` loads a Parquet/CSV table or a ``stardata`` ``tokens.h5`` file as a
float matrix (NaN = missing). :func:`split_rows` makes the fixed, seeded split.
:class:`BatchBuilder` draws, for every row of a batch at once (no Python loop over
rows), a random set of present inputs in random order and one requested target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stardiff.errors import InputTypeError

__all__ = ["Table", "read_table", "table_columns", "split_rows", "Batch", "BatchBuilder"]


@dataclass
class Table:
    """Column names, an (N, V) float64 matrix with NaN for missing, optional split labels."""

    names: list[str]
    values: np.ndarray
    split: np.ndarray | None = None
    ignored: dict[str, str] = field(default_factory=dict)  # column → why it is not used


def read_table(path: str | Path, columns: list[str] | None = None, split_column: str = ""):
    """Read a table file (``.parquet``, ``.csv``, or ``stardata``'s ``.h5``).

    Parameters
    ----------
    path : str or Path
        The file.
    columns : list of str, optional
        Columns to keep, in this order; default every numeric column. A text column whose
        cells are all numbers counts as numeric; one that mixes numbers with other cells
        (``?``, ``n/a``) is an error naming the column, a bad cell and its row, never
        dropped; a column of text only is ignored and listed in ``Table.ignored``.
    split_column : str
        Name of a column of ``train``/``validation``/``test`` labels to return as ``split``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path, columns, split_column)
    import pyarrow as pa
    import pyarrow.compute as pc

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        tbl = pq.read_table(path)
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        tbl = pacsv.read_csv(path)
    else:
        raise ValueError(f"{path.name}: unsupported table format {suffix!r} (parquet, csv, h5)")
    if tbl.num_rows == 0:
        raise ValueError(f"{path.name}: the table has no rows")
    for c in columns or []:
        if c not in tbl.column_names:
            raise KeyError(
                f"{path.name}: no column {c!r}; columns are: {', '.join(tbl.column_names)}"
            )
    numeric, ignored = {}, {}
    for name in columns or [c for c in tbl.column_names if c != split_column]:
        x, why = _numeric_column(path.name, name, tbl[name])
        if x is None and columns:
            raise InputTypeError(f"{path.name}: column {name!r} is {why}")
        if x is None:
            ignored[name] = why
        else:
            numeric[name] = x
    names = list(numeric)
    if not names:
        raise ValueError(f"{path.name}: no numeric column ({', '.join(tbl.column_names)})")
    values = np.column_stack([numeric[c] for c in names]).astype(np.float64)
    split = None
    if split_column:
        if split_column not in tbl.column_names:
            raise KeyError(f"{path.name}: no split column {split_column!r}")
        split = np.asarray(pc.cast(tbl[split_column], pa.string()).to_pylist(), dtype=object)
    return Table(names, values, split, ignored)


def table_columns(path: str | Path) -> list[str]:
    """Every column name of a table file (Parquet, CSV or ``tokens.h5``), in file order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if "vocabulary" not in f:
                raise ValueError(f"{path.name}: not a stardata tokens file (no 'vocabulary')")
            return [v.decode() if isinstance(v, bytes) else str(v) for v in f["vocabulary"][()]]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if suffix == ".csv":
        import pyarrow.csv as pacsv

        return list(pacsv.read_csv(path).column_names)
    raise ValueError(f"{path.name}: unsupported table format {suffix!r} (parquet, csv, h5)")


def _to_float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _numeric_column(file: str, name: str, col) -> tuple[np.ndarray | None, str]:
    """A column as float64 (NaN = missing), or ``(None, why it is not numeric)``.

    Text cells that all read as numbers make a numeric column; text that mixes numbers with
    other cells is a one-line error naming a bad cell and its row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), ""
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None, f"not numeric ({t})"
    enc = pc.dictionary_encode(col).combine_chunks()
    words = enc.dictionary.to_pylist()
    nums = [_to_float(w) if w.strip() else np.nan for w in words]
    bad = [w for w, v in zip(words, nums, strict=True) if v is None]
    if len(bad) == len(words):
        return None, "not numeric (text)"
    idx = enc.indices.to_numpy(zero_copy_only=False)
    if bad:
        codes = {i for i, v in enumerate(nums) if v is None}
        rows = np.flatnonzero(np.isin(idx, list(codes)) & ~np.asarray(enc.is_null()))
        raise ValueError(
            f"{file}: column {name!r} mixes numbers with non-numeric cells "
            f"({words[idx[rows[0]]]!r} in row {rows[0]}, {rows.size} cell(s) in all); "
            "fix or blank them"
        )
    lookup = np.array([np.nan if v is None else v for v in nums], dtype=np.float64)
    out = lookup[np.where(np.asarray(enc.is_null()), 0, idx)]
    out[np.asarray(enc.is_null())] = np.nan
    return out, ""


def _read_h5(path: Path, columns, split_column):
    from stardata.tokens import read_tokens_h5

    tokens, values, _, vocab, extra = read_tokens_h5(
        path, extra=[split_column] if split_column else []
    )
    values = values.astype(np.float64)
    values[tokens == 0] = np.nan
    names = list(columns) if columns else list(vocab.names)
    missing = [c for c in names if c not in vocab]
    if missing:
        raise KeyError(
            f"{path.name}: no column {missing[0]!r}; vocabulary: {', '.join(vocab.names)}"
        )
    idx = vocab.ids(names) - 1
    return Table(names, values[:, idx], extra.get(split_column) if split_column else None)


def split_rows(
    n: int,
    *,
    test_rows: int = 0,
    validation_fraction: float = 0.1,
    seed: int = 0,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed train/validation/test row indices (each sorted).

    With ``labels`` (a split column), rows labelled ``train``/``validation``/``test`` are
    used as given. Otherwise ``perm = default_rng(seed).permutation(n)``; test is
    ``perm[:test_rows]`` and validation the next ``validation_fraction`` of the rest.
    """
    if labels is not None:
        labels = np.asarray(labels).astype(str)
        unknown = sorted(set(labels) - {"train", "validation", "test"})
        if unknown:
            raise ValueError(f"split column has unknown label(s) {unknown[:5]}")
        return tuple(np.flatnonzero(labels == s) for s in ("train", "validation", "test"))
    if not 0 <= test_rows < n:
        raise ValueError(f"data.test_rows must be in 0..{n - 1} for a table of {n} rows")
    perm = np.random.default_rng(seed).permutation(n)
    rest = perm[test_rows:]
    n_val = int(round(validation_fraction * rest.size))
    parts = perm[:test_rows], rest[:n_val], rest[n_val:]
    return np.sort(parts[2]), np.sort(parts[1]), np.sort(parts[0])


@dataclass
class Batch:
    """One training batch: inputs, the requested column and its standardized target."""

    tokens: torch.Tensor  # (B, C) int64, 0 = padding
    values: torch.Tensor  # (B, C) float32
    request: torch.Tensor  # (B,) or (B, k) int64 token ids of the requested columns, 0 = none
    target: torch.Tensor  # (B,) or (B, k) float32
    seen: torch.Tensor | None = None  # (B, k) int64: inputs each request sees (None = all)

    def select(self, rows) -> Batch:
        """The batch of these rows (an index, slice or mask over the first axis)."""
        return Batch(*(None if x is None else x[rows] for x in vars(self).values()))


class BatchBuilder:
    """Vectorized random (inputs, request) draws over rows of a standardized matrix.

    Parameters
    ----------
    values : Tensor, shape (N, V)
        Standardized values with NaN for missing, on the device batches are made on.
    requestable : Tensor of bool, shape (V,)
        Columns that may be requested as targets.
    context : int
        Most inputs per row (each row draws ``L`` in ``0..min(context, available)``).
    target_in_context : bool
        Whether the requested column may also be drawn among the inputs.
    subset_power : float
        ``L = floor(u**subset_power * (n + 1))`` with ``u`` uniform: 1 draws ``L`` uniformly in
        ``0..n``; larger values favour few inputs (``P(L = 0) ~ (n + 1)**(-1/power)``), which
        matter more with many columns, where uniform ``L`` rarely trains them.
    requests : int
        Requested columns per row (distinct; none of them among the inputs unless
        ``target_in_context``). With 1, ``Batch.request``/``target`` are (B,); otherwise
        (B, requests), a row with fewer requestable present columns padding its extra
        requests with token 0 (target 0).
    few_inputs : tuple of (float, int)
        ``(share, most)``: a ``share`` of the rows draw ``L`` uniformly in ``1..most`` instead
        (the tasks with a handful of inputs, which the power law spreads thin over the many
        columns of a wide table); ``share = 0`` leaves the draw as it is.
    inputs_first : bool
        With several requests: reserve only the first request, draw the inputs from all the
        other present columns, and take the further requests from the columns left over. A
        row can then have up to all but one of its columns as inputs (otherwise at most all
        but ``requests``), and a row with many inputs asks fewer requests.
    few_input_requests : float
        Share of each row's requests (drawn per request) that see only the first ``m`` of the
        row's inputs, ``m`` uniform in ``0..few_inputs[1]`` (at most the row's ``L``);
        ``Batch.seen`` holds every request's count. For a network with
        ``causal_inputs``, where the first ``m`` inputs' hidden states are those of a row
        given only them: the few-input tasks come at no extra encoder cost and the other
        requests keep the row's ``L``. 0 = every request sees all (``Batch.seen`` None).
    """

    def __init__(
        self,
        values,
        requestable,
        context: int,
        target_in_context: bool = False,
        subset_power: float = 1.0,
        requests: int = 1,
        inputs_first: bool = False,
        few_inputs: tuple[float, int] = (0.0, 5),
        few_input_requests: float = 0.0,
    ):
        self.values = values
        self.requestable = requestable.to(values.device)
        self.k = max(1, min(context, values.shape[1]))
        self.context = context
        self.target_in_context = target_in_context
        self.subset_power = subset_power
        self.requests = max(1, min(requests, values.shape[1]))
        self.inputs_first = inputs_first and self.requests > 1 and not target_in_context
        self.few_inputs = few_inputs
        self.few_input_requests = few_input_requests if self.requests > 1 else 0.0

    def trainable_rows(self) -> torch.Tensor:
        """Rows with at least one present, requestable column (others cannot be targets)."""
        ok = (~torch.isnan(self.values)) & self.requestable
        return torch.nonzero(ok.any(dim=1)).squeeze(1)

    def __call__(self, rows: torch.Tensor, generator: torch.Generator) -> Batch:
        x = self.values[rows]
        B, V = x.shape
        dev = x.device
        present = ~torch.isnan(x)
        # Requested columns: the largest random keys over allowed columns.
        keys = torch.rand(B, V, generator=generator, device=dev)
        keys = keys.masked_fill(~(present & self.requestable), -1.0)
        avail = present.clone()
        if self.requests == 1:
            request = keys.argmax(dim=1)
            target = x.gather(1, request[:, None]).squeeze(1)
            if not self.target_in_context:
                avail[torch.arange(B, device=dev), request] = False
            req_tokens = request + 1
        elif self.inputs_first:
            request = keys.argmax(dim=1, keepdim=True)  # the one reserved request
            avail[torch.arange(B, device=dev), request[:, 0]] = False
        else:
            top, request = torch.topk(keys, self.requests, dim=1)
            real = top >= 0
            target = torch.where(real, x.gather(1, request), 0.0)
            if not self.target_in_context:
                avail.scatter_(1, request, avail.gather(1, request) & ~real)
            req_tokens = torch.where(real, request + 1, 0)
        req_keys = keys
        # Random order of the available inputs: the k smallest of fresh random keys.
        keys = torch.rand(B, V, generator=generator, device=dev).masked_fill(~avail, 2.0)
        order = torch.topk(keys, self.k, dim=1, largest=False).indices
        n_max = avail.sum(dim=1).clamp(max=self.context)
        u = torch.rand(B, generator=generator, device=dev)
        if self.subset_power != 1.0:
            u = u**self.subset_power
        n_in = (u * (n_max + 1)).long()
        share, most = self.few_inputs
        if share > 0:  # extra random numbers only then: the stream is unchanged without
            few = torch.rand(B, generator=generator, device=dev) < share
            small = torch.randint(1, most + 1, (B,), generator=generator, device=dev)
            n_in = torch.where(few, small, n_in)
        n_in = torch.minimum(n_in, n_max)
        use = torch.arange(self.k, device=dev)[None, :] < n_in[:, None]
        tokens = torch.where(use, order + 1, 0)
        values = torch.where(use, x.gather(1, order), 0.0)
        if self.inputs_first:
            req_tokens, target = self._requests_after_inputs(x, req_keys, request, order, use)
        seen = self._seen(n_in, generator) if self.few_input_requests > 0 else None
        return Batch(tokens, values.float(), req_tokens, target.float(), seen)

    def _seen(self, n_in: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Inputs seen by each of the ``requests`` of each row: all ``n_in``, or for a
        ``few_input_requests`` share, ``m`` uniform in ``0..few_inputs_max`` (capped)."""
        shape, dev = (n_in.shape[0], self.requests), n_in.device
        few = torch.rand(shape, generator=generator, device=dev) < self.few_input_requests
        m = torch.randint(0, self.few_inputs[1] + 1, shape, generator=generator, device=dev)
        full = n_in[:, None].expand(shape)
        return torch.where(few, torch.minimum(m, full), full)

    def _requests_after_inputs(self, x, keys, first, order, use):
        """The reserved request, then up to ``requests - 1`` more among the columns that
        are neither inputs nor that request (highest ``keys`` first; -1 = not allowed)."""
        taken = torch.zeros_like(keys, dtype=torch.bool)
        taken.scatter_(1, order, use)
        taken.scatter_(1, first, True)
        top, more = torch.topk(keys.masked_fill(taken, -1.0), self.requests - 1, dim=1)
        request = torch.cat([first, more], dim=1)
        real = torch.cat([keys.gather(1, first) >= 0, top >= 0], dim=1)
        target = torch.where(real, x.gather(1, request), 0.0)
        return torch.where(real, request + 1, 0), target
