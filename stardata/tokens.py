"""The token convention shared by ``stardata`` tables and ``stardiff`` models.

A vocabulary is the ordered list of column names ("kinds"). Column ``i`` of the
vocabulary has token id ``i + 1``; id ``0`` is the padding token, which stands for
every missing value (NaN, and ±inf, which are counted and reported).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

PAD = 0

__all__ = [
    "PAD",
    "TokensH5Writer",
    "Vocabulary",
    "read_tokens_h5",
    "tokenize",
    "write_tokens_h5",
]

TOKENS_FORMAT = "stardata-tokens"
TOKENS_FORMAT_VERSION = 1
_RESERVED = ("tokens", "values", "errors", "vocabulary")


class Vocabulary:
    """Column names ↔ token ids ``1..V``; ``0`` is padding.

    Parameters
    ----------
    names : sequence of str
        Column names in vocabulary order. Names must be unique and non-empty.
    """

    def __init__(self, names: Iterable[str]):
        names = list(names)
        if not names:
            raise ValueError("a vocabulary needs at least one column name")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"vocabulary names must be non-empty strings, got {name!r}")
        seen: set[str] = set()
        dupes = [n for n in names if n in seen or seen.add(n)]
        if dupes:
            raise ValueError(f"duplicate column name(s) in vocabulary: {sorted(set(dupes))}")
        self._names = tuple(names)
        self._ids = {name: i + 1 for i, name in enumerate(names)}

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in token order (token id = position + 1)."""
        return self._names

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __iter__(self):
        return iter(self._names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other._names == self._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        return f"Vocabulary({list(self._names)!r})"

    def id(self, name: str) -> int:
        """Token id of one column; an unknown name raises ``KeyError`` listing the valid ones."""
        try:
            return self._ids[name]
        except KeyError:
            raise KeyError(
                f"unknown column {name!r}; valid columns are: {', '.join(self._names)}"
            ) from None

    def ids(self, names: Sequence[str]) -> np.ndarray:
        """Token ids of several columns, as an int64 array."""
        return np.array([self.id(n) for n in names], dtype=np.int64)

    def name(self, token: int) -> str:
        """Column name of a token id (``0`` is padding and has no name)."""
        if not 1 <= int(token) <= len(self._names):
            raise KeyError(f"token id {token} is not in 1..{len(self._names)}")
        return self._names[int(token) - 1]

    def to_dict(self) -> dict:
        """JSON-ready form; ``Vocabulary.from_dict(v.to_dict()) == v``."""
        return {"names": list(self._names), "padding": PAD}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        """The vocabulary that :meth:`to_dict` wrote.

        Parameters
        ----------
        data : dict
            ``{"names": [...], "padding": 0}``; ``padding`` may be left out.

        Returns
        -------
        Vocabulary

        Raises
        ------
        ValueError
            If ``padding`` is not :data:`PAD`.
        """
        if data.get("padding", PAD) != PAD:
            raise ValueError(f"vocabulary padding id must be {PAD}, got {data.get('padding')!r}")
        return cls(data["names"])


def tokenize(values: np.ndarray, *, where: str = "table") -> tuple[np.ndarray, np.ndarray]:
    """Turn an ``(N, V)`` value matrix into ``(tokens, values)`` with NaN → padding.

    Column ``j`` gets token ``j + 1`` where its value is finite; non-finite values
    (NaN, ±inf) become token ``0`` with value ``0``. Infinite values are counted in a
    ``RuntimeWarning`` because they usually mean a bad upstream computation.

    Parameters
    ----------
    values : ndarray, shape (N, V)
        Values in vocabulary column order.
    where : str
        Name used in the warning (a file or table name).

    Returns
    -------
    tokens : ndarray of int16, shape (N, V)
    values : ndarray of float32, shape (N, V)
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D (rows, columns) array, got shape {values.shape}")
    finite = np.isfinite(values)
    n_inf = int(np.isinf(values).sum())
    if n_inf:
        warnings.warn(
            f"{where}: {n_inf} infinite value(s) treated as missing (padding)",
            RuntimeWarning,
            stacklevel=2,
        )
    ids = np.arange(1, values.shape[1] + 1, dtype=np.int16)
    tokens = np.where(finite, ids[None, :], np.int16(PAD)).astype(np.int16)
    out = np.where(finite, values, 0.0).astype(np.float32)
    return tokens, out


class TokensH5Writer:
    """Write ``tokens.h5`` in row blocks, without ever holding the whole table.

    Layout: datasets ``tokens`` (int16, N×V), ``values`` and ``errors`` (float32, N×V),
    ``vocabulary`` (V strings, token order; also the attribute ``vocabulary`` as JSON) and one
    1-D dataset per extra column (ids, split, ...) at the top level, rows in table order.
    Missing values (NaN, ±inf) become token 0 with value 0 and error 0. The file appears only
    when the ``with`` block exits cleanly, and its bytes do not depend on when it was written.

    Parameters
    ----------
    path : path-like
    n_rows : int
    vocabulary : Vocabulary or sequence of str
    extra : mapping of name to dtype, optional
        Per-row extra columns; use ``str`` for text.
    """

    def __init__(self, path, n_rows: int, vocabulary, *, extra=None, chunk_rows: int = 4096):
        import json

        self.vocabulary = (
            vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary(vocabulary)
        )
        self.path = path
        self.n_rows = int(n_rows)
        self.extra = dict(extra or {})
        clash = sorted(set(self.extra) & set(_RESERVED))
        if clash:
            raise ValueError(f"{path}: extra column name(s) {clash} are reserved")
        self.chunk_rows = chunk_rows
        self._json = json.dumps(self.vocabulary.to_dict(), sort_keys=True)
        self._ctx = None
        self._f = None
        self._written = 0
        self._pending: list[dict] = []
        self._pending_rows = 0

    def __enter__(self) -> TokensH5Writer:
        import h5py

        from stardata.io import h5_dataset, h5_file

        self._ctx = h5_file(self.path)
        f = self._f = self._ctx.__enter__()
        n, v = self.n_rows, len(self.vocabulary)
        f.attrs["format"] = TOKENS_FORMAT
        f.attrs["format_version"] = TOKENS_FORMAT_VERSION
        f.attrs["padding"] = PAD
        f.attrs["vocabulary"] = self._json
        h5_dataset(f, "tokens", (n, v), "int16", chunk_rows=self.chunk_rows)
        h5_dataset(f, "values", (n, v), "float32", chunk_rows=self.chunk_rows)
        h5_dataset(f, "errors", (n, v), "float32", chunk_rows=self.chunk_rows)
        names = np.array(self.vocabulary.names, dtype=object)
        h5_dataset(f, "vocabulary", (v,), h5py.string_dtype(), data=names)
        for name, dtype in self.extra.items():
            dt = h5py.string_dtype() if dtype is str else np.dtype(dtype)
            h5_dataset(f, name, (n,), dt, chunk_rows=self.chunk_rows)
        return self

    def write(self, values, errors, extra=None) -> None:
        """Append a block of rows: ``values``/``errors`` of shape (n, V) in vocabulary order."""
        values = np.asarray(values)
        errors = np.asarray(errors)
        v = len(self.vocabulary)
        if values.ndim != 2 or values.shape[1] != v or errors.shape != values.shape:
            raise ValueError(
                f"{self.path}: values, errors must be (n, {v}), got {values.shape}, {errors.shape}"
            )
        n = values.shape[0]
        if self._written + self._pending_rows + n > self.n_rows:
            raise ValueError(f"{self.path}: more than n_rows={self.n_rows} rows written")
        extra = extra or {}
        unknown = set(extra) - set(self.extra)
        missing = set(self.extra) - set(extra)
        if unknown or missing:
            raise KeyError(
                f"{self.path}: extra columns unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        tokens, vals = tokenize(values, where=str(self.path))
        errs = np.where(tokens != PAD, errors, 0.0).astype(np.float32)
        block = {"tokens": tokens, "values": vals, "errors": errs}
        for name, col in extra.items():
            col = np.asarray(col)
            if len(col) != n:
                raise ValueError(f"{self.path}: extra column {name!r} has {len(col)} rows, not {n}")
            block[name] = col.astype(str).astype(object) if self.extra[name] is str else col
        self._pending.append(block)
        self._pending_rows += n
        # Write whole HDF5 chunks only, so the file's bytes do not depend on the block sizes.
        full = (self._pending_rows // self.chunk_rows) * self.chunk_rows
        if full:
            self._flush(full)

    def _flush(self, n: int) -> None:
        merged = {k: np.concatenate([b[k] for b in self._pending]) for k in self._pending[0]}
        start = self._written
        for key, arr in merged.items():
            self._f[key][start : start + n] = arr[:n]
        rest = {k: a[n:] for k, a in merged.items()}
        self._pending = [rest] if len(rest["tokens"]) else []
        self._pending_rows = len(rest["tokens"])
        self._written += n

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self._pending_rows:
            self._flush(self._pending_rows)
        if exc_type is None and self._written != self.n_rows:
            exc = ValueError(f"{self.path}: wrote {self._written} of {self.n_rows} rows")
            self._f.close()
            self._ctx.__exit__(type(exc), exc, None)
            raise exc
        self._f.close()
        return bool(self._ctx.__exit__(exc_type, exc, tb))


def write_tokens_h5(path, values, errors, vocabulary, *, extra=None):
    """Write a whole ``(N, V)`` value/error matrix as ``tokens.h5`` (see :class:`TokensH5Writer`).

    Parameters
    ----------
    path : path-like
    values, errors : ndarray, shape (N, V)
        In vocabulary order; NaN marks a missing value.
    vocabulary : Vocabulary or sequence of str
    extra : mapping of name to 1-D array of length N, optional
        Stored as top-level datasets; string arrays are stored as UTF-8 text.
    """
    extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
    dtypes = {k: (str if v.dtype.kind in "USO" else v.dtype) for k, v in extra.items()}
    with TokensH5Writer(path, np.asarray(values).shape[0], vocabulary, extra=dtypes) as w:
        w.write(values, errors, extra)
    return path


def read_tokens_h5(path, rows=None, *, extra=None):
    """Read ``tokens.h5`` (the one reader of the format, for ``stardata`` and ``stardiff``).

    Parameters
    ----------
    path : path-like
    rows : slice, optional
        Rows to read (default all).
    extra : sequence of str, optional
        Extra per-row columns to read (default all of them; ``[]`` for none).

    Returns
    -------
    tokens : ndarray of int16, shape (N, V)
    values, errors : ndarray of float32, shape (N, V)
    vocabulary : Vocabulary
    extra : dict of str to ndarray
        Extra per-row columns (text columns as ``str`` arrays).

    Raises
    ------
    OSError, ValueError, KeyError
        Naming the file: not HDF5, not a tokens file, or a requested extra column missing.
    """
    import json

    import h5py

    sel = slice(None) if rows is None else rows
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        missing = [n for n in ("tokens", "values", "errors") if n not in f]
        if f.attrs.get("format") != TOKENS_FORMAT or missing:
            raise ValueError(
                f"{path}: not a {TOKENS_FORMAT} file (attribute 'format' or dataset(s) "
                f"{missing or ''} missing)"
            )
        vocab = Vocabulary.from_dict(json.loads(f.attrs["vocabulary"]))
        tokens = f["tokens"][sel]
        values = f["values"][sel]
        errors = f["errors"][sel]
        have = [n for n in f if n not in _RESERVED]
        names = have if extra is None else list(extra)
        absent = [n for n in names if n not in have]
        if absent:
            raise KeyError(
                f"{path}: no per-row column {absent[0]!r}; it has: {', '.join(have) or 'none'}"
            )
        out = {}
        for name in names:
            ds = f[name]
            col = ds[sel]
            if h5py.check_string_dtype(ds.dtype) is not None:
                col = np.array([c.decode() if isinstance(c, bytes) else c for c in col], dtype=str)
            out[name] = col
    return tokens, values, errors, vocab, out
