"""Training recipes: a TOML file, validated on load into typed dataclasses.

Every key has a type and a default (see ``docs/recipes.md``); an unknown key, a value
of the wrong type or a missing required key is a one-line :class:`RecipeError` naming
the key. Command-line flags override recipe values through :func:`override`.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stardata.numbers import SEED, Range, check_number
from stardiff.errors import RecipeError

__all__ = [
    "MINUTES",
    "RANGES",
    "Recipe",
    "RecipeError",
    "load_recipe",
    "numeric_keys",
    "override",
    "recipe_from_dict",
]

REQUIRED = object()
BIG = 10**9  # a count beyond any real use: larger is a typo, refused
MINUTES = Range(0.0, 1e6)  # train.time_budget and --minutes (0 = train for train.epochs)


def _int(lo: int, hi: int = BIG) -> Range:
    return Range(lo, hi, integer=True)


#: Where every number of a recipe means something; NaN is never one, infinity only where a
#: range says so (``train.grad_clip = inf``: no clipping). ``docs/recipes.md`` lists them.
RANGES = {
    "data.test_rows": _int(0),
    "data.validation_fraction": Range(0.0, 1.0, hi_open=True),
    "data.split_seed": SEED,
    "model.dim": _int(1, 65536),
    "model.n_heads": _int(1, 1024),
    "model.ff_dim": _int(1, 1 << 20),
    "model.n_layers": _int(1, 1024),
    "model.dropout": Range(0.0, 1.0, hi_open=True),
    "model.head_width": _int(1, 65536),
    "model.head_layers": _int(1, 1024),
    "model.steps": _int(1, 100_000),
    "model.beta_start": Range(0.0, 1.0, lo_open=True, hi_open=True),
    "model.beta_end": Range(0.0, 1.0, lo_open=True, hi_open=True),
    "model.periodic_features": _int(0, 1024),
    "model.summary_width": _int(0, 65536),
    "train.epochs": _int(1),
    "train.batch_size": _int(1, 1 << 24),
    "train.lr": Range(0.0, 10.0, lo_open=True),
    "train.weight_decay": Range(0.0, 100.0),
    "train.lr_min": Range(0.0, 10.0),
    "train.cycle_epochs": _int(1),
    "train.grad_clip": Range(0.0, math.inf, lo_open=True),
    "train.context": _int(0, 1 << 20),
    "train.length_buckets": _int(1, 1 << 16),
    "train.noise_draws": _int(1, 1024),
    "train.seed": SEED,
    "train.checkpoint_every": _int(1),
    "train.threads": _int(0, 4096),
    "train.time_budget": MINUTES,
    "train.warmup": Range(0.0, 1.0, hi_open=True),
    "train.ema": Range(0.0, 1.0, hi_open=True),
    "train.subset_power": Range(0.0, 100.0, lo_open=True),
    "train.requests": _int(1, 1 << 16),
    "train.few_inputs": Range(0.0, 1.0),
    "train.few_inputs_max": _int(1, 1 << 16),
    "train.few_input_requests": Range(0.0, 1.0),
    "train.step_power": Range(0.0, 100.0, lo_open=True),
    "train.all_inputs": Range(0.0, 1.0),
    "train.error_dropout": Range(0.0, 1.0),
    "evaluate.samples": _int(1, 10**7),
    "evaluate.rows_per_panel": _int(1, 10**7),
    "evaluate.rows": _int(1, 10**7),
    "evaluate.samples_per_row": _int(1, 10**6),
    "evaluate.tasks": _int(0, 10**7),
}


@dataclass(frozen=True)
class DataSection:
    table: str = REQUIRED  # path (relative to the recipe) or "stardiff:<file>" for bundled data
    columns: list[str] = field(default_factory=list)  # vocabulary; empty = all numeric columns
    requestable: list[str] = field(default_factory=list)  # empty = every column
    test_rows: int = 0  # held out: the first N of default_rng(split_seed).permutation(rows)
    validation_fraction: float = 0.1
    split_seed: int = 0
    split_column: str = ""  # use a table column of "train"/"validation"/"test" labels instead
    errors: str = ""  # each column's error column, e.g. "{}_err" (empty: errors not used)


@dataclass(frozen=True)
class ModelSection:
    dim: int = 32
    n_heads: int = 4
    ff_dim: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    head_width: int = 64
    head_layers: int = 2
    steps: int = 100
    beta_start: float = 1e-5
    beta_end: float = 0.1
    isolated_requests: bool = False  # inputs never attend to the request (train.requests > 1)
    embedding_shift: bool = False  # value embedding GELU(w*M + s) with learned bends s
    causal_inputs: bool = False  # input i attends to inputs 1..i only (train.few_input_requests)
    periodic_features: int = 0  # K periodic features of each value (Gorishniy et al. 2022)
    summary_width: int = 0  # an extra input token: an MLP of all inputs at once (0 = none)


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 512
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.01
    lr_min: float = 1e-5
    cycle_epochs: int = 64
    grad_clip: float = 1.0
    context: int = 64  # most inputs drawn per row and step
    target_in_context: bool = False  # may the requested column also be an input?
    length_buckets: int = 1  # groups of rows of similar input length per step (CPU speed-up)
    noise_draws: int = 1  # (step, noise) draws per encoded row: the head's loss averaged over them
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    compile: bool = False
    checkpoint_every: int = 16
    threads: int = 0  # torch CPU threads; 0 = torch's default
    out: str = ""  # model folder; default runs/<recipe name>
    time_budget: float = 0.0  # minutes of training; > 0 replaces epochs (stardiff.train.budget)
    warmup: float = 0.0  # linear LR warm-up, fraction of time_budget
    ema: float = 0.0  # decay of the weight average the model is saved from; 0 = none
    subset_power: float = 1.0  # input-set size L = floor(u**power * (n+1)); > 1 favours few inputs
    requests: int = 1  # requested columns per encoded row (> 1 needs model.isolated_requests)
    inputs_first: bool = False  # draw inputs before all but one request (up to all but 1 inputs)
    few_inputs: float = 0.0  # share of rows with L uniform in 1..few_inputs_max inputs
    few_inputs_max: int = 5
    few_input_requests: float = 0.0  # share of requests seeing the first 0..few_inputs_max inputs
    step_power: float = 1.0  # diffusion step t = floor(u**power * T); > 1 favours low noise
    # column (or glob) -> weight of being requested; 1 for the others (labels first)
    request_weights: dict[str, float] = field(default_factory=dict)
    all_inputs: float = 0.0  # share of rows given every available input (the label task)
    # column (or glob) -> weight of being drawn as an input; 1 for the others
    input_weights: dict[str, float] = field(default_factory=dict)
    weights_all_inputs_only: bool = False  # request_weights only in the all_inputs rows
    error_dropout: float = 0.1  # share of input errors hidden in training (data.errors)


@dataclass(frozen=True)
class ConditionalPanel:
    request: str = REQUIRED
    given: dict[str, list[list[float]]] = REQUIRED  # column -> list of [low, high] bins


@dataclass(frozen=True)
class EvaluateSubset:
    name: str = REQUIRED  # label of the panel (Fig. 4) and key in metrics.json
    request: str = REQUIRED
    given: list[str] = field(default_factory=list)  # names or glob patterns; empty = all others
    include_target: bool = False  # also give the requested column's own true value


@dataclass(frozen=True)
class EvaluateSection:
    samples: int = 4000  # draws per unconditional density
    rows_per_panel: int = 256  # data rows drawn from each conditional bin
    conditional: list[ConditionalPanel] = field(default_factory=list)
    rows: int = 500  # evaluation rows per column / subset (stardiff evaluate)
    samples_per_row: int = 200  # draws per evaluation row
    tasks: int = 1000  # random (row, request, inputs) tasks, as in the paper's Fig. 5
    subsets: list[EvaluateSubset] = field(default_factory=list)  # Fig. 4 input subsets
    joint: list[str] = field(default_factory=list)  # chained columns of the Fig. 6 density

    def __post_init__(self) -> None:
        for key in ("rows", "samples_per_row", "tasks"):  # also what evaluate's flags set
            check_number(
                getattr(self, key), f"'evaluate.{key}'", RANGES[f"evaluate.{key}"], RecipeError
            )
        if len(self.joint) == 1 or len(set(self.joint)) != len(self.joint):
            raise RecipeError("'evaluate.joint' must name 0 or at least 2 distinct columns")
        names = [s.name for s in self.subsets]
        if len(set(names)) != len(names):
            raise RecipeError("'evaluate.subsets' names must be distinct")


@dataclass(frozen=True)
class Recipe:
    """A validated training recipe: one typed section per TOML table.

    Made by :func:`load_recipe` (a file) or :func:`recipe_from_dict`; every key, its type and
    default is in the recipe reference (``docs/recipes.md``). Frozen: :func:`override` makes
    changed copies.

    Attributes
    ----------
    data : DataSection
        ``[data]``: the table, its columns, the split.
    model : ModelSection
        ``[model]``: the network's size and noise schedule.
    train : TrainSection
        ``[train]``: optimizer, batches, budget, device, output folder.
    transforms : dict of str to str
        ``[transforms]``: a transform (e.g. ``"log"``) per column; unlisted ones: ``"identity"``.
    evaluate : EvaluateSection
        ``[evaluate]``: the figures drawn after training.
    name : str
        The recipe's name (its file's stem); the default output folder is ``runs/<name>``.
    base_dir : str
        The folder relative paths in the recipe are resolved against (the file's folder).
    """

    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    transforms: dict[str, str] = field(default_factory=dict)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    name: str = "recipe"
    base_dir: str = "."

    def table_path(self) -> Path:
        """The table file, resolving ``stardiff:`` (bundled data) and recipe-relative paths."""
        t = self.data.table
        if t.startswith("stardiff:"):
            return Path(__file__).parent / "datasets" / t.removeprefix("stardiff:")
        p = Path(t).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def out_dir(self) -> Path:
        """The model folder: ``train.out``, or ``runs/<name>`` when that is empty.

        A relative path is relative to the recipe's folder, as ``data.table`` is (so a recipe
        writes to the same place from any working directory).
        """
        p = Path(self.train.out or f"runs/{self.name}").expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def to_dict(self) -> dict:
        """Every section and key, JSON-ready, as recorded in a model's ``config.json``.

        ``base_dir`` is left out: it depends on where the recipe was read from, not on what it
        asks for.
        """
        d = dataclasses.asdict(self)
        d.pop("base_dir")
        return d


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a TOML recipe file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise RecipeError(f"cannot read recipe {str(path)!r}: {e.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path.name}: not valid TOML: {e}") from None
    return recipe_from_dict(raw, name=path.stem, base_dir=str(path.parent), where=path.name)


def recipe_from_dict(raw: dict, *, name: str = "recipe", base_dir: str = ".", where="recipe"):
    """Validate a recipe given as a (TOML-like) dictionary."""
    raw = dict(raw)
    raw.setdefault("name", name)
    raw["base_dir"] = base_dir
    recipe = _build(Recipe, raw, where, "")
    _check_semantics(recipe, where)
    return recipe


def override(recipe: Recipe, section: str, **values: Any) -> Recipe:
    """A copy of ``recipe`` with ``values`` replaced in ``section`` (None values are skipped)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return recipe
    sec = getattr(recipe, section)
    merged = {**dataclasses.asdict(sec), **values}
    new = _build(type(sec), merged, "command line", f"{section}.")
    recipe = dataclasses.replace(recipe, **{section: new})
    _check_semantics(recipe, "command line")
    return recipe


def _build(cls, raw: Any, where: str, prefix: str):
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise RecipeError(
            f"{where}: unknown key '{prefix}{unknown[0]}' (valid: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name in raw:
            kwargs[name] = _convert(hints[name], raw[name], where, key)
        elif dataclasses.is_dataclass(hints[name]) and f.default_factory is dataclasses.MISSING:
            kwargs[name] = _build(hints[name], {}, where, f"{key}.")  # names its missing keys
        elif f.default is REQUIRED:
            raise RecipeError(f"{where}: missing required key '{key}'")
    return cls(**kwargs)


def _convert(tp, value, where: str, key: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, f"{key}.")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise RecipeError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
        return [_convert(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: '{key}' must be a table, got {type(value).__name__}")
        return {k: _convert(item, v, where, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # TOML integers are unbounded in Python's reader
            raise RecipeError(
                f"{where}: '{key}' must be a finite number, got an integer of "
                f"{len(str(abs(value)))} digits"
            ) from None
    if isinstance(tp, type) and not isinstance(tp, types.GenericAlias):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise RecipeError(
            f"{where}: '{key}' must be {tp.__name__}, got {type(value).__name__} {value!r}"
        )
    return value  # pragma: no cover - every annotation above is handled


def _check_semantics(r: Recipe, where: str) -> None:
    _check_numbers(r, where)
    if r.model.dim % r.model.n_heads:
        raise RecipeError(f"{where}: 'model.dim' ({r.model.dim}) must divide by 'model.n_heads'")
    if r.model.summary_width and r.model.causal_inputs:
        raise RecipeError(
            f"{where}: 'model.summary_width' (a token that sees every input) cannot go with "
            "'model.causal_inputs'"
        )
    if not r.train.lr_min <= r.train.lr:
        raise RecipeError(f"{where}: 'train.lr_min' must be in [0, train.lr], got {r.train.lr_min}")
    if not r.model.beta_start < r.model.beta_end:
        raise RecipeError(
            f"{where}: 'model.beta_start' must be in (0, beta_end), got {r.model.beta_start}"
        )
    if r.train.warmup and not r.train.time_budget:
        raise RecipeError(f"{where}: 'train.warmup' needs 'train.time_budget' (minutes)")
    if r.train.weights_all_inputs_only and not r.train.all_inputs:
        raise RecipeError(
            f"{where}: 'train.weights_all_inputs_only' needs 'train.all_inputs' > 0 (the rows "
            "the request weights are kept to)"
        )
    _check_requests(r, where)
    e = r.data.errors
    if e and (e.count("{}") != 1 or "{" in e.replace("{}", "") or "}" in e.replace("{}", "")):
        raise RecipeError(
            f"{where}: 'data.errors' = {e!r} must name each column's error column with one "
            "'{}' for the column, e.g. \"{}_err\""
        )
    for key in ("request_weights", "input_weights"):
        for col, w in getattr(r.train, key).items():
            if not 0 < w < math.inf:
                raise RecipeError(
                    f"{where}: 'train.{key}.{col}' must be a finite number > 0, got {w}"
                )
    from stardiff.transforms import TRANSFORMS

    for col, kind in r.transforms.items():
        if kind not in TRANSFORMS:
            raise RecipeError(
                f"{where}: 'transforms.{col}' = {kind!r}; choose one of {', '.join(TRANSFORMS)}"
            )
    for i, panel in enumerate(r.evaluate.conditional):
        for col, bins in panel.given.items():
            for b in bins:
                if len(b) != 2 or not b[0] < b[1] or not all(map(math.isfinite, b)):
                    raise RecipeError(
                        f"{where}: 'evaluate.conditional[{i}].given.{col}' bins must be "
                        "[low, high], finite, low < high"
                    )


def numeric_keys() -> list[str]:
    """Every number key of a recipe (``section.key``), from the sections' type hints."""
    keys = []
    for section in ("data", "model", "train", "evaluate"):
        cls = typing.get_type_hints(Recipe)[section]
        hints = typing.get_type_hints(cls)
        keys += [
            f"{section}.{f.name}" for f in dataclasses.fields(cls) if hints[f.name] in (int, float)
        ]
    return keys


def _check_numbers(r: Recipe, where: str) -> None:
    """Every number a recipe holds, in the range where it means something (:data:`RANGES`)."""
    for key in numeric_keys():
        section, name = key.split(".")
        value = getattr(getattr(r, section), name)
        check_number(value, f"{where}: '{key}'", RANGES[key], RecipeError)


def _check_requests(r: Recipe, where: str) -> None:
    if r.train.requests > 1 and not r.model.isolated_requests:
        raise RecipeError(
            f"{where}: 'train.requests' = {r.train.requests} needs 'model.isolated_requests' = "
            "true (the inputs must not attend to the requests)"
        )
    if r.model.causal_inputs and not r.model.isolated_requests:
        raise RecipeError(f"{where}: 'model.causal_inputs' needs 'model.isolated_requests' = true")
    if r.train.few_input_requests and (r.train.requests == 1 or not r.model.causal_inputs):
        raise RecipeError(
            f"{where}: 'train.few_input_requests' needs 'train.requests' > 1 and "
            "'model.causal_inputs' = true (a request sees the first inputs only)"
        )
    if r.train.inputs_first and (r.train.requests == 1 or r.train.target_in_context):
        raise RecipeError(
            f"{where}: 'train.inputs_first' needs 'train.requests' > 1 and "
            "'train.target_in_context' = false (it orders requests and inputs)"
        )
