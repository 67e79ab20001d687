"""stardata.hats: writing HATS collections and loading hats (optional extra: skipped without
lsdb). The crossmatch against a HATS reference is tested in test_crossmatch_hats.py."""

from __future__ import annotations

import importlib.util

import numpy as np
import polars as pl
import pytest

if importlib.util.find_spec("lsdb") is None:  # found, not imported: lsdb takes seconds
    pytest.skip("needs the [hats] extra (lsdb)", allow_module_level=True)

from stardata.hats import write_hats  # noqa: E402


def test_write_hats_of_few_rows_partitions_at_order_0_without_the_deep_histogram(tmp_path):
    """No more rows than pixel_threshold: order-0 partitions, the rows all there (the deep
    histogram that write_hats then skips would give the same partitions)."""
    import healpy
    import lsdb

    rng = np.random.default_rng(2)
    n = 400
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    pl.DataFrame({"source_id": np.arange(n), "ra": ra, "dec": dec}).write_parquet(
        tmp_path / "t.parquet"
    )
    path = write_hats(tmp_path / "t.parquet", tmp_path / "h", pixel_threshold=n, highest_order=10)
    cat = lsdb.open_catalog(path)
    want = set(healpy.ang2pix(1, ra, dec, nest=True, lonlat=True).tolist())
    assert {(p.order, p.pixel) for p in cat.get_healpix_pixels()} == {(0, p) for p in want}
    assert sorted(cat.compute()["source_id"].tolist()) == list(range(n))


def test_write_hats_names_an_unreadable_input(tmp_path):
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"t\.parquet is not a readable Parquet file"):
        write_hats(tmp_path / "t.parquet", tmp_path / "h")
    assert not (tmp_path / "h").exists()


def test_hats_kernels_are_compiled_once_not_in_every_process():
    """hats' numba kernels (~9 s to compile on a 2-core CPU) go to numba's on-disk cache once
    the toolkit has loaded hats, so a new process loads them instead."""
    import hats.pixel_tree.moc_filter
    import hats.pixel_tree.pixel_alignment
    from numba.core.dispatcher import Dispatcher

    from stardata.hats import require_hats

    require_hats()
    kernels = [
        kernel
        for module in (hats.pixel_tree.pixel_alignment, hats.pixel_tree.moc_filter)
        for kernel in vars(module).values()
        if isinstance(kernel, Dispatcher)
    ]
    assert len(kernels) >= 5
    assert all(kernel.stats.cache_path is not None for kernel in kernels)
