"""Build and verify a release: locks, clean-up after kills, the manifest, the folder swap.

:func:`build` runs the stages in order (:func:`stardata.pipeline.run`). Each stage writes one
Parquet file under ``DATA_DIR/stages/<release>/`` (rows aligned with the deduplicated allStar
rows, one row group per ``chunk_rows`` rows) and a JSON record holding the key of its inputs and
settings and the file's SHA-256; a rerun skips every stage whose key matches and whose file is
intact, and a stage interrupted half-way resumes from its finished chunks (and the connectors'
own caches). Outputs appear in ``OUT/<release>/`` all at once, only when every one of them is
complete (:func:`stardata.io.replace_folder`).

Imports go one way: ``errors``, ``io``, ``tokens`` → ``settings`` → ``context`` →
``stagecache`` → ``inputs``, ``outputs`` → ``pipeline`` → ``runner``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

from stardata.errors import BuildError, HatsMissing, OfflineMissing, VerifyError
from stardata.hats import require_hats, write_hats
from stardata.io import (
    content_digest,
    read_json,
    recover_folder,
    remove_partials,
    replace_folder,
    sha256_file,
    temp_sibling,
    write_json,
)
from stardata.locks import FolderLock
from stardata.outpaths import check_folder
from stardata.release import pipeline
from stardata.release.context import Context
from stardata.release.inputs import missing_offline
from stardata.release.settings import (
    FORMATS,
    FORMATS_KNOWN,
    HATS_OUTPUT,
    OUTPUTS,
    RELEASES,
    VOCABULARY,
    Settings,
    Sources,
)

__all__ = ["MANIFEST_VERSION", "build", "package_versions", "read_table", "verify"]

#: 2: adds "stages" (the sha256 of each stage file the outputs were made from)
MANIFEST_VERSION = 2
_PACKAGES = (
    "numpy",
    "pyarrow",
    "polars",
    "h5py",
    "astropy",
    "astroquery",
    "mwdust",
    "gaiadr3-zeropoint",
    "healpy",
    "scipy",
    "stardiff",
)


def package_versions() -> dict:
    """The versions of Python and of the packages a build's outputs depend on.

    Recorded in every release's ``manifest.json``.

    Returns
    -------
    dict
        ``{"python": "3.11.x", "numpy": ..., ...}``; ``None`` for a package that is not
        installed.
    """
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build(
    release: str = "dr17",
    data_dir: str | os.PathLike = "data/cache",
    out_dir: str | os.PathLike = "data",
    *,
    offline: bool = False,
    settings: Settings | None = None,
    sources: Sources | None = None,
    formats: Sequence[str] = FORMATS,
    progress: bool = True,
) -> Path:
    """Build ``OUT/<release>/{stars.parquet, tokens.h5, manifest.json}``.

    Parameters
    ----------
    release : str
        Only ``"dr17"``.
    data_dir : path-like
        Cache of downloaded inputs and finished stages (reused by later builds).
    out_dir : path-like
        Parent of the release folder.
    offline : bool
        Use only cached inputs; fail at once, listing what is missing.
    settings : Settings, optional
    sources : Sources, optional
        Input URLs (default: the real archives).
    formats : sequence of str
        ``"parquet"`` and ``"hdf5"`` (always written) and optionally ``"hats"``: the table
        also as a HATS collection with a margin, ``stars_hats/`` (needs ``stardiff[hats]``;
        opens with ``lsdb.open_catalog``).
    progress : bool
        Show a progress bar per stage.

    Returns
    -------
    Path
        The release folder.

    Raises
    ------
    OfflineMissing, BuildError, stardata.errors.RemoteError
        With a one-line message; nothing is written to ``OUT/<release>``.
    stardata.errors.LockedError
        Another build holds ``data_dir`` or ``out_dir`` (the message names it and its pid).
    stardata.errors.OutputError
        ``OUT/<release>`` is a file, or a folder holding anything but an earlier release's
        outputs (named): it is never replaced (:mod:`stardata.outpaths`).
    """
    if release not in RELEASES:
        raise BuildError(f"unknown release {release!r}; available: {', '.join(RELEASES)}")
    formats = _formats(formats)
    s = settings or Settings()
    src = sources or Sources()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    final = out_dir / release
    with _locked(data_dir, out_dir):
        ctx = Context(release, data_dir, s, src, offline=offline, progress=progress)
        _clean_up_after_kills(ctx, final)
        check_folder(final, own_entry=_own_entry(final), what="stardata build", option="release")
        if offline:
            missing = missing_offline(ctx)
            if missing:
                msg = "offline build: missing cached input(s): " + "; ".join(missing)
                raise OfflineMissing(msg)
        tmp = temp_sibling(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            result = pipeline.run(ctx, tmp)
            if "hats" in formats:
                _write_hats(tmp, progress)
            write_json(tmp / "manifest.json", _manifest(release, s, result, tmp))
            replace_folder(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _locked(data_dir: Path, out_dir: Path) -> Iterator[None]:
    """One build per data dir and per out dir (one lock when they are the same folder)."""
    with FolderLock(data_dir, "stardata build"):
        if out_dir.resolve() == data_dir.resolve():
            yield
            return
        with FolderLock(out_dir, "stardata build"):
            yield


def _clean_up_after_kills(ctx: Context, final: Path) -> None:
    """Put back a release folder a kill left mid-swap; remove killed runs' temporaries.

    Runs under both locks, so no live writer's temporary file is touched.
    """
    recover_folder(final)
    remove_partials(final.parent)
    folders = [ctx.stage_dir, ctx.raw_dir, *ctx.stage_dir.glob("*.parts")]
    cache = ctx.data_dir / "cache" / ctx.release
    if cache.is_dir():
        folders += [p for p in cache.iterdir() if p.is_dir()]
    for folder in folders:
        remove_partials(folder)


def _own_entry(folder: Path):
    """Whether an entry of a release folder is the build's own: ``manifest.json`` of a release
    and the outputs it lists. A folder holding anything else is never replaced."""
    try:
        manifest = read_json(Path(folder) / "manifest.json")
    except (OSError, ValueError):
        manifest = None
    ok = isinstance(manifest, dict) and "release" in manifest
    outputs = manifest.get("outputs") if ok else None
    names = {"manifest.json", *outputs} if isinstance(outputs, dict) else set()
    return lambda p: p.name in names


def _formats(formats: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(formats) - set(FORMATS_KNOWN))
    if unknown:
        raise BuildError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS_KNOWN)}")
    if "hats" in formats:
        try:
            require_hats()  # before the stages, not after an hour of them
        except HatsMissing as exc:
            raise BuildError(f"--format hats: {exc}") from None
    return tuple(dict.fromkeys([*FORMATS, *formats]))  # parquet and hdf5 are always written


def _write_hats(folder: Path, progress: bool) -> None:
    """``stars_hats/``: stars.parquet as a HATS collection (catalogue + margin)."""
    write_hats(
        folder / "stars.parquet",
        folder / HATS_OUTPUT,
        name="stars",
        sort_column="gaia_source_id",
        progress=progress,
    )


def _manifest(release: str, s: Settings, result: pipeline.BuildResult, folder: Path) -> dict:
    outputs = {}
    names = [*OUTPUTS, *([HATS_OUTPUT] if (folder / HATS_OUTPUT).is_dir() else [])]
    for name in names:
        size, digest = content_digest(folder / name)
        outputs[name] = {"sha256": digest, "size": size, "rows": result.row_counts["stars"]}
    return {
        "manifest_version": MANIFEST_VERSION,
        "release": release,
        "inputs": list(result.inputs),
        "packages": package_versions(),
        "settings": s.to_dict(),
        "seed": {"split": s.split_seed, "extinction": s.ebv_seed},
        "row_counts": result.row_counts,
        "cuts": list(result.cuts),
        "xp_percentile_bounds": result.xp_percentile_bounds,
        "photometry": result.photometry,
        "vocabulary": list(VOCABULARY.names),
        "outputs": outputs,
        "stages": result.stages,
    }


def verify(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Re-check the SHA-256 and size of every output (and stage) a release's manifest records.

    A release folder that a kill left mid-swap is put back first (under the out folder's lock).

    Parameters
    ----------
    path : path-like
        ``OUT/<release>`` (or its ``manifest.json``).
    data_dir : path-like, optional
        The build's data dir: also check that each stage file the outputs were made from is
        intact (matches its own record) and is still the one the manifest names.

    Returns
    -------
    dict
        ``{name: sha256}`` of the checked outputs (and ``"stage NAME"`` of the stages).

    Raises
    ------
    VerifyError
        Naming each missing or mismatching file (and which stage is wrong).
    """
    path = Path(path)
    folder = path.parent if path.name == "manifest.json" else path
    if (folder.parent / f".{folder.name}.old").exists():  # replace_folder's kept copy
        with FolderLock(folder.parent, "stardata verify"):
            recover_folder(folder)
    mpath = folder / "manifest.json"
    if not mpath.exists():
        raise VerifyError(f"{mpath}: no manifest.json (not a stardata release folder)")
    try:
        manifest = read_json(mpath)
    except ValueError as exc:
        raise VerifyError(str(exc)) from None
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise VerifyError(f"{mpath}: manifest lists no outputs")
    problems, checked = [], {}
    for name, info in sorted(outputs.items()):
        digest = _check_file(folder / name, info, name, problems)
        if digest:
            checked[name] = digest
    if data_dir is not None:
        stage_dir = Path(data_dir) / "stages" / str(manifest.get("release"))
        stages = manifest.get("stages")
        if not isinstance(stages, dict) or not stages:
            problems.append("the manifest records no stages (built by an older stardata)")
        for name, info in sorted((stages or {}).items()):
            digest = _check_stage(stage_dir, name, info, problems)
            if digest:
                checked[f"stage {name}"] = digest
    if problems:
        raise VerifyError(f"{folder}: " + "; ".join(problems))
    return checked


def _check_file(p: Path, info: dict, what: str, problems: list[str]) -> str | None:
    """SHA-256 of ``p`` if it has the size and hash ``info`` records; else note the problem."""
    if not p.exists():
        problems.append(f"{what} missing")
        return None
    size, digest = content_digest(p)
    if size != info.get("size"):
        problems.append(f"{what} has {size} bytes, manifest says {info.get('size')}")
        return None
    if digest != info.get("sha256"):
        problems.append(f"{what} sha256 {digest[:12]}… != manifest {str(info.get('sha256'))[:12]}…")
        return None
    return digest


def _check_stage(stage_dir: Path, name: str, info: dict, problems: list[str]) -> str | None:
    p = stage_dir / f"{name}.parquet"
    before = len(problems)
    digest = _check_file(p, info, f"stage {name} ({p})", problems)
    if digest is None and len(problems) > before and p.exists():
        own = stage_dir / f"{name}.json"
        try:
            intact = sha256_file(p) == read_json(own).get("sha256")
        except (OSError, ValueError):
            intact = False
        problems[-1] += (
            " (rebuilt since with other inputs or settings)" if intact else " (corrupted)"
        )
    return digest


def read_table(path: str | os.PathLike, *, columns=None, split: str | None = None):
    """Read ``stars.parquet`` (or a release folder) as a polars DataFrame.

    Parameters
    ----------
    path : path-like
        The Parquet file or ``OUT/<release>``.
    columns : sequence of str, optional
    split : {"train", "validation", "test"}, optional
        Keep only that split.
    """
    import polars as pl

    path = Path(path)
    if path.is_dir():
        path = path / "stars.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    lf = pl.scan_parquet(path)
    if split is not None:
        lf = lf.filter(pl.col("split") == split)
    if columns is not None:
        lf = lf.select(list(columns))
    return lf.collect()
