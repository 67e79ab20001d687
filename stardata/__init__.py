"""stardata: reproducible APOGEE DR17 x Gaia DR3 x 2MASS tables, and the token convention."""

from stardata import _compat
from stardata.errors import BuildError, OfflineMissing, VerifyError
from stardata.tokens import PAD, Vocabulary, read_tokens_h5, tokenize, write_tokens_h5

# build/verify/read_table and the settings pull in pyarrow, polars and the connectors: import
# them on first use.
_LAZY = {
    "build": "stardata.release",
    "verify": "stardata.release",
    "read_table": "stardata.release",
    "Settings": "stardata.release",
    "Sources": "stardata.release",
}


_compat.install()


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stardata' has no attribute {name!r}")


__all__ = [
    "PAD",
    "BuildError",
    "OfflineMissing",
    "Settings",
    "Sources",
    "VerifyError",
    "Vocabulary",
    "build",
    "read_table",
    "read_tokens_h5",
    "tokenize",
    "verify",
    "write_tokens_h5",
]
