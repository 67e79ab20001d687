"""Training batches: random (inputs, requests) draws over the rows of a standardized matrix.

:class:`BatchBuilder` draws, for every row of a batch at once (no Python loop over
rows), a random set of present inputs in random order and the requested targets.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from stardiff.errors import RecipeError

__all__ = ["Batch", "BatchBuilder", "column_weights"]


def column_weights(
    weights: Mapping[str, float], vocab, key: str = "train.request_weights"
) -> np.ndarray | None:
    """A recipe's column weights (column name or glob → weight) as one weight per column.

    Columns no key names weigh 1; a column several globs name takes the last. ``None`` when
    every weight is 1 (the draw is then the uniform one, stream unchanged). A key that names
    no column of the vocabulary is a one-line ``RecipeError`` naming ``key``
    (``train.request_weights`` or ``train.input_weights``).
    """
    w = np.ones(len(vocab.names))
    for name, value in weights.items():
        hit = [j for j, c in enumerate(vocab.names) if fnmatch.fnmatchcase(c, name)]
        if not hit:
            raise RecipeError(
                f"'{key}.{name}' names no column of the table "
                f"({', '.join(vocab.names[:8])}{', ...' if len(vocab.names) > 8 else ''})"
            )
        w[hit] = float(value)
    return None if np.all(w == 1) else w


@dataclass
class Batch:
    """One training batch: inputs, the requested column and its standardized target."""

    tokens: torch.Tensor  # (B, C) int64, 0 = padding
    values: torch.Tensor  # (B, C) float32
    request: torch.Tensor  # (B,) or (B, k) int64 token ids of the requested columns, 0 = none
    target: torch.Tensor  # (B,) or (B, k) float32
    seen: torch.Tensor | None = None  # (B, k) int64: inputs each request sees (None = all)
    errors: torch.Tensor | None = None  # (B, C) float32 error features of the inputs, NaN = none

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
    request_weights : Tensor of float, shape (V,), optional
        Weight of each column in the draw of the requests (weighted sampling without
        replacement: the largest ``u**(1/w)``); ``None`` = all equal, the stream as it was.
    all_inputs : float
        Share of the rows (drawn per row and step) given every available input, up to
        ``context`` (the label task: a label from the whole spectrum). 0 = the draw as it is.
    input_weights : Tensor of float, shape (V,), optional
        Weight of each column in the draw of a row's inputs among its available columns (the
        largest ``u**(1/w)`` first), so that a row with few inputs gives the weighted columns
        (labels given labels) more often; rows given every input are unchanged. ``None`` = all
        equal, the stream as it was.
    weights_all_inputs_only : bool
        Apply ``request_weights`` only in the ``all_inputs`` rows (the label task); the other
        rows draw their requests uniformly, as without weights.
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
        request_weights=None,
        all_inputs: float = 0.0,
        input_weights=None,
        weights_all_inputs_only: bool = False,
        errors=None,
        error_dropout: float = 0.0,
    ):
        self.values = values
        self.errors = errors
        self.error_dropout = error_dropout
        self.requestable = requestable.to(values.device)
        self.k = max(1, min(context, values.shape[1]))
        self.context = context
        self.target_in_context = target_in_context
        self.subset_power = subset_power
        self.requests = max(1, min(requests, values.shape[1]))
        self.inputs_first = inputs_first and self.requests > 1 and not target_in_context
        self.few_inputs = few_inputs
        self.few_input_requests = few_input_requests if self.requests > 1 else 0.0
        self.inverse_weights = None
        if request_weights is not None:
            w = torch.as_tensor(request_weights, dtype=values.dtype, device=values.device)
            if not torch.all(w == 1):
                self.inverse_weights = 1.0 / w
        self.all_inputs = all_inputs
        self.weights_all_inputs_only = weights_all_inputs_only and all_inputs > 0
        self.inverse_input_weights = None
        if input_weights is not None:
            w = torch.as_tensor(input_weights, dtype=values.dtype, device=values.device)
            if not torch.all(w == 1):
                self.inverse_input_weights = 1.0 / w

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
        every = None
        if self.weights_all_inputs_only:  # which rows get every input, drawn before requests
            every = torch.rand(B, generator=generator, device=dev) < self.all_inputs
        if self.inverse_weights is not None:  # weighted draw without replacement
            weighted = keys.pow(self.inverse_weights)
            keys = weighted if every is None else torch.where(every[:, None], weighted, keys)
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
        keys = torch.rand(B, V, generator=generator, device=dev)
        if self.inverse_input_weights is not None:  # weighted: the largest u**(1/w) first
            keys = 1.0 - keys.pow(self.inverse_input_weights)
        keys = keys.masked_fill(~avail, 2.0)
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
        if self.all_inputs > 0:  # extra random numbers only then, as few_inputs
            if every is None:
                every = torch.rand(B, generator=generator, device=dev) < self.all_inputs
            n_in = torch.where(every, n_max, n_in)
        n_in = torch.minimum(n_in, n_max)
        use = torch.arange(self.k, device=dev)[None, :] < n_in[:, None]
        tokens = torch.where(use, order + 1, 0)
        values = torch.where(use, x.gather(1, order), 0.0)
        if self.inputs_first:
            req_tokens, target = self._requests_after_inputs(x, req_keys, request, order, use)
        seen = self._seen(n_in, generator) if self.few_input_requests > 0 else None
        errors = None
        if self.errors is not None:
            errors = torch.where(use, self.errors[rows].gather(1, order), torch.nan)
            if self.error_dropout > 0:  # the model must also answer without an input's error
                hide = torch.rand(errors.shape, generator=generator, device=dev)
                errors = errors.masked_fill(hide < self.error_dropout, torch.nan)
            errors = errors.float()
        return Batch(tokens, values.float(), req_tokens, target.float(), seen, errors)

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
