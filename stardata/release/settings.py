"""What a build is made of: the release table, the input sources and every build setting.

:class:`Settings` checks each value's type and range when it is made, so a bad setting stops a
build at once with a one-line :class:`~stardata.errors.BuildError` naming it, never half-way.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from stardata.columns import XP_KINDS
from stardata.errors import BuildError
from stardata.sources.xp import XP_DATA_STRUCTURES
from stardata.split import SPLITS
from stardata.tokens import Vocabulary

__all__ = [
    "COMBINED19_URL",
    "FORMATS",
    "FORMATS_KNOWN",
    "HATS_OUTPUT",
    "OUTPUTS",
    "RELEASES",
    "VOCABULARY",
    "Settings",
    "Sources",
]

# -- the release table -------------------------------------------------------------------------
RELEASES = ("dr17",)
#: The paper's vocabulary (model kinds, in token order).
VOCABULARY = Vocabulary(
    XP_KINDS + ("bprp", "jh", "jk", "teff", "logg", "m_h", "logebv", "g_fakemag")
)
#: The data files of a release folder (besides ``manifest.json``).
OUTPUTS = ("stars.parquet", "tokens.h5")
#: Table formats a build writes: Parquet and HDF5 always; "hats" adds HATS_OUTPUT.
FORMATS = ("parquet", "hdf5")
FORMATS_KNOWN = ("parquet", "hdf5", "hats")
HATS_OUTPUT = "stars_hats"
COMBINED19_URL = "https://zenodo.org/record/3566060/files/combine19.h5"
#: 2MASS ``ph_qual`` letters (Skrutskie et al. 2006, Explanatory Supplement §4.4b).
TMASS_PH_QUAL = "ABCDEFUX"


@dataclass(frozen=True)
class Sources:
    """Where the inputs come from (point these at a local archive for tests and benchmarks)."""

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
        """The folder of mwdust's dust maps that the build uses.

        Returns
        -------
        Path
            :attr:`dust_dir` if set, else ``$DUST_DIR``, else ``~/.mwdust``.
        """
        return Path(self.dust_dir or os.environ.get("DUST_DIR") or Path.home() / ".mwdust")


@dataclass(frozen=True)
class Settings:
    """Every threshold and choice of the build; defaults are LB24's values.

    Recorded whole in ``manifest.json``. Changing a science setting recomputes the local stages
    only; the downloaded and queried inputs are reused.

    Raises
    ------
    BuildError
        Naming the first setting whose type or range is wrong.
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
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _KIND[f.name])
        for names, ok, rule in _RULES:
            values = [getattr(self, n) for n in names]
            if not ok(*values):
                shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=True))
                raise BuildError(f"setting {names[0]}: {rule} (got {shown})")

    def to_dict(self) -> dict:
        """All settings as JSON-ready values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        """Settings from JSON-like values (lists become tuples); unknown names are an error."""
        if not isinstance(data, dict):
            raise BuildError(f"settings must be a mapping of name to value, not {data!r}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise BuildError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**{k: _tuples(v) for k, v in data.items()})


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list | tuple) else v


# -- validation --------------------------------------------------------------------------------
# A field's kind, from its annotation: how its type is checked.
_KINDS = {
    "bool": "bool",
    "int": "int",
    "int | None": "optional int",
    "float": "float",
    "str": "str",
    "tuple[int, ...]": "bits",
    "tuple[tuple[str, float], ...]": "fractions",
}
_KIND = {f.name: _KINDS[str(f.type)] for f in fields(Settings)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_type(name: str, v, kind: str) -> None:
    if kind == "bool":
        ok, want = isinstance(v, bool), "true or false"
    elif kind == "int":
        ok, want = _is_int(v), "an integer"
    elif kind == "optional int":
        ok, want = v is None or _is_int(v), "an integer or null"
    elif kind == "float":
        ok = (_is_int(v) or isinstance(v, float)) and math.isfinite(v)
        want = "a finite number"
    elif kind == "str":
        ok, want = isinstance(v, str), "a string"
    elif kind == "bits":
        ok = isinstance(v, tuple) and all(_is_int(b) and 0 <= b < 64 for b in v)
        want = "a list of bit numbers 0..63"
    else:
        ok = isinstance(v, tuple) and all(
            isinstance(p, tuple)
            and len(p) == 2
            and isinstance(p[0], str)
            and (_is_int(p[1]) or isinstance(p[1], float))
            for p in v
        )
        want = 'a list of [name, fraction] pairs, e.g. [["train", 0.9], ["test", 0.1]]'
    if not ok:
        raise BuildError(f"setting {name} must be {want}, not {v!r}")


def _fractions_ok(pairs) -> bool:
    names = [n for n, _ in pairs]
    return (
        bool(pairs)
        and len(set(names)) == len(names)
        and set(names) <= set(SPLITS)
        and all(0.0 <= f <= 1.0 for _, f in pairs)
        and abs(sum(f for _, f in pairs) - 1.0) <= 1e-9
    )


_Rule = tuple[tuple[str, ...], Callable[..., bool], str]
_RULES: tuple[_Rule, ...] = (
    (("duplicate_extratarg_bit",), lambda b: 0 <= b < 32, "must be a bit number 0..31"),
    (("xp_percentile_lo", "xp_percentile_hi"), lambda a, b: 0 <= a < b <= 100,
     "needs 0 <= xp_percentile_lo < xp_percentile_hi <= 100"),
    (("bprp_min", "bprp_max"), lambda a, b: a < b, "needs bprp_min < bprp_max"),
    (("g_min", "g_max"), lambda a, b: a < b, "needs g_min < g_max"),
    (("g_min",), lambda a: a >= 0, "must be >= 0 (magnitudes)"),
    (("xp_ruwe_max",), lambda v: v > 0, "must be > 0"),
    (("excess_factor_max",), lambda v: v > 0, "must be > 0"),
    (("bp_zp_err",), lambda v: v >= 0, "must be >= 0 (an uncertainty)"),
    (("rp_zp_err",), lambda v: v >= 0, "must be >= 0 (an uncertainty)"),
    (("jhk_prefer",), lambda v: v in ("apogee", "tmass"), "must be 'apogee' or 'tmass'"),
    (("xp_data_structure",), lambda v: v in XP_DATA_STRUCTURES,
     f"must be one of {', '.join(XP_DATA_STRUCTURES)}"),
    (("xp_relevancy_propagate_from",), lambda k: k is None or 0 <= k < len(XP_KINDS) // 2,
     "must be null or 0-54"),
    (("ebv_nonpositive_draws",), lambda v: v in ("drop", "far"), "must be 'drop' or 'far'"),
    (("tmass_bad_ph_qual",), lambda v: set(v) <= set(TMASS_PH_QUAL),
     f"must be letters of 2MASS ph_qual ({TMASS_PH_QUAL})"),
    (("zp_extra_g_min", "zp_extra_g_max"), lambda a, b: a < b,
     "needs zp_extra_g_min < zp_extra_g_max"),
    (("parallax_error_max",), lambda v: v > 0, "must be > 0"),
    (("parallax_ruwe_max",), lambda v: v > 0, "must be > 0"),
    (("ebv_n_draws",), lambda v: v >= 1, "must be >= 1"),
    (("ebv_seed",), lambda v: v >= 0, "must be >= 0"),
    (("ebv_chunk_rows",), lambda v: v >= 1, "must be >= 1"),
    (("split_seed",), lambda v: v >= 0, "must be >= 0"),
    (("split_fractions",), _fractions_ok,
     f"needs unique names from {', '.join(SPLITS)}, fractions in [0, 1] summing to 1"),
    (("chunk_rows",), lambda v: v >= 1, "must be >= 1"),
    (("gaia_chunk_size",), lambda v: v >= 1, "must be >= 1"),
    (("xp_chunk_size",), lambda v: v >= 1, "must be >= 1"),
    (("row_group_size",), lambda v: v >= 1, "must be >= 1"),
    (("retries",), lambda v: v >= 0, "must be >= 0"),
    (("backoff",), lambda v: v >= 0, "must be >= 0 (seconds)"),
    (("timeout",), lambda v: v > 0, "must be > 0 (seconds)"),
)  # fmt: skip
