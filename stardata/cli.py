"""The ``stardata`` command: argument parsing only; every command is one API call.

Problems the user can fix (a bad setting, a missing or damaged input file, an archive that
refuses a request, a folder in use) are printed as one line on stderr (``stardata: error: ...``)
with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from stardata.cliargs import OneLineParser, parse
from stardata.errors import USER_ERRORS

__all__ = ["main"]

_DESCRIPTION = """\
Build the APOGEE DR17 x Gaia DR3 x 2MASS training table of Leung, Bovy & Speagle (2024)
from the public archives, check a built release, and crossmatch your own catalogue to Gaia DR3
with the release's columns."""

_BUILD_EPILOG = """\
examples:
  stardata build                                  # data/dr17/ from the archives (cache: data/cache)
  stardata build --offline                        # only what is cached; lists what is missing
  stardata build --set g_max=17.0 --set split_seed=1
  stardata build --xp-data-structure RAW          # if the archive refuses INDIVIDUAL

Settings (--set NAME=VALUE, or a JSON file with --settings) are listed in docs/stardata.md;
every one is recorded in the release's manifest.json. Interrupted builds resume from the cache."""


_CROSSMATCH_EPILOG = """\
examples:
  stardata crossmatch my_stars.csv --out xm                     # source_id, or ra/dec at J2016.0
  stardata crossmatch plates.fits --ra RA --dec DEC --epoch 1950.0 --out xm
  stardata crossmatch survey.parquet --epoch obs_epoch --reference gaia_hats/ --max-pm 0.5 \\
      --columns match --out xm                                  # a local HATS copy of Gaia DR3

The same options as stardata.crossmatch.crossmatch(...) (docs/crossmatch.md). OUT gets
crossmatch.parquet and manifest.json (and tokens.h5 with --vocabulary, crossmatch_hats/ with
--format hats); it is replaced only once complete."""


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("stardiff")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class _Parser(OneLineParser):
    with_command = False  # "stardata: error: ...", as every other error of the command


def _parser() -> argparse.ArgumentParser:
    from stardata.sources.xp import XP_DATA_STRUCTURES

    p = _Parser(prog="stardata", description=_DESCRIPTION)
    p.add_argument("--version", action="version", version=f"stardata {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="download the inputs and build OUT/RELEASE/ (stars.parquet, tokens.h5, manifest)",
        description="Download (or reuse) the inputs and build the release folder "
        "OUT/RELEASE/ with stars.parquet, tokens.h5 and manifest.json.",
        epilog=_BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--release", default="dr17", help="data release to build (only dr17)")
    b.add_argument(
        "--data-dir",
        default="data/cache",
        metavar="DIR",
        help="where downloads and finished stages are kept between builds (default data/cache)",
    )
    b.add_argument(
        "--out", default="data", metavar="DIR", help="the release folder goes in DIR/RELEASE"
    )
    b.add_argument(
        "--offline", action="store_true", help="use only cached inputs; never contact a server"
    )
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one setting (the value is read as JSON), e.g. --set split_seed=1",
    )
    b.add_argument("--settings", metavar="FILE", help="JSON file of settings (--set wins)")
    b.add_argument(
        "--xp-data-structure",
        choices=XP_DATA_STRUCTURES,
        help="DataLink DATA_STRUCTURE to ask for first (default INDIVIDUAL; the others are "
        "tried if the archive refuses it)",
    )
    b.add_argument("--allstar-url", metavar="URL", help="allStar file URL (default: SDSS)")
    b.add_argument(
        "--allstar-sha1",
        metavar="HEX",
        help="SHA-1 the allStar file must have ('none': no check; default: the published DR17 "
        "value when the URL is SDSS's)",
    )
    b.add_argument("--gaia-tap-url", metavar="URL", help="Gaia archive TAP service")
    b.add_argument("--gaia-datalink-url", metavar="URL", help="Gaia archive DataLink service")
    b.add_argument(
        "--dust-dir", metavar="DIR", help="folder of mwdust's combined19/combine19.h5 map"
    )
    b.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=("parquet", "hdf5", "hats"),
        default=[],
        help="also write this table format (repeatable): 'hats' adds stars_hats/, a HATS "
        "collection with a margin for LSDB (needs stardiff[hats]); Parquet and HDF5 are "
        "always written",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars")

    _crossmatch_parser(sub)

    v = sub.add_parser(
        "verify",
        help="re-check the sizes and hashes a release folder's manifest records",
        description="Re-check every output of a release folder against its manifest.json.",
    )
    v.add_argument("path", help="release folder, e.g. data/dr17")
    v.add_argument(
        "--data-dir",
        help="the build's cache folder: also check the stage files the outputs were made from",
    )
    return p


def _crossmatch_parser(sub) -> None:
    """``stardata crossmatch``: the options of :func:`stardata.crossmatch.crossmatch`."""
    from stardata.crossmatch.run import MAX_PM, RADIUS
    from stardata.numbers import number_arg
    from stardata.sources.xp import XP_DATA_STRUCTURES

    x = sub.add_parser(
        "crossmatch",
        help="match your catalogue to Gaia DR3 and add the release's columns beside its own",
        description="Match each row of CATALOG to Gaia DR3 (by source id, or by position at "
        "its epoch) and write it to OUT with the release build's columns beside its own.",
        epilog=_CROSSMATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    x.add_argument("catalog", help="CSV, FITS, Parquet or VOTable file (every row is kept)")
    x.add_argument("--out", required=True, metavar="DIR", help="output folder")
    key = x.add_argument_group("what to match on (default: a source_id column, else ra/dec)")
    key.add_argument("--source-id", metavar="COL", help="column of Gaia DR3 source ids")
    key.add_argument("--ra", metavar="COL", help="column of right ascensions [deg]")
    key.add_argument("--dec", metavar="COL", help="column of declinations [deg]")
    key.add_argument(
        "--epoch",
        metavar="YEAR|COL",
        help="epoch of the positions: a Julian year (e.g. 2000.0) or a column of them "
        "(default 2016.0, Gaia DR3's)",
    )
    key.add_argument(
        "--radius",
        type=number_arg(RADIUS),
        default=1.0,
        metavar="ARCSEC",
        help="match radius, above 0 and below 180 deg (default 1.0)",
    )
    key.add_argument(
        "--reference",
        metavar="PATH|URL",
        help="Gaia rows to match positions against: a table file (KD-tree) or a HATS "
        "catalogue with a margin, local or a URL (LSDB); default: the Gaia archive",
    )
    key.add_argument(
        "--max-pm",
        type=number_arg(MAX_PM),
        default=11.0,
        metavar="ARCSEC/YR",
        help="largest proper motion an archive or HATS match looks for, 0 to 100 (default 11.0)",
    )
    what = x.add_argument_group("what to write")
    what.add_argument(
        "--columns",
        choices=("derived", "match"),
        default="derived",
        help="the build's derived columns (default; asks the archive) or the match only",
    )
    what.add_argument(
        "--vocabulary",
        nargs="+",
        metavar="NAME",
        help="also write tokens.h5 with these columns, or with a model folder's vocabulary",
    )
    what.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=("parquet", "hats"),
        default=[],
        help="'hats' adds crossmatch_hats/, a HATS collection with a margin (needs "
        "stardiff[hats]); Parquet is always written",
    )
    what.add_argument(
        "--xp-bounds",
        metavar="RELEASE",
        help="apply a release's XP percentile cut: its folder or manifest.json",
    )
    what.add_argument(
        "--no-extinction", action="store_true", help="leave logebv NaN (no dust map needed)"
    )
    run = x.add_argument_group("how to run")
    run.add_argument(
        "--cache-dir",
        default="data/cache/crossmatch",
        metavar="DIR",
        help="the archive queries' chunk cache; a rerun resumes from it "
        "(default data/cache/crossmatch)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one build setting (value read as JSON), e.g. --set chunk_rows=5000",
    )
    run.add_argument("--settings", metavar="FILE", help="JSON file of settings (--set wins)")
    run.add_argument(
        "--xp-data-structure",
        choices=XP_DATA_STRUCTURES,
        help="DataLink DATA_STRUCTURE to ask for first",
    )
    run.add_argument("--gaia-tap-url", metavar="URL", help="Gaia archive TAP service")
    run.add_argument("--gaia-datalink-url", metavar="URL", help="Gaia archive DataLink service")
    run.add_argument(
        "--dust-dir", metavar="DIR", help="folder of mwdust's combined19/combine19.h5 map"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def _epoch(text: str | None) -> float | str | None:
    """``--epoch``: a number is a Julian year, anything else a column name."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _xp_bounds(path: str | None) -> dict | None:
    """A release's ``xp_percentile_bounds``, from its folder or its manifest.json."""
    if path is None:
        return None
    from pathlib import Path

    from stardata.crossmatch import CatalogError

    manifest = Path(path) / "manifest.json" if Path(path).is_dir() else Path(path)
    try:
        with open(manifest, encoding="utf-8") as f:
            bounds = json.load(f).get("xp_percentile_bounds")
    except json.JSONDecodeError as exc:
        raise CatalogError(f"--xp-bounds {manifest}: not valid JSON ({exc})") from None
    if not isinstance(bounds, dict):
        raise CatalogError(f"--xp-bounds {manifest}: no xp_percentile_bounds (not a release?)")
    return bounds


def _crossmatch(args) -> int:
    import stardata
    from stardata.crossmatch import crossmatch

    over = {
        "gaia_tap_url": args.gaia_tap_url,
        "gaia_datalink_url": args.gaia_datalink_url,
        "dust_dir": args.dust_dir,
    }
    vocabulary = args.vocabulary
    if vocabulary is not None and len(vocabulary) == 1 and os.path.isdir(vocabulary[0]):
        vocabulary = vocabulary[0]  # a model folder
    out = crossmatch(
        args.catalog,
        source_id=args.source_id,
        ra=args.ra,
        dec=args.dec,
        epoch=_epoch(args.epoch),
        radius=args.radius,
        reference=args.reference,
        columns=args.columns,
        out=args.out,
        vocabulary=vocabulary,
        cache_dir=args.cache_dir,
        settings=_settings(args),
        sources=stardata.Sources(**{k: v for k, v in over.items() if v is not None}),
        xp_bounds=_xp_bounds(args.xp_bounds),
        extinction=not args.no_extinction,
        max_pm=args.max_pm,
        formats=["parquet", *args.formats],
        progress=not args.quiet,
    )
    print(out)
    return 0


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _settings(args):
    from stardata.errors import BuildError
    from stardata.release import Settings

    data = {}
    if args.settings:
        try:
            with open(args.settings, encoding="utf-8") as f:
                data.update(json.load(f))
        except json.JSONDecodeError as exc:
            raise BuildError(f"--settings {args.settings}: not valid JSON ({exc})") from None
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise BuildError(f"--set expects NAME=VALUE, got {item!r}")
        data[name.strip()] = _value(value)
    if args.xp_data_structure:
        data["xp_data_structure"] = args.xp_data_structure
    try:
        return Settings.from_dict(data) if data else Settings()
    except TypeError as exc:  # a value of the wrong type for a setting
        raise BuildError(f"bad setting value: {exc}") from None


def _sources(args):
    from stardata.release import Sources

    over = {
        "allstar_url": args.allstar_url,
        "gaia_tap_url": args.gaia_tap_url,
        "gaia_datalink_url": args.gaia_datalink_url,
        "dust_dir": args.dust_dir,
    }
    if args.allstar_sha1 is not None:
        over["allstar_sha1"] = None if args.allstar_sha1.lower() == "none" else args.allstar_sha1
    known = {f.name for f in fields(Sources)}
    # allstar_sha1 may be None on purpose ('none'); the others are None when not given
    chosen = {k: v for k, v in over.items() if v is not None or k == "allstar_sha1"}
    return Sources(**{k: v for k, v in chosen.items() if k in known})


def _run(args) -> int:
    from stardata.release import build, verify

    if args.command == "crossmatch":
        return _crossmatch(args)
    if args.command == "build":
        out = build(
            args.release,
            args.data_dir,
            args.out,
            offline=args.offline,
            settings=_settings(args),
            sources=_sources(args),
            formats=args.formats,
            progress=not args.quiet,
        )
        print(out)
    else:
        checked = verify(args.path, args.data_dir)
        print(f"OK: {args.path}: " + ", ".join(f"{n} {h[:12]}" for n, h in checked.items()))
        if args.data_dir is None:
            print("stages not checked (give --data-dir to check them too)")
    return 0


def main(argv=None) -> int:
    """Run the ``stardata`` command; returns the exit status."""
    args = parse(_parser(), argv)
    if isinstance(args, int):  # a bad flag (one line) or --help
        return args
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("stardata: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"stardata: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
