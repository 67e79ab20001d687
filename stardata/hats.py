"""HATS catalogues (HEALPix-partitioned Parquet, read through LSDB): write, open, recognise.

Needs the optional extra ``pip install 'stardiff[hats]'`` (``lsdb``, ``hats``, ``hats-import``,
``dask[distributed]``); everything else in the toolkit works without it.

A table is written as a HATS *collection*: the object catalogue and one margin catalogue
(rows within ``margin_arcsec`` of each partition's edge, copied from the neighbours), so that
a crossmatch against it never loses a pair that straddles a partition edge. Writing uses
``hats-import``'s pipeline on Dask, which works at any size (``lsdb.from_dataframe`` is only
meant for tables that fit in memory); it happens in a temporary folder that is renamed into
place only when complete. The result opens with ``lsdb.open_catalog(path)`` (margin
included) and, being Parquet, with plain ``pyarrow.dataset`` or ``polars.scan_parquet`` on
``path/<name>/dataset``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from stardata.errors import HatsMissing
from stardata.io import replace_folder, temp_sibling

__all__ = ["HatsMissing", "is_hats", "main_catalog", "open_hats", "require_hats", "write_hats"]

EXTRA = "pip install 'stardiff[hats]'"
DEFAULT_MARGIN_ARCSEC = 10.0


def require_hats():
    """Import and return ``lsdb``, or raise :class:`HatsMissing` saying which extra to install."""
    try:
        import hats  # noqa: F401
        import lsdb
    except ImportError as exc:
        raise HatsMissing(
            f"HATS catalogues need the optional packages ({exc.name}): {EXTRA}"
        ) from None
    _cache_compiled_kernels()
    return lsdb


@functools.cache
def _cache_compiled_kernels() -> None:
    """Keep ``hats``' numba kernels compiled on disk, as ``@njit(cache=True)`` would.

    ``hats`` compiles its pixel-alignment kernels on first use in every process (~9 s on a
    2-core CPU) and does not cache them.
    numba's own cache (beside the module, or in the user's cache folder where that is not
    writable; keyed by the source file, so an upgrade recompiles) makes it a one-time cost:
    a crossmatch against a HATS reference in a new process takes ~1.8 s instead of ~10 s.
    Where numba cannot cache (no writable place), the kernels compile as before.
    """
    try:
        import hats.pixel_tree.moc_filter
        import hats.pixel_tree.pixel_alignment
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # another hats layout: nothing to cache, nothing breaks
        return
    for module in (hats.pixel_tree.pixel_alignment, hats.pixel_tree.moc_filter):
        for kernel in vars(module).values():
            if isinstance(kernel, Dispatcher):
                with contextlib.suppress(RuntimeError):  # numba: "no locator available"
                    kernel.enable_caching()


def is_hats(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a local HATS catalogue or collection folder."""
    p = Path(path)
    return p.is_dir() and any(
        (p / n).is_file() for n in ("collection.properties", "hats.properties")
    )


def open_hats(path: str | os.PathLike, *, columns: Sequence[str] | None = None, **kwargs):
    """Open a HATS catalogue or collection (local path or URL) with LSDB.

    A collection brings its default margin along. ``columns=None`` reads every column.
    """
    lsdb = require_hats()
    text = os.fspath(path)
    if "://" not in text and not Path(text).exists():
        raise FileNotFoundError(f"no HATS catalogue at {text}")
    try:
        return lsdb.open_catalog(text, columns=list(columns) if columns else "all", **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"{text}: not a readable HATS catalogue ({exc})") from None


def main_catalog(path: str | os.PathLike) -> str:
    """The object catalogue of a collection (its margin left out), or ``path`` itself."""
    require_hats()
    import hats

    text = os.fspath(path)
    try:
        found = hats.read_hats(text)
    except (ValueError, FileNotFoundError) as exc:
        raise ValueError(f"{text}: not a readable HATS catalogue ({exc})") from None
    if isinstance(found, hats.catalog.CatalogCollection):
        return str(found.main_catalog_dir)
    return text


@contextlib.contextmanager
def _dask_client(client) -> Iterator:
    """The given Dask client, or an in-process one for the import (threads, no dashboard)."""
    if client is not None:
        yield client
        return
    from dask.distributed import Client

    # dashboard_address=None would mean the default port 8787 (a warning when it is taken)
    with Client(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as local:
        yield local


def _row_count(files: Sequence[Path]) -> int:
    """Rows in Parquet files, from their footers (no data read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 0
    for f in files:
        try:
            rows += pq.ParquetFile(f).metadata.num_rows
        except pa.ArrowInvalid as exc:
            raise ValueError(f"write_hats: {f} is not a readable Parquet file ({exc})") from None
    return rows


def write_hats(
    parquet: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    name: str = "stars",
    ra: str = "ra",
    dec: str = "dec",
    margin_arcsec: float = DEFAULT_MARGIN_ARCSEC,
    pixel_threshold: int = 1_000_000,
    highest_order: int = 10,
    sort_column: str | None = None,
    client=None,
    progress: bool = False,
) -> Path:
    """Write Parquet file(s) as a HATS collection (catalogue + margin) at ``out``.

    Parameters
    ----------
    parquet : path or sequence of paths
        Input Parquet files with ``ra``/``dec`` columns (degrees, ICRS, no NaN).
    out : path
        The collection folder to create (replaced atomically if it exists).
    name : str
        Name of the object catalogue inside the collection.
    ra, dec : str
        Position columns.
    margin_arcsec : float
        Width of the margin catalogue; a crossmatch radius (plus any proper-motion shift)
        must not exceed it.
    pixel_threshold : int
        Most rows in one partition.
    highest_order : int
        Deepest HEALPix order of a partition (0 when there are no more rows than
        ``pixel_threshold``: the partitions are then order-0 pixels whatever it is).
    sort_column : str, optional
        Rows are sorted by it inside each partition (e.g. ``source_id``), for stable bytes.
    client : dask.distributed.Client, optional
        Where the import runs; an in-process client by default.
    progress : bool
        Show hats-import's progress bars.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    require_hats()
    from hats_import.collection.arguments import CollectionArguments
    from hats_import.pipeline import pipeline_with_client

    files = (
        [Path(parquet)] if isinstance(parquet, str | os.PathLike) else [Path(p) for p in parquet]
    )
    if not files:
        raise ValueError("write_hats: no input Parquet files")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"write_hats: no Parquet file {f}")
    if not margin_arcsec > 0:
        raise ValueError(f"margin_arcsec must be positive, got {margin_arcsec}")
    if _row_count(files) <= pixel_threshold:
        # every row fits one partition per order-0 pixel: the same catalogue, without
        # hats-import's histogram over 12·4^highest_order pixels (~6 s at order 10)
        highest_order = 0
    out = Path(out)
    tmp = temp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    args = (
        CollectionArguments(
            output_artifact_name=out.name,  # the collection's name, kept through the rename
            output_path=str(tmp),
            progress_bar=progress,
            resume=False,
        )
        .catalog(
            output_artifact_name=name,
            input_file_list=[str(f) for f in files],
            file_reader="parquet",
            ra_column=ra,
            dec_column=dec,
            pixel_threshold=int(pixel_threshold),
            highest_healpix_order=int(highest_order),
            sort_columns=sort_column,
        )
        .add_margin(margin_threshold=float(margin_arcsec), is_default=True)
    )
    try:
        with _dask_client(client) as c:
            pipeline_with_client(args, c)
        replace_folder(tmp / out.name, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
