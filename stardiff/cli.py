"""The ``stardiff`` command: argument parsing only; every command is one API call.

Errors from bad input are printed as one line on stderr with exit status 2 (see
:mod:`stardiff.errors`); Ctrl-C prints "interrupted" with exit status 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stardata.numbers import COUNT, PROCESSES, SEED, Range, number_arg
from stardata.outpaths import check_table_file, claim
from stardiff.errors import GivenValueError
from stardiff.predict import CHUNK
from stardiff.recipe import MINUTES, RANGES

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from stardata.cliargs import OneLineParser

    p = OneLineParser(prog="stardiff", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"stardiff {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train a model from a TOML recipe")
    f.add_argument("recipe", help="recipe file (TOML)")
    f.add_argument("--out", help="model folder (default: the recipe's train.out)")
    f.add_argument("--epochs", type=_arg("train.epochs"), help="override train.epochs")
    f.add_argument(
        "--minutes",
        type=number_arg(Range(0.0, MINUTES.hi, lo_open=True)),
        help="train for this many minutes, the LR schedule fitted to them (train.time_budget)",
    )
    f.add_argument("--device", help="cpu, cuda or cuda:N (override train.device)")
    f.add_argument("--seed", type=number_arg(SEED), help="override train.seed")
    f.add_argument("--resume", action="store_true", help="continue from the folder's checkpoint")
    f.add_argument("--overwrite", action="store_true", help="replace a non-empty model folder")
    f.add_argument("--no-figures", action="store_true", help="skip the density figures")
    f.add_argument("--quiet", action="store_true", help="no progress bar")

    d = sub.add_parser("distill", help="train a few-step student of a model's head")
    d.add_argument("model", help="model folder (the student is written into it)")
    d.add_argument(
        "--steps",
        type=number_arg(Range(1, RANGES["model.steps"].hi, integer=True)),
        default=4,
        help="network evaluations per draw of the student (default 4)",
    )
    d.add_argument("--table", help="rows to distil on (default the model's training table)")
    d.add_argument("--batches", type=number_arg(COUNT), help="optimizer steps (default 1,500)")
    d.add_argument(
        "--minutes",
        type=number_arg(Range(0.0, MINUTES.hi, lo_open=True)),
        help="distil for this many minutes instead, the LR schedule fitted to them",
    )
    d.add_argument("--seed", type=number_arg(SEED), default=0)
    d.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples of requested columns")
    s.add_argument("model", help="model folder")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--given", nargs="*", default=[], metavar="COL=VAL", help="given values (physical units)"
    )
    g.add_argument(
        "--table",
        help="a Parquet, CSV, FITS or VOTable file of given rows (vocabulary columns used)",
    )
    s.add_argument("--request", nargs="+", required=True, metavar="COL")
    s.add_argument("-n", type=number_arg(COUNT), default=1000, help="samples per given row")
    s.add_argument("--joint", action="store_true", help="chain the requests (joint samples)")
    s.add_argument("--seed", type=number_arg(SEED), default=0)
    _sampler_args(s)
    s.add_argument("--device", default="cpu")
    s.add_argument(
        "--out",
        help="write samples to this .parquet or .csv file (default: print a summary)",
    )

    e = sub.add_parser("evaluate", help="score a model on a table: metrics.json and figures")
    e.add_argument("model", help="model folder")
    e.add_argument("--table", required=True, help="Parquet/CSV/tokens.h5 table to score on")
    e.add_argument("--split", default="test", help="test, validation, train or all (default test)")
    e.add_argument("--out", required=True, help="folder for metrics.json and the figures")
    e.add_argument("--recipe", help="take the [evaluate] settings from this recipe instead")
    e.add_argument("--columns", nargs="+", metavar="COL", help="score only these columns")
    e.add_argument("--rows", type=_arg("evaluate.rows"), help="override evaluate.rows")
    e.add_argument(
        "--samples", type=_arg("evaluate.samples_per_row"), help="override evaluate.samples_per_row"
    )
    e.add_argument("--tasks", type=_arg("evaluate.tasks"), help="override evaluate.tasks")
    e.add_argument("--seed", type=number_arg(SEED), default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--no-figures", action="store_true", help="write metrics.json only")
    _sampler_args(e)

    r = sub.add_parser("predict", help="per-row densities of a table (streamed, resumable)")
    r.add_argument("model", help="model folder")
    r.add_argument(
        "catalog",
        help="table of given rows: Parquet, CSV, FITS or VOTable (e.g. a crossmatch output), "
        "or a HATS catalogue "
        "(then the output is a HATS catalogue, computed partition by partition on Dask)",
    )
    r.add_argument("--request", nargs="+", required=True, metavar="COL")
    r.add_argument("-n", type=number_arg(COUNT), default=200, help="draws per row (default 200)")
    r.add_argument(
        "--quantiles",
        nargs="*",
        type=number_arg(Range(0.0, 1.0)),
        default=[0.16, 0.5, 0.84],
        metavar="Q",
    )
    r.add_argument("--samples", action="store_true", help="also write the draws")
    r.add_argument("--keep", nargs="*", metavar="COL", help="input columns to copy through")
    r.add_argument(
        "--requested-as-inputs",
        action="store_true",
        help="also give the model the requested columns the table has (teff given teff: a "
        "self-consistency check, not a prediction)",
    )
    r.add_argument(
        "--chunk-rows", type=number_arg(CHUNK), default=4096, help="rows per window (default 4096)"
    )
    r.add_argument("--seed", type=number_arg(SEED), default=0)
    r.add_argument(
        "--device",
        help="torch device (default cpu; for a HATS catalogue, each worker's GPU if any)",
    )
    r.add_argument(
        "--out",
        required=True,
        help="output .parquet or .csv file (a HATS folder for HATS input)",
    )
    r.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="HATS input: a Dask scheduler address, or 'synchronous' (default: a LocalCluster)",
    )
    r.add_argument(
        "--workers",
        type=number_arg(PROCESSES),
        default=1,
        help="HATS input: LocalCluster processes",
    )
    r.add_argument(
        "--threads", type=number_arg(PROCESSES), default=1, help="HATS input: threads per worker"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    _sampler_args(r)

    i = sub.add_parser("info", help="describe a model folder")
    i.add_argument("model", help="model folder")
    return p


def _version() -> str:
    import stardiff

    return stardiff.__version__


def _arg(key: str):
    """The ``argparse`` type of a flag that overrides the recipe key ``key``: its range."""
    from stardiff.recipe import RANGES

    return number_arg(RANGES[key])


def _parse_given(items: list[str]) -> dict[str, float]:
    given = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--given expects COL=VALUE, got {item!r}")
        try:
            given[name] = float(value)
        except ValueError:
            raise ValueError(f"--given {name}: {value!r} is not a number") from None
    return given


def _given_table(model, path: str):
    """The model's columns of a table file; says on stderr which columns are used and why
    others are not (a model column with a non-numeric cell is an error, never dropped)."""
    from stardiff.tables import read_table, table_columns

    names = table_columns(path)
    keep = [c for c in names if c in model.columns]
    if not keep:
        raise ValueError(
            f"{path}: no column of the model's vocabulary ({', '.join(model.columns)})"
        )
    table = read_table(path, keep)
    ignored = [c for c in names if c not in model.columns]
    note = f"; ignored (not model columns): {', '.join(ignored)}" if ignored else ""
    print(f"{path}: given columns {', '.join(keep)}{note}", file=sys.stderr)
    return {c: table.values[:, j] for j, c in enumerate(keep)}


def _cmd_fit(a) -> int:
    from stardiff.train import fit

    model = fit(
        a.recipe,
        out=a.out,
        epochs=a.epochs,
        minutes=a.minutes,
        device=a.device,
        seed=a.seed,
        resume=a.resume,
        overwrite=a.overwrite,
        progress=not a.quiet,
        figures=not a.no_figures,
    )
    if not a.quiet and model.folder is not None:  # rank 0 alone wrote the model folder
        _describe_fit(model)
    return 0


def _cmd_distill(a) -> int:
    from stardiff.train import distill

    model = distill(
        a.model,
        a.steps,
        table=a.table,
        batches=a.batches,
        minutes=a.minutes,
        seed=a.seed,
        progress=not a.quiet,
    )
    k = model.default_student
    student = model.students[k]
    rms = _distilled_rms(student)
    print(f"wrote {model.folder}/distilled-{k}.safetensors: {k} steps at {student.steps}{rms}")
    print(f"use it with sampler='distilled' (stardiff sample {a.model} --sampler distilled ...)")
    return 0


def _distilled_rms(student) -> str:
    """``; RMS distance … a -> b`` from a student's training facts, or ''."""
    v = student.info.get("validation_rms") or {}
    if v.get("after") is None:
        return ""
    return f"; RMS distance to the 20-step teacher's samples {v['before']:.3g} -> {v['after']:.3g}"


def _describe_fit(model) -> None:
    """Print where the model and its figures are, and each column's unconditional density."""
    out = model.folder
    print(f"model: {out}/ ({model.n_parameters():,} parameters)")
    for png in sorted(out.glob("*.png")):
        print(f"figure: {png}")
    draws = model.sample({}, model.requestable, 2000, seed=0)
    print("unconditional densities (median [16%, 84%]):")
    for c, v in draws.items():
        lo, med, hi = np.percentile(v, [16, 50, 84])
        print(f"  {c:>16}: {med:.4g}  [{lo:.4g}, {hi:.4g}]")


def _cmd_sample(a) -> int:
    from stardiff.infer import load

    multi = a.table is not None
    fmt = None
    if a.out:  # refused before any work: an input, a file not ours, a format unknown
        columns = ["row"] * multi + list(a.request)
        inputs = [a.table] if multi else []
        fmt = check_table_file(a.out, option="--out", inputs=inputs, columns=columns)
    model = load(a.model, a.device)
    given = _given_table(model, a.table) if multi else _parse_given(a.given)
    try:
        return _sample_and_write(model, given, a, multi, fmt)
    except GivenValueError as e:  # rows of the --table file: name it
        raise (e.shifted(0, a.table) if multi else e) from None


def _sample_and_write(model, given, a, multi: bool, fmt: str | None) -> int:
    """Write the draws to ``--out`` (in ``fmt``), or print each column's summary."""
    kw = dict(seed=a.seed, sampler=a.sampler, steps=a.steps)
    if a.out:
        with claim(a.out, "stardiff sample") as out:  # one writer; killed runs' leftovers go
            n = _write_samples(model, given, a, multi, out, kw, fmt)
        print(f"wrote {n} samples to {out}")
        return 0
    if a.joint:
        s = model.sample_joint(given, a.request, a.n, **kw)
    else:
        s = model.sample(given, list(a.request), a.n, **kw)
    for c, v in s.items():
        lo, med, hi = np.percentile(v, [16, 50, 84])
        print(f"{c}: median {med:.6g}  16-84%: [{lo:.6g}, {hi:.6g}]  ({np.size(v)} draws)")
    return 0


def _write_samples(model, given, a, multi: bool, out: Path, kw, fmt: str) -> int:
    """Stream samples to a file of ``fmt``; joint draws chunk by chunk (bounded memory)."""
    import pyarrow as pa

    from stardata.io import LazyWriter
    from stardata.outpaths import mark

    n = 0
    with LazyWriter(out, 65536, fmt, mark("stardiff sample")) as w:
        if a.joint:
            for rows, draws, chunk in model.iter_joint(given, a.request, a.n, **kw):
                nd = draws.stop - draws.start
                cols = {c: v.reshape(-1) for c, v in chunk.items()}
                if multi:
                    cols = {"row": np.repeat(np.arange(rows.start, rows.stop), nd), **cols}
                w.write(pa.table(cols))
                n += len(next(iter(cols.values())))
        else:
            s = model.sample(given, list(a.request), a.n, **kw)
            cols = {c: np.asarray(v).reshape(-1) for c, v in s.items()}
            if multi:
                n_rows = np.asarray(next(iter(s.values()))).shape[0]
                cols = {"row": np.repeat(np.arange(n_rows), a.n), **cols}
            w.write(pa.table(cols))
            n += len(next(iter(cols.values())))
    return n


def _cmd_predict(a) -> int:
    import warnings

    from stardata.hats import is_hats
    from stardiff.infer import load

    with warnings.catch_warnings():  # one line each on stderr, as the errors
        warnings.showwarning = lambda message, *_a, **_k: print(
            f"stardiff predict: warning: {message}", file=sys.stderr
        )
        if is_hats(a.catalog):
            out = _predict_hats(load(a.model), a)  # workers load it on --device
        else:
            out = _predict_file(load(a.model, a.device or "cpu"), a)
    if not a.quiet:
        print(f"wrote {out}")
    return 0


def _predict_hats(model, a):
    from stardiff.predict import predict_catalog

    if a.samples:
        raise ValueError("--samples is not available for a HATS catalogue (summaries only)")
    return predict_catalog(
        model,
        a.catalog,
        a.request,
        a.out,
        n=a.n,
        quantiles=a.quantiles,
        seed=a.seed,
        keep=a.keep,
        requested_as_inputs=a.requested_as_inputs,
        scheduler=a.scheduler,
        workers=a.workers,
        threads=a.threads,
        device=a.device,
        sampler=a.sampler,
        steps=a.steps,
        progress=not a.quiet,
    )


def _predict_file(model, a):
    from stardiff.predict import predict

    return predict(
        model,
        Path(a.catalog),
        a.request,
        n=a.n,
        quantiles=a.quantiles,
        samples=a.samples,
        seed=a.seed,
        sampler=a.sampler,
        steps=a.steps,
        keep=a.keep,
        requested_as_inputs=a.requested_as_inputs,
        out=a.out,
        chunk_rows=a.chunk_rows,
        progress=not a.quiet,
    )


def _sampler_args(p) -> None:
    from stardiff.model import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help=f"ancestral (all T steps), few-step ddim / dpm2 (default {DEFAULT_SAMPLER}) or "
        "distilled (the student `stardiff distill` saved)",
    )
    p.add_argument(
        "--steps",
        type=number_arg(Range(1, RANGES["model.steps"].hi, integer=True)),
        help=f"steps of a few-step sampler (default {DEFAULT_STEPS})",
    )


def _cmd_evaluate(a) -> int:
    from stardiff.evaluate import evaluate

    res = evaluate(
        a.model,
        a.table,
        out_dir=a.out,
        split=a.split,
        recipe=a.recipe,
        columns=a.columns,
        rows=a.rows,
        samples=a.samples,
        tasks=a.tasks,
        seed=a.seed,
        device=a.device,
        figures=not a.no_figures,
        sampler=a.sampler,
        steps=a.steps,
    )
    rows = res.get("row_split", {})
    if rows.get("by") == "content" and res["split"] == "test" and rows.get("train"):
        print(
            f"{a.table}: {rows['train']:,} of {rows['table']:,} rows are training rows of the "
            f"model and {rows.get('validation', 0):,} validation rows; scored the other "
            f"{rows['scored']:,}",
            file=sys.stderr,
        )
    p = res["pooled"]
    if p.get("n"):
        f = lambda k: "n/a" if p.get(k) is None else f"{p[k]:.3f}"  # noqa: E731 (null in JSON)
        print(
            f"{res['split']} rows: CRPS/std {f('crps_norm')}, PIT KS {f('pit_ks')}, "
            f"coverage 68% {f('cover68')}, 95% {f('cover95')}"
        )
    print(f"wrote metrics.json and {len(res.get('figures', []))} figure(s) to {a.out}")
    return 0


def _cmd_info(a) -> int:
    from stardata.io import finite_json
    from stardiff.infer import describe

    print(json.dumps(finite_json(describe(a.model)), indent=2, allow_nan=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stardiff`` command; returns the exit status."""
    import warnings

    from stardata.cliargs import parse
    from stardiff.errors import USER_ERRORS, user_message

    args = parse(_parser(), argv)
    if isinstance(args, int):  # a bad flag (one line, exit 2), --help or --version
        return args
    handler = {
        "fit": _cmd_fit,
        "distill": _cmd_distill,
        "sample": _cmd_sample,
        "evaluate": _cmd_evaluate,
        "info": _cmd_info,
        "predict": _cmd_predict,
    }[args.command]
    try:
        with warnings.catch_warnings():
            # a warning is one line too: "stardiff sample: warning: ..."
            warnings.showwarning = lambda m, c, *_: print(
                f"stardiff {args.command}: warning: {' '.join(str(m).split())}", file=sys.stderr
            )
            return handler(args)
    except KeyboardInterrupt:
        print(f"stardiff {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        msg = user_message(e)
        print(f"stardiff {args.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """End a ``torchrun`` process group the fit joined, so every rank exits cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
