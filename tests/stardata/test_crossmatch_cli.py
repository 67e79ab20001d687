"""``stardata crossmatch``: the command gives the API's result; bad input is one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import stardata
from stardata.cli import main
from stardata.crossmatch import crossmatch
from stardata.testing import MirrorServer, write_tiny_combined19
from tests.stardata.crossmatch_fixtures import (
    IDS,
    NEARBY_STARS,
    archive_tables,
    astropy_positions,
    catalogue,
    nearby_field,
)

ROOT = Path(__file__).resolve().parents[2]


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("stardata: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def plates(tmp_path_factory):
    """The nearby fast movers on plates of 1900, 1950 and 2000 (CSV) and a Parquet reference
    of them among field stars, with parallaxes and radial velocities."""
    tmp = tmp_path_factory.mktemp("xmcli")
    parts = []
    for epoch in (1900.0, 1950.0, 2000.0):
        ra, dec = astropy_positions(NEARBY_STARS, epoch)
        parts.append(
            pl.DataFrame({"name": NEARBY_STARS["name"], "RA": ra, "DE": dec}).with_columns(
                pl.lit(epoch).alias("plate_epoch")
            )
        )
    pl.concat(parts).write_csv(tmp / "plates.csv")
    nearby_field().drop("name").write_parquet(tmp / "gaia.parquet")
    return tmp


def test_the_command_gives_the_api_result(plates, tmp_path, capsys):
    args = ["--ra", "RA", "--dec", "DE", "--epoch", "plate_epoch", "--radius", "1.5"]
    args += ["--reference", str(plates / "gaia.parquet"), "--columns", "match", "--quiet"]
    status = main(["crossmatch", str(plates / "plates.csv"), *args, "--out", str(tmp_path / "xm")])
    assert status == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "xm")
    got = pl.read_parquet(tmp_path / "xm" / "crossmatch.parquet")
    want = crossmatch(
        plates / "plates.csv",
        ra="RA",
        dec="DE",
        epoch="plate_epoch",
        radius=1.5,
        reference=plates / "gaia.parquet",
        columns="match",
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    assert got.equals(want)
    assert got["gaia_source_id"].to_list() == NEARBY_STARS["source_id"].to_list() * 3
    manifest = json.loads((tmp_path / "xm" / "manifest.json").read_text())
    assert manifest["match"]["radius_arcsec"] == 1.5 and manifest["match"]["epoch"] == "plate_epoch"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    tables, xp = archive_tables()
    dust = tmp_path_factory.mktemp("dust")
    write_tiny_combined19(dust)
    with MirrorServer(tables=tables, xp=xp) as server:
        yield server, dust, tables["gaiadr3.gaia_source"]


def test_the_command_passes_the_build_options(archive, tmp_path, capsys):
    """Derived columns from the (local test) archive: --set, --dust-dir, --vocabulary,
    --xp-bounds and the archive URLs reach the API."""
    from stardata.columns import XP_KINDS

    server, dust, gaia = archive
    catalogue(gaia, epoch=2000.0).write_parquet(tmp_path / "cat.parquet")
    release = tmp_path / "release"
    release.mkdir()
    wide = {k: [-1e9, 1e9] for k in XP_KINDS}
    (release / "manifest.json").write_text(json.dumps({"xp_percentile_bounds": wide}))
    status = main(
        ["crossmatch", str(tmp_path / "cat.parquet"), "--epoch", "2000", "--out",
         str(tmp_path / "xm"), "--cache-dir", str(tmp_path / "cache"), "--gaia-tap-url",
         server.tap_url, "--gaia-datalink-url", server.datalink_url, "--dust-dir", str(dust),
         "--set", "ebv_n_draws=16", "--vocabulary", "bprp", "jh", "--xp-bounds", str(release),
         "--quiet"]
    )  # fmt: skip
    assert status == 0
    assert capsys.readouterr().out == f"{tmp_path / 'xm'}\n"  # --quiet: nothing but the path
    out = tmp_path / "xm"
    table = pl.read_parquet(out / "crossmatch.parquet")
    assert table["gaia_source_id"][2] == IDS[5]  # the fast mover, matched at J2000
    # the bounds were applied (wide: every star with XP passes)
    assert table["cut_xp_percentile"].to_list() == table["has_xp"].to_list()
    assert np.isfinite(table["logebv"].to_numpy()).any()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["ebv_n_draws"] == 16 and manifest["vocabulary"] == ["bprp", "jh"]
    assert manifest["sources"]["gaia_tap_url"] == server.tap_url
    assert (out / "tokens.h5").is_file()
    assert stardata.verify(out)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ra", "ra", "--dec", "DE"], "catalogue has no right ascension column 'ra'"),
        (["--radius", "0"], r"argument --radius: must be a finite number in \(0, 648000\)"),
        (["--radius", "nan"], r"argument --radius: must be a finite number .*got 'nan'"),
        (["--radius", "648000"], r"argument --radius: must be .*got '648000'"),
        (["--max-pm", "inf"], r"argument --max-pm: must be a finite number in \[0, 100\]"),
        (["--epoch", "16"], "epoch 16.0 is not a Julian year"),
        (["--epoch", "when"], "catalogue has no epoch column 'when'"),
        (["--reference", "nope.parquet"], "nope.parquet: no such reference file"),
        (["--set", "ebv_n_draws"], "--set expects NAME=VALUE"),
        (["--xp-bounds", "plates.csv"], "--xp-bounds .*plates.csv: not valid JSON"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(plates, tmp_path, capsys, extra, message):
    base = ["crossmatch", str(plates / "plates.csv"), "--out", str(tmp_path / "xm"), "--quiet"]
    if "--ra" not in extra:
        base += ["--ra", "RA", "--dec", "DE"]
    extra = [str(plates / e) if e.endswith((".parquet", ".csv")) else e for e in extra]
    if "--reference" not in extra:
        extra += ["--reference", str(plates / "gaia.parquet"), "--columns", "match"]
    assert main([*base, *extra]) == 2
    import re

    assert re.search(message, _one_line_error(capsys.readouterr().err))
    assert not (tmp_path / "xm").exists()


def test_a_bad_reference_is_named_by_the_command(plates, tmp_path):
    """Run as a shell user does: the command, its exit status and its one line."""
    ref = pl.read_parquet(plates / "gaia.parquet")
    ref.with_columns(-pl.col("source_id")).write_parquet(tmp_path / "neg.parquet")
    run = subprocess.run(
        [sys.executable, "-m", "stardata.cli", "crossmatch", str(plates / "plates.csv"),
         "--ra", "RA", "--dec", "DE", "--reference", str(tmp_path / "neg.parquet"),
         "--columns", "match", "--out", str(tmp_path / "xm")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert run.returncode == 2
    line = _one_line_error(run.stderr)
    assert line.startswith(f"stardata: error: reference {tmp_path / 'neg.parquet'} column")
    assert "negative id" in line
