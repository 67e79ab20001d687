"""A training budget in minutes: the learning rate as a function of the budget spent.

With ``train.time_budget = M`` the run stops when ``M`` minutes of training (wall clock,
validation and checkpoints included) are spent, and the learning rate is a function of the
spent fraction ``p`` of the budget rather than of the epoch: a linear warm-up over the first
``train.warmup`` of the budget, then one cosine from ``train.lr`` down to ``train.lr_min`` at
``p = 1``. No epoch count has to be guessed, so the schedule ends exactly at the budget on
any machine. The spent seconds are checkpointed: ``--resume`` continues the schedule where the
interrupted run stopped (the time between the interruption and the resume does not count).
Because the number of steps depends on the machine's speed, a budgeted run is not bit-for-bit
reproducible; use ``train.epochs`` for that.
"""

from __future__ import annotations

import math
import time

__all__ = ["TimeBudget", "budget_lr"]

_clock = time.perf_counter  # module-level so tests can substitute a deterministic clock


def budget_lr(p: float, lr: float, lr_min: float, warmup: float = 0.0) -> float:
    """Learning rate at spent fraction ``p`` of the budget.

    Parameters
    ----------
    p : float
        Spent fraction of the budget (clipped to [0, 1]).
    lr, lr_min : float
        Peak and final learning rates.
    warmup : float
        Fraction of the budget of the linear warm-up from ``lr_min`` to ``lr``.
    """
    p = min(max(p, 0.0), 1.0)
    if p < warmup:
        return lr_min + (lr - lr_min) * p / warmup
    q = (p - warmup) / (1.0 - warmup) if warmup < 1.0 else 1.0
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * q))


class TimeBudget:
    """Wall-clock budget of one training run and the learning rate it implies.

    Parameters
    ----------
    minutes : float
        The budget.
    lr, lr_min, warmup : float
        See :func:`budget_lr`.
    """

    def __init__(self, minutes: float, lr: float, lr_min: float, warmup: float = 0.0):
        self.seconds = 60.0 * minutes
        self.lr_args = (lr, lr_min, warmup)
        self.spent_before = 0.0  # seconds spent by earlier (interrupted) sessions of the run
        self._t0 = _clock()

    def start(self) -> None:
        """Start (or restart, after a resume) this session's clock."""
        self._t0 = _clock()

    def spent(self) -> float:
        """Seconds spent so far, earlier sessions included."""
        return self.spent_before + _clock() - self._t0

    def fraction(self) -> float:
        return self.spent() / self.seconds

    def done(self) -> bool:
        return self.fraction() >= 1.0

    def apply(self, optimizer) -> float:
        """Set every parameter group's learning rate for the current moment; return it."""
        lr = budget_lr(self.fraction(), *self.lr_args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"spent": self.spent()}

    def load_state_dict(self, state: dict) -> None:
        self.spent_before = float(state["spent"])
        self.start()
