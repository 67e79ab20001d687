"""Training: recipe → data → network → AdamW + cosine warm restarts → model folder.

With ``train.time_budget`` (minutes) the run stops at the budget instead of an epoch count
and the learning rate follows the spent fraction of the budget (:mod:`stardiff.train.budget`);
with ``train.ema`` the model folder holds a moving average of the weights
(:mod:`stardiff.train.ema`).

Every random number comes from seeded generators whose states are checkpointed, so
``fit(..., resume=True)`` continues exactly where an interrupted run stopped (on CPU,
bit for bit). The validation set, its masks, diffusion steps and noise are drawn once,
so validation losses compare between epochs.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path

import torch

from stardata.numbers import check_number
from stardiff import persist
from stardiff.devices import resolve_device
from stardiff.errors import ModelFileError, RecipeError
from stardiff.infer import DensityModel
from stardiff.persist import training_folder
from stardiff.recipe import MINUTES, Recipe, load_recipe, override
from stardiff.train.batches import BatchBuilder, column_weights
from stardiff.train.budget import TimeBudget
from stardiff.train.distributed import World, init_world, rank_slice
from stardiff.train.ema import WeightAverage
from stardiff.train.prepared import Prepared, network_for, prepare
from stardiff.train.resume import apply_changes, check_rows, recipe_changes, rows_digest
from stardiff.train.step import accumulate_gradients, noise_and_steps

__all__ = ["METRICS", "METRIC_FIELDS", "TrainingRun", "adamw", "fit"]

METRICS, METRIC_FIELDS = persist.METRICS, persist.METRIC_FIELDS


class TrainingRun:
    """State of one training run (kept small: the loop itself is in :func:`fit`)."""

    def __init__(self, prep: Prepared, out: Path, device: torch.device, world: World | None = None):
        r = prep.recipe
        self.prep, self.out, self.device, self.t = prep, out, device, r.train
        self.world = world = world or World()
        torch.manual_seed(r.train.seed)  # dropout and initialization
        self.net = network_for(r, len(prep.pre.vocab)).to(device)
        self.loss_fn = self.net
        if world.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.loss_fn = DistributedDataParallel(self.net, device_ids=ids)
        if r.train.compile:
            self.loss_fn = torch.compile(self.loss_fn)
        self.opt = adamw(self.net.parameters(), r.train.lr, r.train.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.opt, T_0=r.train.cycle_epochs, eta_min=r.train.lr_min
        )
        z = torch.as_tensor(prep.z, device=device)
        requestable = torch.zeros(z.shape[1], dtype=torch.bool)
        requestable[torch.as_tensor(prep.pre.vocab.ids(prep.requestable) - 1)] = True
        self.builder = BatchBuilder(
            z, requestable, r.train.context, r.train.target_in_context, r.train.subset_power,
            r.train.requests, r.train.inputs_first, (r.train.few_inputs, r.train.few_inputs_max),
            r.train.few_input_requests, column_weights(r.train.request_weights, prep.pre.vocab),
            r.train.all_inputs,
            column_weights(r.train.input_weights, prep.pre.vocab, "train.input_weights"),
            r.train.weights_all_inputs_only,
            None if prep.errors is None else torch.as_tensor(prep.errors, device=device),
            r.train.error_dropout,
        )  # fmt: skip
        rows = torch.as_tensor(prep.train_rows, device=device)
        ok = torch.zeros(z.shape[0], dtype=torch.bool, device=device)
        ok[self.builder.trainable_rows()] = True
        self.train_rows = rows[ok[rows]]
        if self.train_rows.numel() == 0:
            raise ValueError("no training row has a present, requestable column")
        self.gen = torch.Generator(device=device).manual_seed(r.train.seed)
        t = r.train
        self.budget = None
        if t.time_budget:
            self.budget = TimeBudget(t.time_budget, t.lr, t.lr_min, t.warmup)
        self.avg = WeightAverage(self.net, t.ema) if t.ema else None
        self.val = self._fixed_validation(ok)
        self.epoch, self.history = 0, []
        self.changes: list[dict] = []  # recipe changes at resumes (stardiff.train.resume)

    def _fixed_validation(self, ok):
        rows = torch.as_tensor(self.prep.val_rows, device=self.device)
        rows = rows[ok[rows]]
        if rows.numel() == 0:
            return None
        gen = torch.Generator(device=self.device).manual_seed(self.t.seed + 1)
        batch = self.builder(rows, gen)
        return batch, *noise_and_steps(batch, self.net.config.steps, self.t.noise_draws, gen)

    def finished(self, epochs: int) -> bool:
        """Budget spent (with ``train.time_budget``), else ``epochs`` done."""
        return self.budget.done() if self.budget else self.epoch >= epochs

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.t.bf16)

    def train_epoch(self) -> float:
        self.net.train()
        n = self.train_rows.numel()
        perm = self.train_rows[torch.randperm(n, generator=self.gen, device=self.device)]
        step = self.t.batch_size * self.world.size  # the global batch
        n_batches = math.ceil(n / step)
        total = torch.zeros((), device=self.device)  # summed on device: no sync per step
        done = 0
        for i in range(n_batches):
            if self.budget:
                if i and self.budget.done():
                    break  # the budget ends mid-epoch: this epoch is a partial one
                self.budget.apply(self.opt)
            rows = perm[i * step : (i + 1) * step]
            done += rows.numel()
            batch = self.builder(rows, self.gen)
            t, noise = noise_and_steps(
                batch, self.net.config.steps, self.t.noise_draws, self.gen, self.t.step_power
            )
            mine = rank_slice(rows.numel(), self.world)
            part = batch.select(mine)
            self.opt.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks; weight each rank's mean by its share of rows
            total += accumulate_gradients(
                self.loss_fn, part, t[mine], noise[mine],
                weight=(mine.stop - mine.start) * self.world.size / rows.numel(),
                buckets=self.t.length_buckets, autocast=self.autocast, ddp=self.world.active,
            )  # fmt: skip
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.t.grad_clip)
            self.opt.step()
            if self.avg:
                self.avg.update(self.net)
            if not self.budget:
                self.sched.step(self.epoch + (i + 1) / n_batches)
        if self.world.active:
            torch.distributed.all_reduce(total)
        self.rows_done = done  # fewer than all when a time budget ended the epoch
        mean = total.item() / done
        if not math.isfinite(mean):
            raise FloatingPointError(
                f"training loss became {mean} in epoch {self.epoch + 1}; lower train.lr or "
                "add a transform for heavy-tailed columns"
            )
        return mean

    @torch.no_grad()
    def validate(self) -> float | None:
        """The validation loss, or None without validation rows."""
        if self.val is None:
            return None
        net = self.avg.module if self.avg else self.net  # score what the model folder holds
        net.eval()
        batch, t, noise = self.val
        total, B = 0.0, 4096
        for s in range(0, batch.target.shape[0], B):
            sl = slice(s, s + B)
            with self.autocast():
                loss = net(
                    batch.tokens[sl],
                    batch.values[sl],
                    batch.request[sl],
                    batch.target[sl],
                    t[sl],
                    noise[sl],
                    None,
                    None if batch.errors is None else batch.errors[sl],
                )
            total += loss.item() * batch.target[sl].shape[0]
        return total / batch.target.shape[0]

    def model(self) -> DensityModel:
        meta = {
            "recipe": self.prep.recipe.to_dict(),
            "training": {
                "epochs_done": self.epoch,
                "history": self.history[-1:],
                "n_parameters": self.net.n_parameters(),
                "train_rows": int(self.train_rows.numel()),
                "validation_rows": int(self.prep.val_rows.size),
                "test_rows": int(self.prep.test_rows.size),
                "ranges": self.prep.ranges or {},
                **({"changes": self.changes} if self.changes else {}),
            },
        }
        if self.budget:
            meta["training"]["seconds_spent"] = round(self.budget.spent(), 1)
        net = network_for(self.prep.recipe, len(self.prep.pre.vocab))
        net.load_state_dict((self.avg.module if self.avg else self.net).state_dict())
        return DensityModel(
            net, self.prep.pre, self.prep.requestable, meta, self.prep.error_features
        )

    def rng_state(self) -> dict:
        rng = {"data": self.gen.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def checkpoint(self) -> None:
        """Write the model folder's pair, then the checkpoint, then ``metrics.csv``.

        The pair is always a config with its own weights (:func:`stardiff.persist.check_pair`).
        The checkpoint holds everything a resume needs, the weight average too, never the
        model folder's weights: a kill after the pair and before the checkpoint resumes from
        the previous checkpoint and trains the same epoch again, to the same weights.
        """
        if not self.world.main:
            self.world.barrier()
            return
        self.model().save(self.out)
        persist.save_training_state(
            self.out,
            model=self.net,
            optimizer=self.opt,
            rng=self.rng_state(),
            info={
                "epoch": self.epoch,
                "history": self.history,
                "scheduler": self.sched.state_dict(),
                "recipe": self.prep.recipe.to_dict(),
                "rows": rows_digest(self.prep.hashes),
                "changes": self.changes,
                **({"budget": self.budget.state_dict()} if self.budget else {}),
                **({"ema_updates": self.avg.updates} if self.avg else {}),
            },
            ema=self.avg.module if self.avg else None,
        )
        _write_metrics(self.out / METRICS, self.history)
        self.world.barrier()

    def restore(self) -> None:
        """Continue the checkpoint: its states, and the recipe's changes since (or a refusal)."""
        st = persist.load_training_state(self.out)
        info = st.info
        before = info.get("recipe") or _config_recipe(self.out)
        self.changes = list(info.get("changes", []))
        if before is not None:
            self.changes += recipe_changes(before, self.prep.recipe.to_dict(), info["epoch"])
        check_rows(info.get("rows"), rows_digest(self.prep.hashes), self.prep.recipe)
        _load_checkpoint_weights(self.net, st.model, self.out)
        try:
            self.opt.load_state_dict(st.optimizer)
            self.sched.load_state_dict(info["scheduler"])
            self.gen.set_state(st.rng["data"])
            torch.set_rng_state(st.rng["torch"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise ModelFileError(
                f"{self.out / persist.CHECKPOINT}: not a checkpoint of this recipe's run "
                f"({' '.join(str(e).split())[:160]})"
            ) from None
        if "cuda" in st.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(st.rng["cuda"], self.device)
        self.epoch, self.history = info["epoch"], info["history"]
        apply_changes(self.opt, self.sched, self.prep.recipe, self.changes)
        if self.budget and "budget" in info:
            self.budget.load_state_dict(info["budget"])
        if self.avg:
            if st.ema is not None:
                _load_checkpoint_weights(self.avg.module, st.ema, self.out)
            else:  # a checkpoint of an older stardiff: the model folder holds the average
                persist.load_weights(self.out / persist.WEIGHTS, self.avg.module)
            self.avg.updates = int(info.get("ema_updates", 0))


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the device (CUDA; CPU since torch
    2.4): one kernel over every tensor instead of a dozen small operations per parameter, ~6×
    faster a step for the California model on a CPU, where the optimizer was 15 % of a step.
    The same update up to rounding; torch's loop implementation where no fused kernel exists.
    """
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or torch
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _config_recipe(out: Path) -> dict | None:
    """The recipe in the model folder's ``config.json`` (checkpoints of older stardiff)."""
    try:
        return persist.read_json(out / persist.CONFIG).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None


def _load_checkpoint_weights(module: torch.nn.Module, state: dict, out: Path) -> None:
    """Load checkpoint weights; another shape is a one-line error, not a torch traceback."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise ModelFileError(
            f"{out / persist.CHECKPOINT}: its weights do not fit the recipe's [model] "
            f"({first or 'other parameters'}); a changed model cannot resume"
        ) from None


def _write_metrics(path: Path, history: list[dict]) -> None:
    """``metrics.csv``: one row an epoch; an empty ``val_loss`` when there is no validation."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    persist.atomic_write_text(path, buf.getvalue())


def fit(
    recipe: Recipe | str | Path,
    *,
    out: str | Path | None = None,
    epochs: int | None = None,
    minutes: float | None = None,
    device: str | None = None,
    seed: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    figures: bool = True,
) -> DensityModel:
    """Train the model a recipe describes and write its model folder.

    Parameters
    ----------
    recipe : Recipe or path
        A recipe object or a TOML file.
    out, epochs, device, seed
        Override the recipe's ``train.out`` (a relative ``out`` is relative to the working
        directory, as a command-line path), ``train.epochs``, ``train.device``, ``train.seed``.
    minutes : float, optional
        Override ``train.time_budget``: train for this many minutes, the learning-rate
        schedule fitted to them (``epochs`` is then ignored).
    resume : bool
        Continue from ``out/checkpoint`` exactly where it stopped. Recipe keys that changed
        since are refused or recorded (:mod:`stardiff.train.resume`).
    overwrite : bool
        Remove stardiff's own files from a non-empty ``out`` first (otherwise that is an
        error); a folder holding anything else is refused (see :mod:`stardiff.persist.folder`).
    progress : bool
        Show a progress bar with loss and ETA.
    figures : bool
        Write the unconditional and conditional density figures next to the model.

    Returns
    -------
    DensityModel
        The trained model (also saved in ``out``).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if minutes is not None:
        minutes = check_number(minutes, "--minutes", MINUTES, RecipeError)
    recipe = override(
        recipe,
        "train",
        out=None if out is None else os.path.abspath(out),  # a flag: relative to the cwd
        epochs=epochs,
        time_budget=None if minutes is None else float(minutes),
        device=device,
        seed=seed,
    )
    dev = resolve_device(recipe.train.device, "train.device")
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    world, dev = init_world(dev)
    progress = progress and world.main
    prep = prepare(recipe)
    out_dir = recipe.out_dir()
    # rank 0 holds the folder's lock for the whole run: one writer per model folder
    with training_folder(out_dir, world, dev, resume=resume, overwrite=overwrite):
        return _fit(prep, out_dir, dev, world, resume, progress, figures)


def _fit(prep, out_dir, dev, world, resume, progress, figures) -> DensityModel:
    recipe = prep.recipe
    run = TrainingRun(prep, out_dir, dev, world)
    if resume:
        run.restore()  # refused before anything is written
    if world.main:
        persist.save_row_hashes(out_dir, **prep.hashes)
    if progress:
        print(
            f"{recipe.name}: {run.net.n_parameters():,} parameters, "
            f"{run.train_rows.numel():,} training rows, device {dev}"
        )
    _loop(run, recipe.train.epochs, progress)
    model = run.model()
    if not world.main:
        world.barrier()  # rank 0 is writing the model and figures
        return model
    model.save(out_dir)
    if figures and run.finished(recipe.train.epochs):
        from stardiff.figures import training_figures

        training_figures(model, prep, out_dir)
    world.barrier()
    return model


def _loop(run: TrainingRun, epochs: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    budget = run.budget
    total, unit = (round(budget.seconds), "s") if budget else (epochs, "epoch")
    bar = tqdm(total=total, initial=run.epoch, disable=not progress, unit=unit, dynamic_ncols=True)
    if budget:
        budget.start()  # data preparation and set-up do not count
        bar.n = min(total, round(budget.spent()))
    try:
        end = run.finished(epochs)
        while not end:
            t0 = time.perf_counter()
            train_loss = run.train_epoch()
            run.epoch += 1
            val_loss = run.validate()
            dt = time.perf_counter() - t0
            run.history.append(
                {
                    "epoch": run.epoch,
                    "train_loss": round(train_loss, 6),
                    "val_loss": None if val_loss is None else round(val_loss, 6),
                    "lr": run.opt.param_groups[0]["lr"],
                    "seconds": round(dt, 3),
                    "rows_per_s": round(run.rows_done / dt, 1),
                }
            )
            val = "-" if val_loss is None else f"{val_loss:.4f}"
            bar.set_postfix(loss=f"{train_loss:.4f}", val=val, epoch=run.epoch)
            bar.update(min(total, round(budget.spent())) - bar.n if budget else 1)
            end = run.finished(epochs)  # once: the budget must not run out in between
            if run.epoch % run.t.checkpoint_every == 0 or end:
                run.checkpoint()
    finally:
        bar.close()
