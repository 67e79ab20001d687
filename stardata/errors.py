"""Every error a user of ``stardata`` can cause, in one place; each explains itself in one line.

The connectors (``stardata.sources``), the build, the crossmatch, folder locks and the optional
HATS extra raise these; the ``stardata`` command prints any of :data:`USER_ERRORS` as one line
(exit status 2). Programming errors are never wrapped in these: they stay ordinary tracebacks.
This module imports nothing of the package, so every module may import it.
"""

from __future__ import annotations

__all__ = [
    "SOURCE_ERRORS",
    "USER_ERRORS",
    "ArchiveError",
    "BuildError",
    "CatalogError",
    "HatsMissing",
    "IncompleteDownload",
    "InputFileError",
    "LockedError",
    "OfflineMissing",
    "OutputError",
    "RemoteError",
    "TableError",
    "VerifyError",
]


class BuildError(RuntimeError):
    """A build or verification problem (bad setting, bad cache, empty selection), in one line."""


class OfflineMissing(BuildError):
    """``offline=True`` and some inputs are not in the cache."""


class VerifyError(BuildError):
    """An output or stage file does not match the hash or size its manifest records."""


class LockedError(RuntimeError):
    """Another live process holds a folder's lock (the message names the folder and owner)."""


class HatsMissing(ImportError):
    """The optional HATS/LSDB packages are not installed (one-line message says how)."""


class TableError(ValueError):
    """A table file or in-memory table cannot be read (missing, unknown format, no rows)."""


class CatalogError(TableError):
    """A user's catalogue cannot be crossmatched; the message names the file or column."""


class OutputError(ValueError):
    """An output path the toolkit refuses (:mod:`stardata.outpaths`): it names the path and why
    (an input, something the toolkit did not write, an unknown format)."""


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

#: Everything the ``stardata`` command reports as one line. ``OSError``: a missing, unreadable
#: or unwritable path, or a full disk; it names the path.
USER_ERRORS = (
    BuildError,
    LockedError,
    HatsMissing,
    TableError,
    OutputError,
    OSError,
    *SOURCE_ERRORS,
)
