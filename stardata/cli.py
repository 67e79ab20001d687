"""The ``stardata`` command: argument parsing only; every command is one API call.

Errors are printed as one line on stderr (``stardata: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stardata", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser(
        "build", help="build OUT/<release>/{stars.parquet, tokens.h5, manifest.json}"
    )
    b.add_argument("--release", default="dr17", help="data release (default dr17)")
    b.add_argument("--data-dir", default="data/cache", help="cache of inputs and stages")
    b.add_argument("--out", default="data", help="parent folder of the release folder")
    b.add_argument("--offline", action="store_true", help="use cached inputs only")
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting (JSON value), e.g. --set split_seed=1",
    )
    b.add_argument("--settings", help="JSON file of settings (overridden by --set)")
    b.add_argument("--allstar-url", help="allStar URL (default: the SDSS SAS)")
    b.add_argument("--gaia-tap-url", help="Gaia TAP service")
    b.add_argument("--gaia-datalink-url", help="Gaia DataLink service")
    b.add_argument("--dust-dir", help="mwdust $DUST_DIR holding combined19/combine19.h5")
    b.add_argument("--quiet", action="store_true", help="no progress bars")

    v = sub.add_parser("verify", help="re-check the hashes a release folder's manifest records")
    v.add_argument("path", help="release folder, e.g. OUT/dr17")
    v.add_argument(
        "--data-dir",
        help="the build's cache folder: also check the stage files the outputs were made from",
    )
    return p


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _settings(args):
    from stardata.release import BuildError, Settings

    data = {}
    if args.settings:
        with open(args.settings, encoding="utf-8") as f:
            data.update(json.load(f))
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise BuildError(f"--set expects NAME=VALUE, got {item!r}")
        data[name.strip()] = _value(value)
    return Settings.from_dict(data) if data else Settings()


def _sources(args):
    from stardata.release import Sources

    over = {
        "allstar_url": args.allstar_url,
        "gaia_tap_url": args.gaia_tap_url,
        "gaia_datalink_url": args.gaia_datalink_url,
        "dust_dir": args.dust_dir,
    }
    known = {f.name for f in fields(Sources)}
    return Sources(**{k: v for k, v in over.items() if v is not None and k in known})


def _run(args) -> int:
    from stardata.release import build, verify

    if args.command == "build":
        out = build(
            args.release,
            args.data_dir,
            args.out,
            offline=args.offline,
            settings=_settings(args),
            sources=_sources(args),
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
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("stardata: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"stardata: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
