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


def test_version_and_help_for_users(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("stardata 0.")
    assert main(["build", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--xp-data-structure" in text and "examples:" in text and "--allstar-sha1" in text


def test_programming_errors_keep_their_traceback(monkeypatch, tmp_path):
    from stardata import release

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(release, "build", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["build", "--data-dir", str(tmp_path), "--out", str(tmp_path)])


def test_flags_reach_the_settings_and_sources(monkeypatch, tmp_path, capsys):
    from stardata import release

    seen = {}

    def fake_build(release_name, data_dir, out, **kwargs):
        seen.update(kwargs)
        return tmp_path

    monkeypatch.setattr(release, "build", fake_build)
    args = ["build", "--xp-data-structure", "DATAMODEL_STANDARD", "--allstar-sha1", "none"]
    assert main(args) == 0
    assert seen["settings"].xp_data_structure == "DATAMODEL_STANDARD"
    assert seen["sources"].allstar_sha1 is None
    assert main(["build"]) == 0
    assert seen["settings"].xp_data_structure == "INDIVIDUAL"
    assert seen["sources"].allstar_sha1 == "published"
    bad = tmp_path / "settings.json"
    bad.write_text("{not json")
    assert main(["build", "--settings", str(bad)]) == 2
    assert "settings.json: not valid JSON" in _one_line_error(capsys.readouterr().err)
    assert main(["build", "--set", "ebv_nonpositive_draws=keep"]) == 2
    assert "ebv_nonpositive_draws" in _one_line_error(capsys.readouterr().err)
    assert main(["build", "--set", "xp_relevancy_propagate_from=-1"]) == 2
    assert "xp_relevancy_propagate_from" in _one_line_error(capsys.readouterr().err)
    assert main(["build", "--set", "xp_relevancy_propagate_from=null"]) == 0
    assert seen["settings"].xp_relevancy_propagate_from is None


def test_build_against_an_archive_with_the_renamed_structures(served, tmp_path, capsys):
    """End to end: INDIVIDUAL refused (HTTP 500, the archive's text), DATAMODEL_STANDARD used."""
    import urllib.parse

    server, root = served
    renamed = M.MirrorServer(
        files=server.files, tables=server.tables, xp=server.xp,
        datalink_structures=("DATAMODEL_STANDARD", "DATAMODEL_GAIA"),
    )  # fmt: skip
    with renamed:
        assert main(_args(renamed, root, tmp_path, "--set", "xp_chunk_size=20")) == 0
    posts = [r for r in renamed.requests if r["path"] == renamed.datalink_path]
    asked = [dict(urllib.parse.parse_qsl(r["body"].decode()))["DATA_STRUCTURE"] for r in posts]
    assert asked[0] == "INDIVIDUAL" and set(asked[1:]) == {"DATAMODEL_STANDARD"}
    assert len(asked) >= 3  # several requests, the refused value asked for once
    assert capsys.readouterr().out.strip().endswith("dr17")
