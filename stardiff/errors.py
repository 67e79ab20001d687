"""Every error a user of ``stardiff`` can cause, in one place; each explains itself in one line.

Bad input (a recipe key, a table column, a model file, an option) raises a ``ValueError``
(or ``KeyError`` for an unknown name) whose message names the key, column, file or option.
The environment's refusals (a full disk, no permission, a folder where a file belongs)
arrive as ``OSError``. :func:`user_message` turns those into the one line the command
prints; any other exception is a programming error and keeps its traceback. The classes
of ``stardata`` that ``stardiff`` lets through (a folder lock held by another process, the
optional HATS packages missing, an output path refused by :mod:`stardata.outpaths`) are
re-exported here, so this is the one module to look in.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from stardata.errors import HatsMissing, LockedError, OutputError

__all__ = [
    "USER_ERRORS",
    "GivenValueError",
    "HatsMissing",
    "InputTypeError",
    "LockedError",
    "ModelFileError",
    "NonFiniteSamples",
    "OutOfRangeWarning",
    "OutputError",
    "PredictError",
    "RecipeError",
    "user_message",
    "warn_infinite",
]


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the offending key."""


class PredictError(ValueError):
    """A bad table or argument for ``stardiff.predict``, explained in one line."""


class InputTypeError(TypeError, ValueError):
    """A table column of the wrong type (a ``TypeError`` that is also a user's ``ValueError``)."""


class ModelFileError(ValueError):
    """A model folder or checkpoint that cannot be used: truncated, hand-edited, mismatched."""


class GivenValueError(ValueError):
    """A given value the model cannot take, naming its column and row.

    ``rows`` are row numbers of the call that raised it; a caller that handed over a window of a
    larger table makes them absolute with :meth:`shifted` (``stardiff predict`` names the row of
    the file, never of the window).
    """

    def __init__(self, where: str, column: str, rows, why: str):
        self.where, self.column, self.rows, self.why = where, column, [int(r) for r in rows], why
        shown = ", ".join(map(str, self.rows[:5])) + (" …" if len(self.rows) > 5 else "")
        super().__init__(f"{where}: column {column!r}, row(s) {shown}: {why}")

    def shifted(self, offset: int, where: str | None = None) -> GivenValueError:
        """The same error with its rows moved by ``offset`` (and named in ``where``)."""
        return self.mapped([r + offset for r in self.rows], where)

    def mapped(self, rows, where: str | None = None) -> GivenValueError:
        """The same error naming ``rows`` (this error's rows as the caller numbers them)."""
        return type(self)(where or self.where, self.column, rows, self.why)


class NonFiniteSamples(GivenValueError, FloatingPointError):
    """Samples that are not finite: an error, never written (the message says why)."""


class OutOfRangeWarning(UserWarning):
    """A given value lies outside the range of the training data (samples there extrapolate)."""


#: Exceptions that are the user's to fix: their message is printed as one line.
USER_ERRORS = (
    ValueError,
    KeyError,
    OSError,
    FloatingPointError,
    MemoryError,  # what a user asked for does not fit (``-n 1e12``)
    LockedError,
    HatsMissing,
)

_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(part-\d+|lock)$")  # a temporary or a lock of NAME

_HINTS = {
    errno.ENOSPC: "no space left on the device; nothing half-written was kept, free space "
    "and run again",
    errno.EDQUOT: "disk quota exceeded; nothing half-written was kept",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder (give a file name)",
    errno.ENOTDIR: "a path component is a file, not a folder",
}


def _final_name(filename) -> str:
    """The file the user asked for, not the temporary sibling (or lock) it was written through."""
    p = Path(str(filename))
    while m := _PARTIAL.match(p.name):  # a temporary of a temporary too
        p = p.with_name(m["name"])
    return str(p)


def user_message(exc: BaseException) -> str | None:
    """The one-line message for a user-caused failure, or None for a programming error."""
    if not isinstance(exc, USER_ERRORS):
        return None
    if isinstance(exc, KeyError):
        text = str(exc.args[0]) if exc.args else "KeyError"
    elif isinstance(exc, MemoryError):
        text = f"not enough memory ({exc or 'MemoryError'}); ask for fewer draws or rows"
    elif isinstance(exc, OSError) and exc.errno is not None:
        what = _HINTS.get(exc.errno, exc.strerror or str(exc))
        where = exc.filename2 or exc.filename
        text = f"{_final_name(where)}: {what}" if where else what
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message held


def warn_infinite(x, name: str, where: str, offset: int = 0) -> None:
    """Warn that the infinite values of column ``name`` count as missing (first row named)."""
    import warnings

    import numpy as np

    inf = np.flatnonzero(np.isinf(x))
    if inf.size:
        warnings.warn(
            f"{where}: column {name!r} holds {inf.size} infinite value(s), e.g. in row "
            f"{inf[0] + offset}; treated as missing",
            RuntimeWarning,
            stacklevel=3,
        )
