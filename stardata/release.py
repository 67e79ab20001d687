"""The APOGEE DR17 × Gaia DR3 release: settings, stage order, stage cache and manifest.

:func:`build` runs the stages in order. Each stage writes one Parquet file under
``DATA_DIR/stages/<release>/`` (rows aligned with the deduplicated allStar rows, one row group
per ``chunk_rows`` rows) and a JSON record holding the key of its inputs and settings; a rerun
skips every stage whose key matches, and a stage interrupted half-way resumes from its finished
chunks (and the connectors' own caches). Outputs appear in ``OUT/<release>/`` all at once, only
when every one of them is complete. See :mod:`stardata.inputs` (remote inputs) and
:mod:`stardata.pipeline` (local stages, outputs) for the stages themselves.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from stardata.columns import XP_KINDS
from stardata.io import read_json, sha256_file, write_json
from stardata.tokens import Vocabulary

__all__ = [
    "MANIFEST_VERSION",
    "RELEASES",
    "VOCABULARY",
    "BuildError",
    "OfflineMissing",
    "Settings",
    "Sources",
    "VerifyError",
    "build",
    "read_table",
    "verify",
]

RELEASES = ("dr17",)
MANIFEST_VERSION = 1
#: The paper's vocabulary (model kinds, in token order).
VOCABULARY = Vocabulary(
    XP_KINDS + ("bprp", "jh", "jk", "teff", "logg", "m_h", "logebv", "g_fakemag")
)
OUTPUTS = ("stars.parquet", "tokens.h5")
COMBINED19_URL = "https://zenodo.org/record/3566060/files/combine19.h5"
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


class BuildError(RuntimeError):
    """A build or verification problem, explained in one line."""


class OfflineMissing(BuildError):
    """``offline=True`` and some inputs are not in the cache."""


class VerifyError(BuildError):
    """An output does not match the hash or size its manifest records."""


@dataclass(frozen=True)
class Sources:
    """Where the inputs come from (point these at a mirror for tests and benchmarks)."""

    allstar_url: str = (
        "https://data.sdss.org/sas/dr17/apogee/spectro/aspcap/dr17/synspec_rev1/"
        "allStar-dr17-synspec_rev1.fits"
    )
    allstar_size: int | None = None
    allstar_sha256: str | None = None
    #: SHA-1 the allStar file must have; "published": astroNN's pin of the DR17 file when
    #: ``allstar_url`` is the SDSS URL (see :data:`stardata.sources.apogee.ALLSTAR_SHA1`)
    allstar_sha1: str | None = "published"
    gaia_tap_url: str = "https://gea.esac.esa.int/tap-server/tap"
    gaia_datalink_url: str = "https://gea.esac.esa.int/data-server/data"
    #: DataLink product format: one CSV file per star is parsed a whole request at a time
    #: (about 1 ms a star; FITS/VOTable files are read one by one by astropy, 3-12 ms a star).
    xp_format: str = "csv"
    #: ``$DUST_DIR`` for mwdust's Combined19 map; None: ``$DUST_DIR`` or ``~/.mwdust``.
    dust_dir: str | None = None

    def resolved_dust_dir(self) -> Path:
        return Path(self.dust_dir or os.environ.get("DUST_DIR") or Path.home() / ".mwdust")


@dataclass(frozen=True)
class Settings:
    """Every threshold and choice of the build; defaults are LB24's values.

    Recorded whole in ``manifest.json``. Changing a science setting recomputes the local stages
    only; the downloaded and queried inputs are reused.
    """

    # deduplication (LB24 kept duplicates; this project does not)
    duplicate_extratarg_bit: int = 4
    dedup_gaia_source_id: bool = True
    # XP quality (a star failing any has no XP in the table)
    xp_percentile_lo: float = 0.2
    xp_percentile_hi: float = 99.8
    bprp_min: float = 0.0
    bprp_max: float = 4.0
    g_min: float = 6.0
    g_max: float = 17.5
    xp_ruwe_max: float = 1.4
    excess_factor_max: float = 2.0
    xp_starflag_bits: tuple[int, ...] = (2, 3)
    mask_irrelevant_xp: bool = True
    #: coefficients after this index take its relevancy (LB24: 51, so 52-54 follow 51); None:
    #: each coefficient's own (index < n_relevant_bases)
    xp_relevancy_propagate_from: int | None = 51
    #: DataLink DATA_STRUCTURE asked first (others are tried if the archive rejects it)
    xp_data_structure: str = "INDIVIDUAL"
    # APOGEE labels
    label_bad_aspcap_bits: tuple[int, ...] = (19, 23)
    label_require_starflag_zero: bool = True
    #: LB24 keeps a star without (complete) XP only if STARFLAG == 0 and ASPCAPFLAG == 0
    apogee_only_requires_clean_flags: bool = True
    # photometry
    bp_zp_err: float = 0.0027901700
    rp_zp_err: float = 0.0037793818
    #: J/H/K source used where both have a band ("apogee": allStar's J/H/K, as LB24; "tmass":
    #: Gaia DR3's best 2MASS neighbour); the other fills in where the preferred one is missing
    jhk_prefer: str = "apogee"
    #: 2MASS ph_qual letters whose band is not a measurement (U: upper limit; X: no brightness)
    tmass_bad_ph_qual: str = "UX"
    # parallax
    zp_extra_slope: float = 0.005
    zp_extra_g_min: float = 13.0
    zp_extra_g_max: float = 17.0
    parallax_error_max: float = 0.1
    parallax_ruwe_max: float = 1.4
    # extinction
    ebv_n_draws: int = 1000
    ebv_seed: int = 0
    ebv_chunk_rows: int = 4096
    #: parallax draws <= 0: "drop" (LB24; a star whose own parallax is <= 0 is at 99 kpc) or
    #: "far" (every such draw at 99 kpc)
    ebv_nonpositive_draws: str = "drop"
    # split (LB24: unseeded 90/10 train/test)
    split_seed: int = 0
    split_fractions: tuple[tuple[str, float], ...] = (
        ("train", 0.85),
        ("validation", 0.05),
        ("test", 0.10),
    )
    # processing: memory is about proportional to chunk_rows; chunk_rows also sets the blocks
    # whose extinction draws share a seed, and row_group_size the Parquet layout
    chunk_rows: int = 16384
    gaia_chunk_size: int = 50000
    xp_chunk_size: int = 5000
    row_group_size: int = 32768
    retries: int = 5
    backoff: float = 1.0
    timeout: float = 120.0

    def __post_init__(self) -> None:
        from stardata.sources.xp import XP_DATA_STRUCTURES

        if self.jhk_prefer not in ("apogee", "tmass"):
            raise BuildError(f"jhk_prefer must be 'apogee' or 'tmass', not {self.jhk_prefer!r}")
        if self.xp_data_structure not in XP_DATA_STRUCTURES:
            raise BuildError(
                f"xp_data_structure must be one of {', '.join(XP_DATA_STRUCTURES)}, "
                f"not {self.xp_data_structure!r}"
            )
        k = self.xp_relevancy_propagate_from
        if k is not None and not (isinstance(k, int) and 0 <= k < len(XP_KINDS) // 2):
            raise BuildError(f"xp_relevancy_propagate_from must be null or 0-54, not {k!r}")
        if self.ebv_nonpositive_draws not in ("drop", "far"):
            raise BuildError(
                f"ebv_nonpositive_draws must be 'drop' or 'far', not {self.ebv_nonpositive_draws!r}"
            )

    def to_dict(self) -> dict:
        """All settings as JSON-ready values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise BuildError(f"unknown setting(s): {', '.join(unknown)}")
        conv = {
            k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
            if isinstance(v, list)
            else v
            for k, v in data.items()
        }
        return cls(**conv)


def package_versions() -> dict:
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
    progress : bool
        Show a progress bar per stage.

    Returns
    -------
    Path
        The release folder.

    Raises
    ------
    OfflineMissing, BuildError, stardata.sources.http.RemoteError
        With a one-line message; nothing is written to ``OUT/<release>``.
    """
    from stardata import inputs, pipeline

    if release not in RELEASES:
        raise BuildError(f"unknown release {release!r}; available: {', '.join(RELEASES)}")
    s = settings or Settings()
    src = sources or Sources()
    ctx = pipeline.Context(release, Path(data_dir), s, src, offline=offline, progress=progress)
    if offline:
        missing = inputs.missing_offline(ctx)
        if missing:
            raise OfflineMissing("offline build: missing cached input(s): " + "; ".join(missing))
    final = Path(out_dir) / release
    tmp = Path(out_dir) / f".{release}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        record = pipeline.run(ctx, tmp)
        outputs = {}
        for name in OUTPUTS:
            p = tmp / name
            outputs[name] = {"sha256": sha256_file(p), "size": p.stat().st_size}
        outputs["stars.parquet"]["rows"] = record["row_counts"]["stars"]
        outputs["tokens.h5"]["rows"] = record["row_counts"]["stars"]
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "release": release,
            "inputs": record["inputs"],
            "packages": package_versions(),
            "settings": s.to_dict(),
            "seed": {"split": s.split_seed, "extinction": s.ebv_seed},
            "row_counts": record["row_counts"],
            "cuts": record["cuts"],
            "xp_percentile_bounds": record["xp_percentile_bounds"],
            "photometry": record["photometry"],
            "vocabulary": list(VOCABULARY.names),
            "outputs": outputs,
        }
        write_json(tmp / "manifest.json", manifest)
        _swap_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _swap_into_place(tmp: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def verify(path: str | os.PathLike) -> dict:
    """Re-check the SHA-256 and size of every output a release folder's manifest records.

    Parameters
    ----------
    path : path-like
        ``OUT/<release>`` (or its ``manifest.json``).

    Returns
    -------
    dict
        ``{name: sha256}`` of the checked outputs.

    Raises
    ------
    VerifyError
        Naming each missing or mismatching file.
    """
    path = Path(path)
    folder = path.parent if path.name == "manifest.json" else path
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
        p = folder / name
        if not p.exists():
            problems.append(f"{name} missing")
            continue
        if p.stat().st_size != info.get("size"):
            problems.append(
                f"{name} has {p.stat().st_size} bytes, manifest says {info.get('size')}"
            )
            continue
        digest = sha256_file(p)
        if digest != info.get("sha256"):
            problems.append(
                f"{name} sha256 {digest[:12]}… != manifest {str(info.get('sha256'))[:12]}…"
            )
        checked[name] = digest
    if problems:
        raise VerifyError(f"{folder}: " + "; ".join(problems))
    return checked


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
