"""What a training run is built from: a recipe's table, split and fitted transforms, and
the network its ``[model]`` keys describe.

Everything here is a deterministic function of the recipe, so two runs of the same recipe
(or a run and its resumption) start from the same rows, transforms and architecture.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from stardata.tokens import Vocabulary
from stardiff.errors import RecipeError
from stardiff.infer import column_ranges
from stardiff.model import DensityNetwork, NetworkConfig
from stardiff.persist import near_hashes, row_hashes
from stardiff.recipe import Recipe
from stardiff.tables import read_errors, read_table, split_rows
from stardiff.transforms import Preprocessor
from stardiff.uncertainty import ErrorFeatures, error_columns

__all__ = ["Prepared", "prepare", "network_for"]


@dataclass
class Prepared:
    """Everything training needs, derived deterministically from a recipe."""

    recipe: Recipe
    pre: Preprocessor
    requestable: list[str]
    z: np.ndarray  # standardized (N, V), NaN = missing
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    ranges: dict | None = None  # column → [min, max, robust σ] of the training rows
    hashes: dict | None = None  # "train"/"validation" → content hashes of those rows
    errors: np.ndarray | None = None  # (N, V) error features, NaN = not known (data.errors)
    error_features: ErrorFeatures | None = None


def prepare(recipe: Recipe) -> Prepared:
    """Read the recipe's table, split it, fit transforms + standardizer on training rows."""
    d = recipe.data
    table = read_table(recipe.table_path(), d.columns or None, d.split_column)
    if d.errors and not d.columns:  # the error columns are not columns of the model
        table = _without_error_columns(table, d.errors)
    if table.ignored:  # said, never silent: a column the model will not know
        why = ", ".join(f"{c} ({w})" for c, w in table.ignored.items())
        warnings.warn(f"{recipe.table_path().name}: columns not used: {why}", stacklevel=2)
    vocab = Vocabulary(table.names)
    requestable = list(d.requestable) or list(table.names)
    for c in requestable:
        vocab.id(c)  # unknown names raise, listing the valid ones
    train, val, test = split_rows(
        len(table.values),
        test_rows=d.test_rows,
        validation_fraction=d.validation_fraction,
        seed=d.split_seed,
        labels=table.split,
    )
    if train.size == 0:
        raise ValueError(f"{recipe.table_path().name}: no training rows after the split")
    pre = Preprocessor.fit(table.values[train], vocab, recipe.transforms)
    z = pre.encode(table.values, where=recipe.table_path().name)
    ranges = column_ranges(table.values[train], table.names)
    hashes = {
        "train": row_hashes(table.values[train]),
        "validation": row_hashes(table.values[val]),
        "near": near_hashes(z[np.concatenate([train, val])]).ravel(),  # rounded copies too
    }
    errors = features = None
    if d.errors:
        errors, features = _errors(recipe, table, pre, train)
    return Prepared(recipe, pre, requestable, z, train, val, test, ranges, hashes, errors, features)


def _without_error_columns(table, template: str):
    errs = set(error_columns(template, table.names, table.names).values())
    keep = [j for j, c in enumerate(table.names) if c not in errs]
    table.names = [table.names[j] for j in keep]
    table.values = table.values[:, keep]
    return table


def _errors(recipe: Recipe, table, pre: Preprocessor, train: np.ndarray):
    """The error features of every row, fitted on the training rows (``data.errors``)."""
    path = recipe.table_path()
    sig, cols = read_errors(path, table.names, recipe.data.errors)
    if not cols:
        raise RecipeError(
            f"{path.name}: 'data.errors' = {recipe.data.errors!r} names no column of the table"
        )
    features = ErrorFeatures.fit(pre, table.values[train], sig[train], recipe.data.errors, cols)
    return features.encode(pre, table.values, sig), features


def network_for(recipe: Recipe, n_kinds: int) -> DensityNetwork:
    """The untrained network of the recipe's ``[model]`` keys over ``n_kinds`` columns."""
    m = recipe.model
    return DensityNetwork(
        NetworkConfig(
            n_kinds=n_kinds,
            dim=m.dim,
            n_heads=m.n_heads,
            ff_dim=m.ff_dim,
            n_layers=m.n_layers,
            dropout=m.dropout,
            head_width=m.head_width,
            head_layers=m.head_layers,
            steps=m.steps,
            beta_start=m.beta_start,
            beta_end=m.beta_end,
            isolated_requests=m.isolated_requests,
            embedding_shift=m.embedding_shift,
            causal_inputs=m.causal_inputs,
            periodic_features=m.periodic_features,
            summary_width=m.summary_width,
            input_errors=bool(recipe.data.errors),
        )
    )
