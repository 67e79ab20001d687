"""Distillation of a trained model's diffusion head into a few-step student.

``stardiff distill MODEL --steps K`` trains a student head (the teacher's architecture, started
from its weights; :class:`stardiff.model.DistilledHead`) whose ``K`` first-order (DDIM) steps
from the starting noise land where the teacher's deterministic 20-step ``dpm2`` trajectory
from the same noise is at those steps, the last one on its sample (multi-step knowledge
distillation, Luhman & Luhman 2021, with the trajectory targets of progressive distillation,
Salimans & Ho 2022, in one round). The encoder is frozen: a condition is computed once and
used by teacher and student alike. In 1-D the teacher's flow map from noise to sample is
monotone for each condition, which a small head can follow in a few steps.

The conditions are those of training: rows of the model's own table (``--table`` for another),
with random input sets drawn as the recipe's ``[train]`` keys draw them
(:class:`stardiff.train.batches.BatchBuilder`), each with ``draws`` noise draws. The loss is
the mean squared distance of the student's states to the teacher's after each step, in units
of the clean sample (a state at step ``t`` divided by ``α_t``). The learning rate follows one
cosine over the ``batches`` (or over ``minutes`` of wall clock, :mod:`stardiff.train.budget`).
The student is written beside the model (:func:`stardiff.persist.save_distilled`) under the
model folder's lock; ``sampler="distilled"`` then uses it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from stardata.locks import FolderLock
from stardiff import persist
from stardiff.errors import ModelFileError
from stardiff.infer import DensityModel, load
from stardiff.model import (
    DEFAULT_STEPS,
    DistilledHead,
    rollout,
    student_steps,
    teacher_states,
)
from stardiff.recipe import recipe_from_dict
from stardiff.tables import read_errors, read_table, split_rows
from stardiff.train.batches import BatchBuilder, column_weights
from stardiff.train.budget import TimeBudget, budget_lr
from stardiff.train.loop import adamw

__all__ = ["DEFAULT_BATCHES", "distill", "condition_rows"]

#: Batches of a distillation without a time budget.
DEFAULT_BATCHES = 1500


def _table_path(model: DensityModel, table) -> Path:
    """The table of the model's recipe (or ``table``): a recipe-relative path is looked for
    beside the model folder's parent (the bundled recipes write ``../runs/NAME``) and in the
    working directory."""
    if table is not None:
        return Path(table)
    raw = model.meta.get("recipe") or {}
    name = (raw.get("data") or {}).get("table")
    if not name:
        raise ModelFileError(f"{model.folder}: config.json names no training table; give --table")
    if name.startswith("stardiff:"):
        return recipe_from_dict(raw).table_path()
    p = Path(name).expanduser()
    tries = [p] if p.is_absolute() else [Path(model.folder).parent / p, p]
    for t in tries:
        if t.is_file():
            return t
    raise FileNotFoundError(
        f"the model's training table {name} is not at {' or '.join(map(str, tries))}; "
        "give it with --table"
    )


def condition_rows(model: DensityModel, table=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardized rows (N, V) of the model's training table (or ``table``), with the row
    indices to distil on and the held-out ones to validate on. For a model that reads its
    inputs' errors (``data.errors``), the rows are (N, 2V): the values, then the error
    features of the table's error columns (NaN where it has none).

    The model's own table is split as its recipe split it (its training rows, its validation
    rows); another table is split 90/10 with a fixed seed. Columns the model does not know are
    ignored, columns the table lacks are missing.
    """
    path = _table_path(model, table)
    raw = model.meta.get("recipe") or {}
    data = raw.get("data") or {}
    own = table is None
    split_column = data.get("split_column", "") if own else ""
    t = read_table(path, None, split_column)
    z = np.full((len(t.values), len(model.columns)), np.nan)
    known = [(j, model.columns.index(c)) for j, c in enumerate(t.names) if c in model.columns]
    if not known:
        raise ValueError(f"{path.name}: none of the model's columns ({', '.join(model.columns)})")
    for j, v in known:
        z[:, v] = t.values[:, j]
    phys, z = z, model.pre.encode(z, where=path.name)
    if model.error_features is not None:
        sig, cols = read_errors(path, list(model.columns), model.error_features.template)
        if not cols:
            sig = np.full(phys.shape, np.nan)
        z = np.concatenate([z, model.error_features.encode(model.pre, phys, sig)], axis=1)
    if own:
        train, val, _ = split_rows(
            len(z),
            test_rows=int(data.get("test_rows", 0)),
            validation_fraction=float(data.get("validation_fraction", 0.1)),
            seed=int(data.get("split_seed", 0)),
            labels=t.split,
        )
    else:
        train, val, _ = split_rows(len(z), validation_fraction=0.1, seed=0)
    return z, train, val


def _builder(model: DensityModel, z: torch.Tensor) -> BatchBuilder:
    """Random input sets as the model's recipe trained them; one request per row."""
    t = (model.meta.get("recipe") or {}).get("train") or {}
    V = len(model.columns)
    errors = z[:, V:] if z.shape[1] == 2 * V else None  # see condition_rows
    z = z[:, :V]
    requestable = torch.zeros(V, dtype=torch.bool)
    requestable[[model.columns.index(c) for c in model.requestable]] = True
    weights = column_weights(t.get("request_weights") or {}, model.pre.vocab)
    inputs = column_weights(t.get("input_weights") or {}, model.pre.vocab, "train.input_weights")
    return BatchBuilder(
        z, requestable, int(t.get("context", 64)), bool(t.get("target_in_context", False)),
        float(t.get("subset_power", 1.0)), 1, False,
        (float(t.get("few_inputs", 0.0)), int(t.get("few_inputs_max", 5))), 0.0, weights,
        float(t.get("all_inputs", 0.0)), inputs, bool(t.get("weights_all_inputs_only", False)),
        errors, float(t.get("error_dropout", 0.0)),
    )  # fmt: skip


class _Distiller:
    """Teacher, student and the loss between their trajectories."""

    def __init__(self, model: DensityModel, student: DistilledHead, teacher_steps: int):
        self.net = model.network.eval()
        self.student = student
        self.teacher_steps = teacher_steps
        abar = self.net.schedule.alpha_bar.double().cpu()
        # landing points of the student's steps: its next step indices, then the clean sample
        self.scale = [float(abar[t].sqrt()) for t in student.steps[1:]] + [1.0]

    @torch.no_grad()
    def targets(self, batch, noise: torch.Tensor):
        """The frozen encoder's condition of each row and the teacher's states from ``noise``."""
        h = self.net.condition(batch.tokens, batch.values, batch.request, None, batch.errors)
        cond = [c.unsqueeze(1) for c in self.net.head.project_condition(h)]
        states = teacher_states(
            self.net.head, self.net.schedule, cond, noise, self.teacher_steps,
            self.student.steps[1:],
        )  # fmt: skip
        return h, states

    def loss(self, h: torch.Tensor, noise: torch.Tensor, states) -> torch.Tensor:
        """Mean over steps of the squared distance to the teacher, in clean-sample units."""
        cond = [c.unsqueeze(1) for c in self.student.head.project_condition(h)]
        mine = rollout(self.student.head, self.net.schedule, cond, noise, self.student.steps)
        pairs = zip(mine, states, self.scale, strict=True)
        terms = [((a - b) / s).square().mean() for a, b, s in pairs]
        return torch.stack(terms).mean()

    @torch.no_grad()
    def final_rms(self, h: torch.Tensor, noise: torch.Tensor, states) -> float:
        """RMS distance of the student's samples to the teacher's (standardized units)."""
        cond = [c.unsqueeze(1) for c in self.student.head.project_condition(h)]
        mine = rollout(self.student.head, self.net.schedule, cond, noise, self.student.steps)
        return float((mine[-1] - states[-1]).square().mean().sqrt())


def distill(
    model: DensityModel | str | Path,
    steps: int = 4,
    *,
    table: str | Path | None = None,
    batches: int | None = None,
    minutes: float | None = None,
    batch_size: int = 256,
    draws: int = 16,
    lr: float = 1e-3,
    teacher_steps: int = DEFAULT_STEPS,
    seed: int = 0,
    save: bool = True,
    progress: bool = True,
) -> DensityModel:
    """Distil a model's diffusion head into a ``steps``-step student and save it beside the model.

    Parameters
    ----------
    model : DensityModel or path
        A saved model (or its folder); the student is written into its folder.
    steps : int
        ``K``, the student's network evaluations per draw (1 to ``teacher_steps``; 4 or fewer
        is what it is for).
    table : path, optional
        Rows to take conditions from (default the model's training table, as its recipe names
        it; columns matched by name).
    batches : int, optional
        Optimizer steps (default :data:`DEFAULT_BATCHES`; ignored with ``minutes``).
    minutes : float, optional
        Train for this much wall clock instead, the learning rate fitted to it.
    batch_size, draws : int
        Rows (conditions) per batch, and noise draws per row: ``batch_size × draws`` teacher
        trajectories a step.
    lr : float
        Peak learning rate (one cosine to ``lr / 100``).
    teacher_steps : int
        Steps of the ``dpm2`` teacher (the default sampler's 20).
    seed : int
        Seed of the rows, input sets and noise.
    save : bool
        Write ``distilled-K.safetensors`` and ``distilled.json`` into the model folder.
    progress : bool
        Show a progress bar.

    Returns
    -------
    DensityModel
        The model, with the student in ``model.students[K]`` and the default of
        ``sampler="distilled"``.
    """
    from stardata.numbers import COUNT, Range, check_number
    from stardiff.recipe import MINUTES

    model = model if isinstance(model, DensityModel) else load(model)
    n = model.network.config.steps
    teacher_steps = check_number(teacher_steps, "teacher_steps", Range(2, n, integer=True))
    steps = check_number(steps, "--steps", Range(1, teacher_steps, integer=True))
    batch_size = check_number(batch_size, "batch_size", COUNT)
    draws = check_number(draws, "draws", COUNT)
    lr = check_number(lr, "lr", Range(0.0, 10.0, lo_open=True))
    if minutes is not None:
        minutes = check_number(minutes, "--minutes", MINUTES)
    batches = DEFAULT_BATCHES if batches is None else check_number(batches, "--batches", COUNT)
    if save and model.folder is None:
        raise ModelFileError("distill saves beside the model: give a saved model (its folder)")
    lock = FolderLock(model.folder, "stardiff distill").acquire() if save else None
    try:
        return _distill(
            model, steps, table, batches, minutes, batch_size, draws, lr, teacher_steps, seed,
            save, progress,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _distill(
    model, k, table, batches, minutes, batch_size, draws, lr, teacher_steps, seed, save, progress
):
    from tqdm.auto import tqdm

    dev = model.device
    teacher_sha = persist.teacher_digest(model.folder) if save else None
    z, train, val = condition_rows(model, table)
    zt = torch.as_tensor(z, dtype=torch.float32, device=dev)
    builder = _builder(model, zt)
    ok = torch.zeros(len(z), dtype=torch.bool)
    ok[builder.trainable_rows().cpu()] = True
    train = torch.as_tensor(train)[ok[torch.as_tensor(train)]].to(dev)
    val = torch.as_tensor(val)[ok[torch.as_tensor(val)]].to(dev)
    if train.numel() == 0:
        raise ValueError("no row of the table has a present, requestable column to distil on")
    at = student_steps(model.network.schedule, k, teacher_steps)
    student = DistilledHead.of(model.network.head, at).to(dev).train()
    student.requires_grad_(True)
    d = _Distiller(model, student, teacher_steps)
    gen = torch.Generator(device=dev).manual_seed(seed)
    vbatch = None
    if val.numel():  # a fixed validation set: rows, input sets and noise drawn once
        vgen = torch.Generator(device=dev).manual_seed(seed + 1)
        vrows = val[torch.randperm(val.numel(), generator=vgen, device=dev)[:1024]]
        vb = builder(vrows, vgen)
        vnoise = torch.randn(vrows.numel(), draws, 1, generator=vgen, device=dev)
        vbatch = (*d.targets(vb, vnoise), vnoise)
    before = None if vbatch is None else d.final_rms(vbatch[0], vbatch[2], vbatch[1])
    opt = adamw(student.parameters(), lr, 0.0)
    budget = TimeBudget(minutes, lr, lr / 100) if minutes else None
    total = round(budget.seconds) if budget else batches
    bar = tqdm(total=total, disable=not progress, unit="s" if budget else "batch")
    t0, i, losses = time.perf_counter(), 0, []
    while (not budget.done()) if budget else i < batches:
        if budget:
            budget.apply(opt)
        else:
            for g in opt.param_groups:
                g["lr"] = budget_lr(i / batches, lr, lr / 100)
        rows = train[torch.randint(train.numel(), (batch_size,), generator=gen, device=dev)]
        batch = builder(rows, gen)
        noise = torch.randn(rows.numel(), draws, 1, generator=gen, device=dev)
        h, states = d.targets(batch, noise)
        loss = d.loss(h, noise, states)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"distillation loss became {losses[-1]}; lower lr")
        i += 1
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.2e}")
        bar.update(min(total, round(budget.spent())) - bar.n if budget else 1)
    bar.close()
    student.eval().requires_grad_(False)
    after = None if vbatch is None else d.final_rms(vbatch[0], vbatch[2], vbatch[1])
    info = {
        "teacher": {"sampler": "dpm2", "steps": teacher_steps},
        "batches": i,
        "batch_size": batch_size,
        "draws": draws,
        "lr": lr,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "table": str(_table_path(model, table)),
        "final_loss": round(float(np.mean(losses[-50:])), 8),
        # RMS of (student − teacher) samples on validation rows, standardized units: before
        # (the teacher's own head taking the student's K first-order steps) and after
        "validation_rms": {"before": before, "after": after},
    }
    if save:
        persist.save_distilled(model.folder, student.head, student.steps, info, teacher_sha)
    student.info = info
    model.students[k] = student
    model.default_student = k
    return model
