"""Numbers a user gives, checked where they enter: one rule for API arguments and CLI flags.

:func:`check_number` refuses NaN, infinities (unless a range says they mean something), values
of the wrong kind and values outside a range, with a one-line message naming the argument, flag
or key; :func:`number_arg` makes the same check an ``argparse`` type, so a flag is refused before
any work starts. Each range is written once, where the number enters, and its docstring or the
command's help says what the ends mean.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

__all__ = ["COUNT", "PROCESSES", "SEED", "Range", "check_number", "number_arg"]


class Range:
    """Where a number means something: ``lo``/``hi`` bounds (None = unbounded), open or closed.

    Parameters
    ----------
    lo, hi : float, optional
        The bounds; ``hi = math.inf`` with ``hi_open=False`` lets infinity through (say what it
        means where the range is used, e.g. "inf = no clipping").
    lo_open, hi_open : bool
        Whether the bound itself is excluded.
    integer : bool
        Whether the number must be an integer (bool is not one).
    """

    def __init__(self, lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.integer = integer

    def contains(self, x: float) -> bool:
        """Whether ``x`` (a number, NaN included) lies in the range."""
        if isinstance(x, float) and math.isnan(x):
            return False
        if math.isinf(x) and not (x == self.hi and not self.hi_open):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)

    def describe(self) -> str:
        """The range in words, e.g. ``an integer in [1, 1024]`` or ``a finite number > 0``."""
        kind = "an integer" if self.integer else "a finite number"
        if self.hi == math.inf and not self.hi_open:
            kind = "a number (inf allowed)"
        lo, hi = self.lo, self.hi
        show = (lambda v: str(int(v))) if self.integer else (lambda v: f"{v:g}")
        if lo is not None and hi is not None and hi != math.inf:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{kind} in {left}{show(lo)}, {show(hi)}{right}"
        if lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {show(lo)}"
        if hi is not None and hi != math.inf:
            return f"{kind} {'<' if self.hi_open else '<='} {show(hi)}"
        return kind


def _as_number(value, integer: bool):
    """``value`` as int/float, or None when it is not a number of that kind."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if integer:
        if isinstance(value, numbers.Integral):
            return int(value)
        return None
    return float(value)


def check_number(value, name: str, where: Range, error: Callable[[str], Exception] = ValueError):
    """``value`` if it is a number of the range's kind inside it, else raise ``error(message)``.

    Parameters
    ----------
    value : object
        What the user gave.
    name : str
        How the user named it: ``--radius``, ``radius``, ``'train.lr'``.
    where : Range
    error : exception class
        Raised with the one-line message (e.g. ``CatalogError``, ``RecipeError``).

    Returns
    -------
    int or float
    """
    x = _as_number(value, where.integer)
    if x is None or not where.contains(x):
        raise error(f"{name} must be {where.describe()}, got {value!r}")
    return x


def number_arg(where: Range, flag: str = "") -> Callable[[str], float]:
    """An ``argparse`` type: the text as a number checked against ``where``.

    The message (argparse prefixes the flag) says what is allowed and what was given.
    """
    import argparse

    def parse(text: str):
        try:
            value = int(text) if where.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {where.describe()}, got {text!r}") from None
        if not where.contains(value):
            raise argparse.ArgumentTypeError(f"must be {where.describe()}, got {text!r}")
        return value

    parse.__name__ = flag or "number"
    return parse


#: Ranges several entry points share: a count of draws or rows (an int64 count beyond 2**40
#: would not fit in memory), a seed (NumPy and torch take 0 to 2**63 - 1), processes or threads.
COUNT = Range(1, 2**40, integer=True)
SEED = Range(0, 2**63 - 1, integer=True)
PROCESSES = Range(1, 4096, integer=True)
