"""All-sky inference: label densities for every row of a HATS catalogue, on Dask.

:func:`predict_catalog` maps a trained model over a HATS catalogue partition by partition
(LSDB's ``map_partitions`` with an explicit ``meta``, so the function never runs on empty
stand-ins) and writes a HATS catalogue of medians, robust stds and quantiles. Each worker
process loads the model once (a per-process cache), not once per partition, and uses its GPU
when it has one. Each partition's draws are seeded from ``seed`` and the partition's HEALPix
pixel alone, so the result does not depend on how many workers there are or in which order
they run. An interrupted run resumes partition by partition: the output folder records the
finished partitions (LSDB's resumable writer) and the settings they were made with.

Needs the optional extra ``pip install 'stardiff[hats]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from stardata.hats import is_hats, main_catalog, open_hats, require_hats
from stardata.io import read_json, sha256_file, write_json
from stardata.locks import FolderLock
from stardata.numbers import PROCESSES, check_number
from stardata.outpaths import input_overlap
from stardiff.errors import PredictError
from stardiff.model import ROW_BLOCK
from stardiff.predict.statistics import draw_statistics, statistics_columns
from stardiff.predict.windows import KEEP_BY_DEFAULT, check_counts, error_inputs, input_columns

__all__ = ["DEFAULT_QUANTILES", "predict_catalog"]

DEFAULT_QUANTILES = (0.16, 0.5, 0.84)
SETTINGS = "stardiff_predict.json"  # beside the catalogue's own files, in the output folder

# one loaded model per (folder, device) in each worker process
_MODELS: dict[tuple[str, str], object] = {}
_LOADS = {"count": 0}


def _worker_model(folder: str, device: str | None, threads: int | None, loader):
    """The model for this worker process, loaded on first use with ``loader(folder, device)``."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (folder, device)
    model = _MODELS.get(key)
    if model is None:
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        model = loader(folder, device=device)
        _MODELS[key] = model
        _LOADS["count"] += 1
    return model


def _partition_seed(seed: int, pixel) -> int:
    """A seed from the run's seed and the partition's HEALPix pixel only."""
    state = np.random.SeedSequence([int(seed), int(pixel.order), int(pixel.pixel)])
    return int(state.generate_state(1, dtype=np.uint32)[0])


def _frame_predictions(
    model, given: dict, request, n, quantiles, seed, sampler, steps, errors=None
) -> dict:
    """The same per-row statistics as ``stardiff predict`` writes, for one partition."""
    how = {"seed": seed, "sampler": sampler, "steps": steps, "errors": errors or None}
    draws = model.sample(given, list(request), n, **how)
    rows = len(next(iter(given.values()))) if given else 1
    return draw_statistics(draws, request, rows, n, quantiles)


def _predict_partition(
    frame,
    pixel,
    *,
    folder,
    loader,
    given_columns,
    request,
    n,
    quantiles,
    seed,
    keep,
    device,
    threads,
    sampler,
    steps,
    error_columns=(),
):
    """The function mapped over partitions: keep columns + predictions, same index."""
    import pandas as pd

    out = pd.DataFrame({k: frame[k] for k in keep}, index=frame.index)
    names = statistics_columns(request, quantiles)
    if len(frame) == 0:
        for c in names:
            out[c] = np.zeros(0)
        return out
    model = _worker_model(folder, device, threads, loader)
    given = {c: frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in given_columns}
    errs = {c: frame[e].to_numpy(dtype=np.float64, na_value=np.nan) for c, e in error_columns}
    seed_p = _partition_seed(seed, pixel)
    preds = _frame_predictions(model, given, request, n, quantiles, seed_p, sampler, steps, errs)
    for c in names:
        out[c] = preds[c]
    return out


def _default_keep(cat) -> list[str]:
    """The identifier columns present, then the catalogue's position columns."""
    info = cat.hc_structure.catalog_info
    ra, dec = getattr(info, "ra_column", None) or "ra", getattr(info, "dec_column", None) or "dec"
    ids = [c for c in KEEP_BY_DEFAULT if c in cat.columns]
    return list(dict.fromkeys([*ids, ra, dec]))


@contextlib.contextmanager
def _client(client, scheduler: str | None, workers: int, threads: int) -> Iterator:
    """The caller's client, one connected to ``scheduler``, or a fresh LocalCluster."""
    import dask
    from dask.distributed import Client, LocalCluster

    if client is not None:
        yield client
    elif scheduler == "synchronous":  # one thread, no cluster: tests and debugging
        with dask.config.set(scheduler="synchronous"):
            yield None
    elif scheduler:
        with Client(scheduler) as c:
            yield c
    else:
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=":0",  # a free port: None means the default 8787
                silence_logs=logging.ERROR,  # no "nanny killing worker" lines at a clean close
            ) as cluster,
            Client(cluster) as c,
        ):
            yield c


def _describe(search) -> str | None:
    """A stable description of an LSDB search (its class and plain attributes)."""
    if search is None:
        return None
    plain = {
        k: (str(v) if not isinstance(v, int | float | str | bool) else v)
        for k, v in sorted(vars(search).items())
        if k != "moc"
    }
    return f"{type(search).__name__}({plain})"


def _settings(model_folder: Path, catalog, request, n, quantiles, seed, keep, search) -> dict:
    return {
        "search_filter": _describe(search),
        "model_weights_sha256": sha256_file(model_folder / "model.safetensors"),
        "catalog": os.fspath(catalog),
        "request": list(request),
        "n": int(n),
        "quantiles": [float(q) for q in quantiles],
        "seed": int(seed),
        "keep": list(keep),
    }


def _check_resume(out: Path, settings: dict) -> None:
    """Refuse an ``out`` that holds a finished run, another run's settings or other files."""
    if not out.exists() or not any(p.name != FolderLock.NAME for p in out.iterdir()):
        return
    if (out / "hats.properties").exists():
        raise FileExistsError(f"{out} already holds a finished catalogue; choose another --out")
    if not (out / SETTINGS).exists():
        raise FileExistsError(f"{out} is not empty and is not an unfinished stardiff predict run")
    before = read_json(out / SETTINGS)
    if before != settings:
        diff = sorted(k for k in settings if before.get(k) != settings[k])
        raise ValueError(f"{out}: an unfinished run with other settings ({', '.join(diff)})")


def predict_catalog(
    model,
    catalog: str | os.PathLike,
    request: Sequence[str],
    out: str | os.PathLike,
    *,
    n: int = 200,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    seed: int = 0,
    keep: Sequence[str] | None = None,
    client=None,
    scheduler: str | None = None,
    workers: int = 1,
    threads: int = 1,
    device: str | None = None,
    search_filter=None,
    filters: Sequence[tuple] | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    progress: bool = True,
    requested_as_inputs: bool = False,
) -> Path:
    """Predict ``request`` for every row of a HATS catalogue and write a HATS catalogue.

    Parameters
    ----------
    model : stardiff.DensityModel
        A model loaded from its folder (``stardiff.load(folder)``); every worker loads the same
        folder once (it must be readable by every worker).
    catalog : path or URL
        A HATS catalogue or collection holding (some of) the model's columns.
    request : sequence of str
        Columns to predict.
    out : path
        Output folder (a HATS catalogue). An unfinished run there with the same settings is
        resumed; a finished one is never overwritten.
    n : int
        Draws per row and column.
    quantiles : sequence of float
        Quantiles to write besides the median and robust std.
    seed : int
        Run seed; each partition's seed derives from it and the partition's pixel.
    keep : sequence of str, optional
        Catalogue columns copied to the output (must include the position columns). Default:
        the identifier columns present (``source_id``, ``gaia_source_id``, ``apogee_id``,
        ``name``) and the catalogue's position columns, as a build's ``stars_hats`` has them.
    client : dask.distributed.Client, optional
        Run on this client. Else ``scheduler``: an address such as ``tcp://host:8786``, or
        ``"synchronous"`` for Dask's single-threaded scheduler in this process. Else a
        ``LocalCluster`` of ``workers`` processes × ``threads`` threads.
    device : str, optional
        Torch device on each worker; default its GPU when it has one, else CPU.
    search_filter : lsdb search, optional
        Predict only part of the sky, e.g. ``lsdb.ConeSearch(ra, dec, radius_arcsec)`` or
        ``lsdb.PixelSearch(pixels)``.
    sampler, steps : optional
        As :meth:`stardiff.DensityModel.sample` (default: the model's).
    filters : list of tuples, optional
        Row filters applied when reading (Parquet predicates), e.g. ``[("phot_g_mean_mag",
        "<", 17.0)]``.
    progress : bool
        Show a progress bar per partition written.
    requested_as_inputs : bool
        Also give the model the requested columns where the catalogue has them ("teff given
        teff"); off by default, as on every path
        (:func:`stardiff.predict.windows.input_columns`).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    if getattr(model, "folder", None) is None:
        raise ValueError("predict_catalog needs a model loaded from (or saved to) a folder")
    folder = Path(model.folder).resolve()
    request = list(request)
    unknown = [c for c in request if c not in model.columns]
    if unknown:
        raise KeyError(
            f"unknown request column(s) {unknown}; the model knows {list(model.columns)}"
        )
    n, seed, _ = check_counts(n, seed, ROW_BLOCK)
    workers = check_number(workers, "workers", PROCESSES, PredictError)
    threads = check_number(threads, "threads", PROCESSES, PredictError)
    require_hats()  # after the argument checks: a bad argument is named without the extra too
    hit = input_overlap(out, [catalog])
    if hit is not None:
        raise PredictError(f"out {out} overlaps the input catalogue {hit}; write it elsewhere")
    if not all(0 < q < 1 for q in quantiles):
        raise ValueError(f"quantiles must lie in (0, 1), got {list(quantiles)}")
    if "://" not in os.fspath(catalog) and not is_hats(catalog):
        raise FileNotFoundError(f"{catalog}: not a HATS catalogue (no hats.properties)")
    # partitions only: margin rows are copies of neighbours' rows and need no prediction
    source = main_catalog(catalog)
    cat = open_hats(source)
    available = set(cat.columns)
    keep = _default_keep(cat) if keep is None else list(keep)
    missing = [k for k in keep if k not in available]
    if missing:
        raise KeyError(f"{catalog}: no column(s) {missing} to keep (has {sorted(available)})")
    used = input_columns(model.columns, list(cat.columns), request, requested_as_inputs)
    if not used:
        raise ValueError(
            f"{catalog}: none of the model's columns besides the requested ones are in the "
            "catalogue"
        )
    errs = error_inputs(model, list(cat.columns), used)
    cat = open_hats(
        source,
        columns=list(dict.fromkeys([*keep, *used, *errs.values()])),
        search_filter=search_filter,
        filters=[tuple(f) for f in filters] if filters else None,
    )
    out = Path(out)
    settings = _settings(folder, catalog, request, n, quantiles, seed, keep, search_filter)
    settings["filters"] = [list(f) for f in filters] if filters else None
    settings["sampler"], settings["steps"] = sampler, steps
    settings["requested_as_inputs"] = bool(requested_as_inputs)

    meta = cat.meta[list(keep)].copy()
    for c in statistics_columns(request, quantiles):
        meta[c] = np.zeros(0, dtype=np.float64)
    mapped = cat.map_partitions(
        _predict_partition,
        meta=meta,
        include_pixel=True,
        folder=str(folder),
        loader=type(model).load,
        given_columns=tuple(used),
        error_columns=tuple(errs.items()),
        request=request,
        n=int(n),
        quantiles=tuple(float(q) for q in quantiles),
        seed=int(seed),
        keep=tuple(keep),
        device=device,
        threads=threads,
        sampler=sampler,
        steps=steps,
    )
    with FolderLock(out, "stardiff predict"):
        _check_resume(out, settings)
        write_json(out / SETTINGS, settings)
        with _client(client, scheduler, workers, threads):
            mapped.write_catalog(
                out,
                catalog_name=out.name,
                resume=True,  # skips the partitions a killed run finished (none on a fresh run)
                overwrite=False,
                as_collection=False,
                progress_bar=progress,
            )
    return out
