"""Every error a user of ``stardiff`` can cause, in one place; each explains itself in one line.

Bad input (a recipe key, a table column, a model file, an option) raises a ``ValueError``
(or ``KeyError`` for an unknown name) whose message names the key, column, file or option.
The environment's refusals (a full disk, no permission, a folder where a file belongs)
arrive as ``OSError``. :func:`user_message` turns those into the one line the command
prints; any other exception is a programming error and keeps its traceback. The classes
of ``stardata`` that ``stardiff`` lets through (a folder lock held by another process, the
optional HATS packages missing) are re-exported here, so this is the one module to look in.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from stardata.errors import HatsMissing, LockedError

__all__ = [
    "USER_ERRORS",
    "HatsMissing",
    "InputTypeError",
    "LockedError",
    "ModelFileError",
    "OutOfRangeWarning",
    "PredictError",
    "RecipeError",
    "user_message",
]


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the offending key."""


class PredictError(ValueError):
    """A bad table or argument for ``stardiff.predict``, explained in one line."""


class InputTypeError(TypeError, ValueError):
    """A table column of the wrong type (a ``TypeError`` that is also a user's ``ValueError``)."""


class ModelFileError(ValueError):
    """A model folder or checkpoint that cannot be used: truncated, hand-edited, mismatched."""


class OutOfRangeWarning(UserWarning):
    """A given value lies outside the range of the training data (samples there extrapolate)."""


#: Exceptions that are the user's to fix: their message is printed as one line.
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError, LockedError, HatsMissing)

_PARTIAL = re.compile(r"^\.(?P<name>.+)\.part-\d+$")

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
    """The file the user asked for, not the temporary sibling it was written through."""
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
    elif isinstance(exc, OSError) and exc.errno is not None:
        what = _HINTS.get(exc.errno, exc.strerror or str(exc))
        where = exc.filename2 or exc.filename
        text = f"{_final_name(where)}: {what}" if where else what
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message held
