"""All-sky scale: an XP-like catalogue built to HATS, then ``predict`` on 1 and 2 Dask workers.

    python -m benchmarks.sky_scale --rows 10000000 --work /tmp/sky    # needs stardiff[hats]

1. generates ``--rows`` all-sky rows with the paper's 118 columns (float32, 10 % NaN) plus
   ``source_id``, ``ra``, ``dec`` as Parquet files (uniform on the sphere);
2. builds them into a HATS collection with a margin (:func:`stardata.hats.write_hats`, Dask
   ``LocalCluster`` of ``--import-workers`` processes);
3. for the California-size and the paper-size network (untrained weights: speed only), runs
   :func:`stardiff.sky.predict_catalog` with 200 draws of one column on the first
   ``--partitions`` partitions, on a ``LocalCluster`` of 1 and then 2 worker processes
   (1 thread each): rows/s, scaling, peak RSS per worker;
4. prints the arithmetic to the full Gaia XP sample (2.2e8 stars) from those figures and
   from the GPU sampling figure recorded in ``benchmarks/results/gpu-h200-*.jsonl``.

It prints one JSON record per measurement and a summary; ``--record FILE`` appends them.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stardata.release import VOCABULARY

XP_STARS = 2.2e8  # Gaia DR3 sources with XP spectra
NETWORKS = {
    "california": dict(dim=32, n_heads=4, ff_dim=64, n_layers=2, head_width=64, head_layers=3),
    "paper": dict(dim=192, n_heads=24, ff_dim=2048, n_layers=2, head_width=512, head_layers=5),
}
STEPS = {"california": 100, "paper": 120}


def generate(folder: Path, rows: int, per_file: int, seed: int) -> list[Path]:
    """Parquet files of ``rows`` all-sky rows: ids, positions and the 118 model columns."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(VOCABULARY.names)
    files, start = [], 0
    while start < rows:
        n = min(per_file, rows - start)
        cols = {
            "source_id": np.arange(start, start + n, dtype=np.int64),
            "ra": rng.uniform(0.0, 360.0, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))),
        }
        block = rng.standard_normal((n, len(names)), dtype=np.float32)
        block[rng.random(block.shape, dtype=np.float32) < 0.1] = np.nan
        cols.update({c: block[:, i] for i, c in enumerate(names)})
        path = folder / f"part-{len(files):04d}.parquet"
        pq.write_table(pa.table(cols), path, compression="zstd")
        files.append(path)
        start += n
    return files


def model_folder(folder: Path, size: str, sample: Path) -> Path:
    """An untrained model of ``size`` over the 118 columns, standardized on real rows."""
    import torch

    from stardiff.infer import DensityModel
    from stardiff.model import DensityNetwork, NetworkConfig
    from stardiff.transforms import Preprocessor

    torch.manual_seed(0)
    names = list(VOCABULARY.names)
    values = pq.read_table(sample, columns=names).slice(0, 20000)
    values = np.stack([values[c].to_numpy(zero_copy_only=False) for c in names], axis=1)
    pre = Preprocessor.fit(values.astype(np.float64), VOCABULARY, {})
    net = DensityNetwork(NetworkConfig(n_kinds=len(names), steps=STEPS[size], **NETWORKS[size]))
    return DensityModel(net, pre, names).save(folder / f"model-{size}")


def _worker_rss_gb(client) -> dict:
    return client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)


def predict_run(
    model: Path, sky: Path, out: Path, workers: int, pixels, n: int, id_limit: int | None
) -> dict:
    """One ``predict_catalog`` on a fresh LocalCluster; rows/s and peak RSS per worker."""
    import lsdb
    from dask.distributed import Client, LocalCluster

    from stardiff.predict.sky import predict_catalog

    search = lsdb.PixelSearch(pixels)
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        t0 = time.perf_counter()
        predict_catalog(
            model,
            sky,
            ["teff"],
            out,
            n=n,
            client=client,
            search_filter=search,
            filters=[("source_id", "<", id_limit)] if id_limit else None,
            progress=False,
        )
        wall = time.perf_counter() - t0
        rss = _worker_rss_gb(client)
    rows = pq.ParquetDataset(out / "dataset").read(columns=["source_id"]).num_rows
    return {
        "rows": rows,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 2),
        "peak_rss_gb_per_worker": sorted(round(v, 3) for v in rss.values()),
    }


def _gpu_draws_per_s() -> float | None:
    """The paper-size H200 few-step sampling rate recorded earlier (draws/s), if any."""
    for path in sorted(Path(__file__).parent.glob("results/gpu-h200-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("config") == "paper" and rec.get("sample_draws_per_s_ddim20"):
                    return float(rec["sample_draws_per_s_ddim20"])
    return None


def projection(results: dict, n: int) -> dict:
    """Hours to label 2.2e8 stars (one column, ``n`` draws) from the measured rates."""
    out = {}
    for size, by_workers in results.items():
        one = by_workers[1]["rows_per_s"]
        out[size] = {
            "cpu_core_hours": round(XP_STARS / one / 3600, 1),
            "cores_for_one_day": int(np.ceil(XP_STARS / one / 86400)),
            "scaling_2_workers": round(by_workers[2]["rows_per_s"] / one, 2),
        }
    gpu = _gpu_draws_per_s()
    if gpu:
        hours = XP_STARS * n / gpu / 3600
        out["paper_gpu_h200"] = {
            "draws_per_s": gpu,
            "gpu_hours": round(hours, 1),
            "gpus_for_one_day": int(np.ceil(hours / 24)),
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--per-file", type=int, default=500_000)
    p.add_argument("--work", type=Path, required=True, help="scratch folder (many GB)")
    p.add_argument("--pixel-threshold", type=int, default=20_000, help="rows per partition")
    p.add_argument("--import-workers", type=int, default=2)
    p.add_argument("--partitions", type=int, nargs=2, default=(4, 1), metavar=("CAL", "PAPER"))
    p.add_argument("-n", type=int, default=200, help="draws per row")
    p.add_argument("--sizes", nargs="+", default=["california", "paper"], choices=NETWORKS)
    p.add_argument(
        "--every",
        type=int,
        nargs=2,
        default=(1, 20),
        metavar=("CAL", "PAPER"),
        help="predict on about 1 row in K of the chosen partitions (ids are random on the sky)",
    )
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--record", type=Path)
    a = p.parse_args(argv)
    import lsdb
    from dask.distributed import Client, LocalCluster

    from stardata.hats import write_hats

    records = []

    def emit(rec):
        rec = {"benchmark": "sky_scale", "machine": platform.machine(), **rec}
        print(json.dumps(rec), flush=True)
        records.append(rec)

    sky = a.work / "sky"
    if not sky.exists():
        t0 = time.perf_counter()
        files = generate(a.work / "input", a.rows, a.per_file, seed=0)
        t1 = time.perf_counter()
        with (
            LocalCluster(
                n_workers=a.import_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                memory_limit="6GiB",
            ) as cluster,
            Client(cluster) as client,
        ):
            write_hats(files, sky, pixel_threshold=a.pixel_threshold, client=client)
        t2 = time.perf_counter()
        emit(
            {
                "stage": "build",
                "rows": a.rows,
                "columns": len(VOCABULARY.names) + 3,
                "generate_s": round(t1 - t0, 1),
                "hats_import_s": round(t2 - t1, 1),
                "import_rows_per_s": round(a.rows / (t2 - t1), 1),
                "import_workers": a.import_workers,
            }
        )
    if a.build_only:
        return _save(records, a.record)
    cat = lsdb.open_catalog(sky)
    pixels = sorted(cat.get_healpix_pixels())
    results: dict = {}
    for size, k, every in zip(["california", "paper"], a.partitions, a.every, strict=True):
        if size not in a.sizes:
            continue
        model = model_folder(a.work, size, next((a.work / "input").glob("*.parquet")))
        results[size] = {}
        for workers in (1, 2):
            out = a.work / f"pred-{size}-{workers}w"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            limit = a.rows // every if every > 1 else None  # ids are in random sky order
            rec = predict_run(model, sky, out, workers, pixels[: max(k, 2)], a.n, limit)
            results[size][workers] = rec
            emit(
                {
                    "stage": "predict",
                    "network": size,
                    "workers": workers,
                    "draws": a.n,
                    "partitions": max(k, 2),
                    **rec,
                }
            )
    if results and all(len(v) == 2 for v in results.values()):
        emit({"stage": "projection", "stars": XP_STARS, "draws": a.n, **projection(results, a.n)})
    return _save(records, a.record)


def _save(records: list[dict], path: Path | None) -> int:
    if path:
        with path.open("a") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
