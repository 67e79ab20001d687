"""Every request a ``stardata build`` sends, per service, for a 100-star release (no network).

Builds a 100-row allStar release against the local test archive
(:class:`stardata.testing.MirrorServer`, which records every request it answers) and prints one
Markdown table: service, method, URL path, parameters, and which test holds the code to a
recorded *real* response for that request (see ``tests/data/README.md``).

Usage::

    python benchmarks/stardata_requests.py [--rows 100] [--workdir /tmp/stardata-requests]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

ALLSTAR = "/sas/dr17/apogee/spectro/aspcap/dr17/synspec_rev1/allStar-dr17-synspec_rev1.fits"

# Which requests the tests check against a recorded real response (tests/data/README.md).
RECORDED = {
    ("TAP", "gaia_source"): "yes: `test_recorded_archive_votable_is_read_by_name` (a real "
    "gaia_source job result, TABLEDATA, `ID` attributes) runs it through the same reader",
    ("TAP", "tmass"): "reader only (the same code as row 4); no recorded 2MASS join result",
    ("DataLink", "POST"): "`test_recorded_datalink_answer_through_the_connector` (real zip, CSV "
    "and FITS), `test_recorded_rejection_picks_a_value_the_service_lists` (real HTTP 500 text)",
}


def _service(path: str) -> str:
    if path.startswith("/tap-server"):
        return "TAP"
    if path.startswith("/data-server"):
        return "DataLink"
    return "SDSS SAS"


def _parameters(request: dict) -> str:
    """The request's parameters, with long values summarized."""
    from stardata.testing.archive import parse_form

    if request["method"] != "POST":
        headers = request["headers"]
        rng = headers.get("Range")
        query = request.get("query") or ""
        return "; ".join(filter(None, [query, f"Range: {rng}" if rng else ""])) or "-"
    ctype = next((v for k, v in request["headers"].items() if k.lower() == "content-type"), "")
    fields, files = parse_form(ctype, request["body"])
    out = []
    for key, value in fields.items():
        if value.lstrip().startswith("<?xml"):  # astroquery's upload part has no filename
            value = f"<uploaded VOTable, {value.count('<TR>')} rows>"
        elif key == "ID":
            value = f"<{len(value.split(','))} source ids>"
        elif key == "QUERY":
            value = re.sub(r"SELECT (.{40}).*? FROM", r"SELECT \1... FROM", " ".join(value.split()))
        out.append(f"{key}={value}")
    for key, blob in files.items():
        out.append(f"{key}=<uploaded VOTable, {blob.count(b'<TR>')} rows>")
    return ", ".join(out)


def _route(path: str) -> str:
    path = re.sub(r"/async/\d+O", "/async/{job}", path)
    return path.replace(ALLSTAR, "/sas/dr17/.../allStar-dr17-synspec_rev1.fits")


def _recorded(service: str, method: str, path: str, query: str) -> str:
    if service == "TAP" and path.endswith("/results/result"):
        return RECORDED[("TAP", "gaia_source" if "gaia_source" in query else "tmass")]
    return RECORDED.get((service, method), "no (format-faithful local answers only)")


def _job_queries(requests: list[dict]) -> dict[str, str]:
    """Job id -> ADQL (the local archive numbers jobs in the order they are posted)."""
    from stardata.testing.archive import parse_form

    out = {}
    for r in requests:
        if r["method"] == "POST" and r["path"].endswith("/async"):
            ctype = next((v for k, v in r["headers"].items() if k.lower() == "content-type"), "")
            out[f"{len(out) + 1:06d}O"] = parse_form(ctype, r["body"])[0].get("QUERY", "")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100, help="allStar rows (default 100)")
    p.add_argument("--workdir", default="/tmp/stardata-requests")
    args = p.parse_args(argv)
    os.environ.setdefault("STARDATA_BACKOFF_SCALE", "0")

    from stardata import testing as M
    from stardata.release import Settings, Sources, build
    from stardata.sources.apogee import read_allstar

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    allstar = M.write_allstar(work / "allStar.fits", args.rows, seed=1, duplicates=3)
    ids = read_allstar(allstar, ["GAIAEDR3_SOURCE_ID"])["GAIAEDR3_SOURCE_ID"]
    ids = np.unique(ids[ids > 0])
    gaia = M.synthetic_gaia_source(ids, seed=2)
    xp = M.synthetic_xp(gaia.filter(pl.col("has_xp_continuous"))["source_id"].to_numpy())
    M.write_tiny_combined19(work / "dust")
    tables = {"gaiadr3.gaia_source": gaia, **M.synthetic_tmass(ids, seed=3)}
    with M.MirrorServer(files={ALLSTAR: allstar}, tables=tables, xp=xp) as mirror:
        sources = Sources(
            allstar_url=mirror.url + ALLSTAR,
            gaia_tap_url=mirror.tap_url,
            gaia_datalink_url=mirror.datalink_url,
            dust_dir=str(work / "dust"),
        )
        build("dr17", work / "data", work / "out", sources=sources,
              settings=Settings(ebv_n_draws=16), progress=False)  # fmt: skip
        requests = list(mirror.requests)
    print(f"{len(requests)} requests for a {args.rows}-row allStar ({ids.size} Gaia ids, "
          f"{xp.height} with XP); the Combined19 map is read from --dust-dir (mwdust fetches "
          "it from Zenodo itself when missing).\n")  # fmt: skip
    print("| # | service | method | URL path | parameters | checked against a recorded real "
          "response |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    queries = _job_queries(requests)
    for k, r in enumerate(requests, 1):
        service, route = _service(r["path"]), _route(r["path"])
        job = re.search(r"/async/(\d+O)", r["path"])
        query = queries.get(job.group(1), "") if job else ""
        print(f"| {k} | {service} | {r['method']} | `{route}` | {_parameters(r)} | "
              f"{_recorded(service, r['method'], r['path'], query)} |")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
