"""All-sky inference on HATS catalogues (optional extra: skipped without lsdb)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

if importlib.util.find_spec("lsdb") is None:  # found, not imported: lsdb takes seconds
    pytest.skip("needs the [hats] extra (lsdb)", allow_module_level=True)

from stardata.hats import write_hats  # noqa: E402
from stardiff.infer import load  # noqa: E402
from stardiff.predict import sky  # noqa: E402

from .conftest import bimodal_table, make_recipe  # noqa: E402

# The deepest HEALPix order write_hats may use: these 600-row all-sky catalogues split into
# order-0 partitions whatever it is, and hats-import's alignment costs ~6 s at the default
# order 10 (12·4¹⁰ pixels) against ~0.05 s at order 6.
ORDER = 6


@pytest.fixture(scope="module")
def sky_setup(tmp_path_factory):
    """A 3-column model and a 600-row all-sky HATS catalogue of its inputs (some NaN)."""
    from stardiff.train import fit

    tmp = tmp_path_factory.mktemp("sky")
    table = bimodal_table(1000)
    recipe = make_recipe(tmp, table, name="skym", train={"epochs": 1, "context": 2})
    model = fit(recipe, progress=False, figures=False)
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame(
        {
            "source_id": np.arange(n, dtype=np.int64) * 7 + 11,
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "x": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "z": rng.normal(size=n),
            "other": rng.normal(size=n),
        }
    )
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp / "rows.parquet")
    cat = write_hats(
        tmp / "rows.parquet",
        tmp / "rows",
        pixel_threshold=150,
        sort_column="source_id",
        highest_order=ORDER,
    )
    return model.folder, cat, frame, tmp


def _read(out):
    got = pq.read_table(out / "dataset").to_pandas()
    return got.sort_values("source_id").reset_index(drop=True)


def test_predict_catalog_matches_direct_sampling_per_partition(sky_setup):
    folder, cat, frame, tmp = sky_setup
    out = sky.predict_catalog(
        load(folder),
        cat,
        ["y"],
        tmp / "pred-sync",
        n=64,
        seed=5,
        scheduler="synchronous",
        progress=False,
    )
    got = _read(out)
    assert len(got) == len(frame) and list(got.source_id) == sorted(frame.source_id)
    # the same numbers, partition by partition, straight from the model
    import lsdb

    model = load(folder)
    rows = lsdb.open_catalog(cat)
    for pixel in rows.get_healpix_pixels():
        part = rows.get_partition(pixel.order, pixel.pixel).compute()
        given = {c: part[c].to_numpy(dtype=float, na_value=np.nan) for c in ("x", "z")}
        seed = sky._partition_seed(5, pixel)
        want = sky._frame_predictions(model, given, ["y"], 64, (0.16, 0.5, 0.84), seed, None, None)
        sub = got.set_index("source_id").loc[part["source_id"].to_numpy()]
        np.testing.assert_array_equal(sub["y_median"].to_numpy(), want["y_median"])
        np.testing.assert_array_equal(sub["y_q84"].to_numpy(), want["y_q84"])
    assert (got["y_q16"] <= got["y_median"]).all() and (got["y_median"] <= got["y_q84"]).all()
    assert (got["y_std"] > 0).all()


def test_predict_catalog_output_opens_as_hats(sky_setup):
    import lsdb
    import polars as pl

    folder, cat, frame, tmp = sky_setup
    out = tmp / "pred-sync"
    if not out.exists():
        sky.predict_catalog(load(folder), cat, ["y"], out, n=64, seed=5, scheduler="synchronous")
    assert lsdb.open_catalog(out).compute().shape[0] == len(frame)
    assert (
        pl.scan_parquet(out / "dataset" / "**" / "*.parquet").select(pl.len()).collect().item()
        == 600
    )


def test_resume_after_interruption_finishes_only_what_is_left(sky_setup, monkeypatch):
    folder, cat, frame, tmp = sky_setup
    full = sky.predict_catalog(
        load(folder),
        cat,
        ["y"],
        tmp / "pred-full",
        n=32,
        seed=1,
        scheduler="synchronous",
        progress=False,
    )
    real = sky._frame_predictions
    calls = []

    def dies_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sky, "_frame_predictions", dies_on_third)
    out = tmp / "pred-killed"
    with pytest.raises(KeyboardInterrupt):
        sky.predict_catalog(load(folder), cat, ["y"], out, n=32, seed=1, scheduler="synchronous")
    assert not (out / "hats.properties").exists()
    monkeypatch.setattr(sky, "_frame_predictions", real)
    calls.clear()
    counted = []
    monkeypatch.setattr(
        sky, "_frame_predictions", lambda *a, **k: counted.append(1) or real(*a, **k)
    )
    sky.predict_catalog(
        load(folder), cat, ["y"], out, n=32, seed=1, scheduler="synchronous", progress=False
    )
    n_parts = len(load_cat(cat).get_healpix_pixels())
    assert len(counted) == n_parts - 2  # two partitions were finished before the kill
    pd.testing.assert_frame_equal(_read(out), _read(full))
    with pytest.raises(FileExistsError, match="finished"):
        sky.predict_catalog(load(folder), cat, ["y"], out, n=32, seed=1, scheduler="synchronous")


def load_cat(path):
    import lsdb

    return lsdb.open_catalog(path)


def test_other_settings_on_an_unfinished_run_are_refused(sky_setup, monkeypatch):
    folder, cat, frame, tmp = sky_setup
    out = tmp / "pred-other"

    def dies(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sky, "_frame_predictions", dies)
    with pytest.raises(KeyboardInterrupt):
        sky.predict_catalog(load(folder), cat, ["y"], out, n=32, seed=1, scheduler="synchronous")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="other settings.*seed"):
        sky.predict_catalog(load(folder), cat, ["y"], out, n=32, seed=2, scheduler="synchronous")


def test_bad_inputs_are_one_line_errors(sky_setup):
    folder, cat, frame, tmp = sky_setup
    with pytest.raises(KeyError, match="unknown request column"):
        sky.predict_catalog(load(folder), cat, ["nope"], tmp / "e1", scheduler="synchronous")
    with pytest.raises(FileNotFoundError, match="not a HATS catalogue"):
        sky.predict_catalog(
            load(folder), tmp / "rows.parquet", ["y"], tmp / "e2", scheduler="synchronous"
        )
    with pytest.raises(KeyError, match="no column"):
        sky.predict_catalog(load(folder), cat, ["y"], tmp / "e3", keep=["gaia_id", "ra", "dec"])
    with pytest.raises(ValueError, match="quantiles"):
        sky.predict_catalog(load(folder), cat, ["y"], tmp / "e4", quantiles=[0.5, 1.5])


def test_two_worker_local_cluster_loads_the_model_once_per_worker(sky_setup):
    from dask.distributed import Client, LocalCluster

    folder, cat, frame, tmp = sky_setup
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        Client(lc) as client,
    ):
        out = sky.predict_catalog(
            load(folder), cat, ["y"], tmp / "pred-2w", n=64, seed=5, client=client, progress=False
        )
        loads = client.run(lambda: __import__("stardiff.predict.sky").predict.sky._LOADS["count"])
    assert sum(loads.values()) <= 2 and all(v <= 1 for v in loads.values())
    sync = tmp / "pred-sync"
    if not sync.exists():
        sky.predict_catalog(load(folder), cat, ["y"], sync, n=64, seed=5, scheduler="synchronous")
    pd.testing.assert_frame_equal(_read(out), _read(sync))  # workers do not change the numbers


def test_cli_predict_on_a_hats_catalogue_writes_hats(sky_setup, capsys):
    from stardiff.cli import main

    folder, cat, frame, tmp = sky_setup
    out = tmp / "pred-cli"
    args = ["predict", str(folder), str(cat), "--request", "y", "-n", "16", "--quiet"]
    rc = main([*args, "--out", str(out), "--scheduler", "synchronous"])
    assert rc == 0
    got = _read(out)
    assert len(got) == len(frame) and {"y_median", "y_std", "y_q50"} <= set(got.columns)
    rc = main([*args, "--out", str(tmp / "pred-cli2"), "--samples"])
    assert rc == 2 and "--samples is not available" in capsys.readouterr().err


def test_a_catalogue_that_carries_its_answers_predicts_as_one_without(sky_setup):
    """HATS/Dask path: the requested column in the catalogue is not an input (unless asked)."""
    folder, cat, frame, tmp = sky_setup
    model = load(folder)
    with_y = frame.assign(y=frame["z"])  # answers within the training range
    pq.write_table(pa.Table.from_pandas(with_y, preserve_index=False), tmp / "with_y.parquet")
    cat_y = write_hats(
        tmp / "with_y.parquet",
        tmp / "rows_y",
        pixel_threshold=150,
        sort_column="source_id",
        highest_order=ORDER,
    )
    kw = {"n": 32, "seed": 4, "scheduler": "synchronous", "progress": False}
    want = _read(sky.predict_catalog(model, cat, ["y"], tmp / "p-bare", **kw))
    got = _read(sky.predict_catalog(model, cat_y, ["y"], tmp / "p-with", **kw))
    pd.testing.assert_frame_equal(got, want)
    leaked = _read(
        sky.predict_catalog(model, cat_y, ["y"], tmp / "p-leak", requested_as_inputs=True, **kw)
    )
    assert not np.allclose(leaked["y_median"], want["y_median"])


def test_default_keep_works_on_a_catalogue_without_source_id(sky_setup):
    """A build's stars_hats has gaia_source_id and apogee_id, not source_id."""
    folder, _, frame, tmp = sky_setup
    renamed = frame.rename(columns={"source_id": "gaia_source_id"})
    pq.write_table(pa.Table.from_pandas(renamed, preserve_index=False), tmp / "gaia.parquet")
    cat = write_hats(
        tmp / "gaia.parquet",
        tmp / "rows_g",
        pixel_threshold=150,
        sort_column="gaia_source_id",
        highest_order=ORDER,
    )
    out = sky.predict_catalog(
        load(folder), cat, ["y"], tmp / "p-g", n=16, scheduler="synchronous", progress=False
    )
    got = pq.read_table(out / "dataset").column_names
    assert {"gaia_source_id", "ra", "dec", "y_median"} <= set(got)
