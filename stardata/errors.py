"""The errors a user of ``stardata`` can cause: each is explained in one line.

Programming errors are not caught into these; they stay ordinary tracebacks.
"""

from __future__ import annotations

__all__ = ["BuildError", "OfflineMissing", "VerifyError"]


class BuildError(RuntimeError):
    """A build or verification problem (bad setting, bad cache, empty selection), in one line."""


class OfflineMissing(BuildError):
    """``offline=True`` and some inputs are not in the cache."""


class VerifyError(BuildError):
    """An output or stage file does not match the hash or size its manifest records."""
