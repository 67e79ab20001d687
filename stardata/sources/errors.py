"""Error types of the connectors; every one is a problem the user can act on (one line).

Programming errors are never wrapped in these: they stay ordinary Python exceptions, so they
surface as tracebacks.
"""

from __future__ import annotations

__all__ = [
    "SOURCE_ERRORS",
    "ArchiveError",
    "IncompleteDownload",
    "InputFileError",
    "RemoteError",
]


class RemoteError(RuntimeError):
    """A remote service failed (after retries, or with a non-transient error)."""


class ArchiveError(RuntimeError):
    """A remote service answered with an error of its own (e.g. an ADQL error); not retried."""


class IncompleteDownload(OSError):
    """A response body was shorter than announced, or failed its size/hash check."""


class InputFileError(ValueError):
    """An input file (the allStar file, a cached product) is not what it must be; names it."""


#: The connector errors a command-line tool reports as one line.
SOURCE_ERRORS = (RemoteError, ArchiveError, IncompleteDownload, InputFileError)
