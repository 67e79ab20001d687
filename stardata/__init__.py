"""stardata: reproducible APOGEE DR17 x Gaia DR3 x 2MASS tables, and the token convention."""

from stardata.tokens import PAD, Vocabulary, read_tokens_h5, tokenize, write_tokens_h5


def __getattr__(name: str):
    # build/verify/read_table pull in pyarrow, polars and the connectors: import them on use.
    if name in ("build", "verify", "read_table", "Settings", "Sources"):
        from stardata import release

        return getattr(release, name)
    raise AttributeError(f"module 'stardata' has no attribute {name!r}")


__all__ = [
    "PAD",
    "Settings",
    "Sources",
    "Vocabulary",
    "build",
    "read_table",
    "read_tokens_h5",
    "tokenize",
    "verify",
    "write_tokens_h5",
]
