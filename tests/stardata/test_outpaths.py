"""The one rule for output paths (``stardata.outpaths``) and crossmatch numbers, as classes.

Hypothesis generates output paths of each refused class (inputs however spelled, a user's
files, folders holding them, unknown extensions) and crossmatch numbers and reference cells of
each bad class; the contract is a one-line error naming the path, argument or row, and no file
changed.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stardata.cli import main
from stardata.crossmatch import crossmatch
from stardata.errors import CatalogError, LockedError, OutputError
from stardata.outpaths import check_folder, check_table_file, claim, is_own_table, mark
from tests.stardata.crossmatch_fixtures import catalogue, gaia_table
from tests.trees import tree

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """A user's folder: a catalogue (CSV), a Gaia reference (Parquet) and their notes."""
    tmp = tmp_path_factory.mktemp("outpaths")
    g = gaia_table()
    g.write_parquet(tmp / "gaia.parquet")
    catalogue(g).write_csv(tmp / "stars.csv")
    (tmp / "thesis_notes.txt").write_text("mine\n")
    return tmp, g


def _xm(sky, **kw):
    tmp, _ = sky
    kw.setdefault("reference", tmp / "gaia.parquet")
    return crossmatch(
        tmp / "stars.csv", epoch=2000.0, columns="match", progress=False, cache_dir=tmp, **kw
    )


# ---------------------------------------------------------------- the rule itself
@PROPERTY
@given(
    kind=st.sampled_from(["same", "dotdot", "symlink", "hardlink", "inside", "holds"]),
    suffix=st.sampled_from([".parquet", ".csv"]),
)
def test_an_output_that_is_an_input_however_spelled_is_refused(tmp_path, kind, suffix):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    table = folder / "data" / f"in{suffix}"
    table.parent.mkdir()
    table.write_text("a\n1\n")
    out = {
        "same": table,
        "dotdot": folder / "data" / ".." / "data" / table.name,
        "symlink": folder / f"link{suffix}",
        "hardlink": folder / f"hard{suffix}",
        "inside": table.parent / f"x{suffix}",  # an input folder (a HATS catalogue)
        "holds": folder,  # a folder output holding the input
    }[kind]
    if kind == "symlink":
        out.symlink_to(table)
    if kind == "hardlink":
        os.link(table, out)
    inputs = [table.parent] if kind == "inside" else [table]
    before = tree(folder)
    with pytest.raises(OutputError, match="the input") as e:
        if kind == "holds":
            check_folder(out, own_entry=lambda p: True, what="test", inputs=inputs)
        else:
            check_table_file(out, inputs=inputs, columns=["a"])
    assert "\n" not in str(e.value)
    assert tree(folder) == before


@PROPERTY
@given(
    content=st.binary(max_size=64) | st.sampled_from([b"x,y\n1,2\n", b'"a"\n1\n']),
    suffix=st.sampled_from([".parquet", ".csv", ".txt", ".fits", ""]),
)
def test_an_existing_file_is_replaced_only_if_the_toolkit_wrote_it(tmp_path, content, suffix):
    out = tmp_path / f"results{suffix}"
    out.write_bytes(content)
    if suffix not in (".parquet", ".csv"):
        with pytest.raises(OutputError, match="name the file .parquet, .csv"):
            check_table_file(out, columns=["a"])
        return
    own = suffix == ".csv" and content == b'"a"\n1\n'  # the header about to be written
    if own:
        assert check_table_file(out, columns=["a"]) == "csv"
    else:
        with pytest.raises(OutputError, match="exists and was not written by this toolkit"):
            check_table_file(out, columns=["a"])
    assert out.read_bytes() == content


def test_a_marked_parquet_file_is_the_toolkits_own(tmp_path):
    import pyarrow as pa

    from stardata.io import ParquetRowWriter

    out = tmp_path / "s.parquet"
    with ParquetRowWriter(out, pa.schema([("a", pa.float64())]), metadata=mark("test")) as w:
        w.write(pa.table({"a": [1.0]}))
    assert is_own_table(out) and check_table_file(out) == "parquet"
    pl.DataFrame({"a": [1.0]}).write_parquet(out)
    assert not is_own_table(out)


@PROPERTY
@given(
    names=st.lists(
        st.text(alphabet="abcdefgh._-", min_size=1, max_size=8).filter(
            lambda n: n not in (".", "..") and not n.startswith(".")
        ),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_a_folder_holding_anything_not_its_own_is_refused_naming_it(tmp_path, names):
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    for n in names:
        (out / n).write_text("mine")
    (out / ".keep.part-12").write_text("")  # a killed run's temporary is never "foreign"
    before = tree(out)
    with pytest.raises(OutputError, match="did not write") as e:
        check_folder(out, own_entry=lambda p: p.name == "ours", what="test")
    assert sorted(names)[0] in str(e.value)
    assert tree(out) == before


def test_claim_holds_a_lock_and_removes_what_killed_runs_left(tmp_path):
    out = tmp_path / "x.parquet"
    (tmp_path / ".x.parquet.part-123").write_bytes(b"half")
    (tmp_path / ".x.parquet.part-456").mkdir()
    (tmp_path / ".y.parquet.part-123").write_bytes(b"another output's")
    with claim(out, "test"):
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            ".x.parquet.lock",
            ".y.parquet.part-123",
        ]
        with pytest.raises(LockedError, match=f"{out} is in use: test \\(pid {os.getpid()}"):
            with claim(out, "test"):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.parquet.part-123"]


# ---------------------------------------------------------------- crossmatch out=
OUTS = ["user_folder", "catalogue_folder", "parent_of_catalogue", "file", "old_file"]


@PROPERTY
@given(kind=st.sampled_from(OUTS), cli=st.booleans())
def test_crossmatch_never_replaces_what_it_did_not_write(sky, capsys, kind, cli):
    tmp, _ = sky
    work = Path(tempfile.mkdtemp(dir=tmp))
    shutil.copy(tmp / "stars.csv", work / "stars.csv")
    (work / "mine").mkdir()
    (work / "mine" / "plot.png").write_bytes(b"\x89PNG user")
    (work / "file.csv").write_text("a,b\n")
    out = {
        "user_folder": work / "mine",
        "catalogue_folder": work,
        "parent_of_catalogue": tmp,
        "file": work / "file.csv",
        "old_file": work / "file.csv",
    }[kind]
    if kind == "old_file":
        (work / ".file.csv.old").write_text("a user's file of that name")
    before, above = tree(work), sorted(p.name for p in tmp.iterdir())
    if cli:
        argv = ["crossmatch", str(work / "stars.csv"), "--epoch", "2000", "--columns", "match"]
        argv += ["--reference", str(tmp / "gaia.parquet"), "--cache-dir", str(work / "c")]
        assert main([*argv, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("stardata: error: ") and str(out) in err[0]
    else:
        with pytest.raises(OutputError):
            crossmatch(
                work / "stars.csv", epoch=2000.0, columns="match", progress=False,
                reference=tmp / "gaia.parquet", cache_dir=work / "c", out=out,
            )  # fmt: skip
    assert tree(work) == before and sorted(p.name for p in tmp.iterdir()) == above
    shutil.rmtree(work)


def test_crossmatch_replaces_its_own_folder(sky, tmp_path):
    out = tmp_path / "xm"
    out.mkdir()  # an empty folder is fine too
    assert _xm(sky, out=out) == out
    first = tree(out)
    assert _xm(sky, out=out) == out  # a rerun replaces its own output
    assert tree(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xm"]


# ---------------------------------------------------------------- crossmatch numbers
BAD = [math.nan, math.inf, -math.inf, -1.0, 0.0, 648000.0, 1e300, -1e300]


@PROPERTY
@given(name=st.sampled_from(["radius", "max_pm"]), value=st.sampled_from([*BAD, 101.0]))
def test_crossmatch_numbers_are_checked_where_they_enter(sky, capsys, name, value):
    ok = {"radius": 0 < value < 648000, "max_pm": 0 <= value <= 100}[name]
    if ok:
        assert _xm(sky, **{name: value}).height == 14
        return
    with pytest.raises(CatalogError, match=f"{name} .*must be a finite number") as e:
        _xm(sky, **{name: value})
    assert "\n" not in str(e.value)
    tmp, _ = sky
    flag = "--" + name.replace("_", "-")
    argv = ["crossmatch", str(tmp / "stars.csv"), "--reference", str(tmp / "gaia.parquet")]
    # FLAG=VALUE: after a space argparse takes "-1e+300" for an option, not a number
    assert main([*argv, f"{flag}={value!r}", "--out", str(tmp / "never"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}: must be" in err[0]
    assert not (tmp / "never").exists()


REFERENCE = {
    "ra": [math.nan, math.inf, -1.0, 400.0],
    "dec": [math.nan, math.inf, 95.0],
    "ref_epoch": [math.nan, math.inf, 16.0, 1e300],
    "pmra": [math.inf, -math.inf, 1e300],
    "pmdec": [math.inf, 1e300],
    "parallax": [math.inf, 1e300, -1e300],
    "radial_velocity": [math.inf, 1e300],
}


@PROPERTY
@given(column=st.sampled_from(sorted(REFERENCE)), data=st.data(), row=st.integers(0, 29))
def test_a_bad_reference_cell_is_named_by_reference_column_and_row(sky, column, data, row):
    tmp, g = sky
    value = data.draw(st.sampled_from(REFERENCE[column]))
    cell = pl.when(pl.int_range(g.height) == row).then(value).otherwise(pl.col(column))
    ref = g.with_columns(cell.alias(column))
    with pytest.raises(CatalogError) as e:
        _xm(sky, reference=ref)
    msg = str(e.value)
    assert "\n" not in msg and "reference table" in msg and f"'{column}'" in msg
    assert f"row {row}" in msg, msg


def test_an_unknown_motion_is_no_motion_not_an_error(sky):
    _, g = sky
    ref = g.with_columns(pl.lit(None, dtype=pl.Float64).alias("pmra"))
    assert _xm(sky, reference=ref).height == 14


def test_a_null_position_in_the_reference_names_its_row(sky, tmp_path):
    _, g = sky
    ref = g.with_columns(
        pl.when(pl.int_range(g.height) == 3).then(None).otherwise(pl.col("ra")).alias("ra")
    )
    ref.write_parquet(tmp_path / "ref.parquet")
    with pytest.raises(CatalogError, match=r"reference .*ref.parquet column 'ra': row 3 has no"):
        _xm(sky, reference=tmp_path / "ref.parquet")
    assert np.isfinite(g["ra"].to_numpy()).all()


CATALOGUE = {
    "ra": [math.inf, -math.inf, 1e300, -1e300, 1000.0],
    "dec": [math.inf, 90.5, -1e300],
    "epoch": [math.nan, math.inf, 1e300, 16.0, -2000.0],
}


@PROPERTY
@given(column=st.sampled_from(sorted(CATALOGUE)), data=st.data(), row=st.integers(0, 13))
def test_a_bad_catalogue_cell_is_named_by_column_and_row(sky, column, data, row):
    tmp, g = sky
    value = data.draw(st.sampled_from(CATALOGUE[column]))
    cat = catalogue(g).with_columns(pl.lit(2000.0).alias("epoch"))
    cell = pl.when(pl.int_range(cat.height) == row).then(value).otherwise(pl.col(column))
    cat = cat.with_columns(cell.alias(column))
    with pytest.raises(CatalogError) as e:
        crossmatch(
            cat, epoch="epoch", columns="match", progress=False,
            reference=tmp / "gaia.parquet", cache_dir=tmp,
        )  # fmt: skip
    msg = str(e.value)
    assert "\n" not in msg and f"'{column}'" in msg and f"row {row}" in msg, msg
