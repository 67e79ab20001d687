"""The ``stardata`` command: build, verify, one-line errors with exit status 2."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from stardata import testing as M
from stardata.cli import main

ALLSTAR = "/sas/allStar-dr17-synspec_rev1.fits"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    allstar = M.write_allstar(root / "allStar.fits", 60, seed=4)
    from stardata.sources.apogee import read_allstar

    ids = read_allstar(allstar, ["GAIAEDR3_SOURCE_ID"])["GAIAEDR3_SOURCE_ID"]
    ids = np.unique(ids[ids > 0])
    gaia = M.synthetic_gaia_source(ids, seed=1)
    xp = M.synthetic_xp(gaia.filter(pl.col("has_xp_continuous"))["source_id"].to_numpy())
    M.write_tiny_combined19(root / "dust")
    tables = {"gaiadr3.gaia_source": gaia, **M.synthetic_tmass(ids[::2], seed=2)}
    with M.MirrorServer(files={ALLSTAR: allstar}, tables=tables, xp=xp) as server:
        yield server, root


def _args(server, root, tmp_path, *extra):
    return ["build", "--release", "dr17", "--data-dir", str(tmp_path / "data"),
            "--out", str(tmp_path / "out"), "--allstar-url", server.url + ALLSTAR,
            "--gaia-tap-url", server.tap_url, "--gaia-datalink-url", server.datalink_url,
            "--dust-dir", str(root / "dust"), "--quiet", "--set", "ebv_n_draws=16",
            *extra]  # fmt: skip


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("stardata:")]
    assert len(lines) == 1, err
    return lines[0]


def test_build_then_verify(served, tmp_path, capsys):
    server, root = served
    assert main(_args(server, root, tmp_path, "--set", "split_seed=3")) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.endswith("dr17")
    assert main(["verify", out]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    with open(f"{out}/stars.parquet", "ab") as f:
        f.write(b"x")
    assert main(["verify", out]) == 2
    assert "stars.parquet" in _one_line_error(capsys.readouterr().err)


def test_offline_missing_inputs(served, tmp_path, capsys):
    server, root = served
    assert main(_args(server, root, tmp_path, "--offline")) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "offline" in line and "allStar" in line


def test_bad_setting_and_bad_folder(served, tmp_path, capsys):
    server, root = served
    assert main(_args(server, root, tmp_path, "--set", "no_such_setting=1")) == 2
    assert "no_such_setting" in _one_line_error(capsys.readouterr().err)
    assert main(["verify", str(tmp_path)]) == 2
    assert "manifest.json" in _one_line_error(capsys.readouterr().err)


def test_archive_error_one_line(served, tmp_path, capsys):
    server, root = served
    with M.MirrorServer(files={ALLSTAR: root / "allStar.fits"}) as bare:
        args = _args(bare, root, tmp_path)
        assert main(args) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "gaia_source" in line
    assert not (tmp_path / "out" / "dr17").exists()
