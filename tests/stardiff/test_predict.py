"""stardiff predict and model.predict: statistics, streaming by windows, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stardiff.datasets.synthetic import synthetic_stars
from stardiff.predict import PredictError, predict
from tests.stardiff.conftest import make_recipe

COLUMNS = ["bprp", "jh", "jk", "teff", "logg", "m_h"]


@pytest.fixture(scope="module")
def star_model(tmp_path_factory):
    """A small model of synthetic stars (colours and labels), trained for a few epochs."""
    from stardiff.train import fit

    tmp = tmp_path_factory.mktemp("stars")
    table = synthetic_stars(3000, seed=0, n_spectrum=0).select(COLUMNS)
    recipe = make_recipe(
        tmp,
        table,
        name="stars",
        data={"requestable": ["teff", "logg", "m_h"]},
        train={"epochs": 3, "context": 4, "batch_size": 256},
    )
    return fit(recipe, progress=False, figures=False)


def _rows(n: int, seed: int = 1) -> pl.DataFrame:
    t = synthetic_stars(n, seed=seed, n_spectrum=0, missing=0.2).select(COLUMNS)
    return t.with_columns(pl.Series("name", [f"s{i}" for i in range(n)]))


def test_statistics_match_the_samples(star_model):
    rows = _rows(70)
    got = predict(star_model, rows, ["teff", "logg"], n=64, samples=True, chunk_rows=64)
    assert got.height == 70 and got["name"].to_list() == rows["name"].to_list()
    s = np.stack(got["teff_samples"].to_numpy())
    assert s.shape == (70, 64)
    med = np.median(s, axis=1)
    np.testing.assert_allclose(got["teff_median"].to_numpy(), med, rtol=1e-5)
    mad = 1.4826 * np.median(np.abs(s - med[:, None]), axis=1)
    np.testing.assert_allclose(got["teff_std"].to_numpy(), mad, rtol=1e-4)
    q = np.quantile(s, [0.16, 0.84], axis=1)
    np.testing.assert_allclose(got["teff_q16"].to_numpy(), q[0], rtol=1e-5)
    np.testing.assert_allclose(got["teff_q84"].to_numpy(), q[1], rtol=1e-5)
    assert not got["no_input"].any()


def test_requested_columns_are_not_given_and_unknown_ones_reported_once(star_model):
    rows = _rows(64).with_columns(pl.lit(1.0).alias("mystery"), pl.lit(2).alias("other"))
    with pytest.warns(UserWarning, match=r"2 column\(s\) the model does not know.*mystery"):
        a = predict(star_model, rows, "teff", n=32, chunk_rows=64)
    # teff in the table is not used: changing it changes nothing
    with pytest.warns(UserWarning):
        b = predict(star_model, rows.with_columns(pl.lit(9999.0).alias("teff")), "teff", n=32)
    np.testing.assert_allclose(a["teff_median"].to_numpy(), b["teff_median"].to_numpy())


def test_row_without_input_gets_the_unconditional_density_and_a_flag(star_model):
    rows = _rows(64)
    empty = {c: [np.nan] for c in COLUMNS if c != "logg"}
    rows = pl.concat(
        [rows, pl.DataFrame({**empty, "logg": [2.0], "name": ["blank"]})], how="diagonal"
    )
    got = predict(star_model, rows, "logg", n=200, chunk_rows=64)
    assert got["no_input"].to_list() == [False] * 64 + [True]
    uncond = star_model.sample({}, "logg", 200, seed=3)
    last = got.row(-1, named=True)
    assert abs(last["logg_median"] - np.median(uncond)) < 0.5


@pytest.mark.parametrize("bad, message", [
    ({"request": "bprp"}, "not requestable"),
    ({"request": "nope"}, "nope"),
    ({"n": 0}, r"n must be an integer in \[1, "),
    ({"chunk_rows": 100}, "multiple of 64"),
    ({"quantiles": [1.5]}, r"quantiles must lie in \[0, 1\]"),
    ({"keep": ["absent"]}, "no column 'absent' to keep"),
])  # fmt: skip
def test_bad_arguments_are_one_line_errors(star_model, bad, message):
    args = {"request": "teff", **bad}
    with pytest.raises((PredictError, KeyError), match=message):
        predict(star_model, _rows(10), args.pop("request"), **args)


def test_non_numeric_vocabulary_column_is_named(star_model):
    rows = _rows(10).with_columns(pl.lit("x").alias("jh"))
    with pytest.raises(PredictError, match="column 'jh' is large_string, not numeric"):
        predict(star_model, rows, "teff")


def _write(rows: pl.DataFrame, path, row_group_size: int) -> None:
    pq.write_table(rows.to_arrow(), path, row_group_size=row_group_size)


def test_many_row_groups_give_the_result_of_one_piece(star_model, tmp_path):
    rows = _rows(300)
    one, many = tmp_path / "one.parquet", tmp_path / "many.parquet"
    _write(rows, one, 300)
    _write(rows, many, 37)
    assert pq.ParquetFile(many).metadata.num_row_groups == 9
    kw = {"n": 50, "chunk_rows": 128, "progress": False, "seed": 4}
    a = pl.read_parquet(predict(star_model, one, "teff", out=tmp_path / "a.parquet", **kw))
    b = pl.read_parquet(predict(star_model, many, "teff", out=tmp_path / "b.parquet", **kw))
    mem = predict(star_model, rows, "teff", n=50, chunk_rows=128, seed=4)
    assert a.equals(b) and a.equals(mem)
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 3
    assert not (tmp_path / ".a.parquet.predict").exists()


def test_resume_after_an_interruption_gives_the_same_file(star_model, tmp_path, monkeypatch):
    import stardiff.predict.stream as S

    rows = _rows(400)
    src = tmp_path / "in.parquet"
    _write(rows, src, 50)
    kw = {"n": 40, "chunk_rows": 64, "progress": False}
    ref = predict(star_model, src, "logg", out=tmp_path / "ref.parquet", **kw)
    calls, real = [], S.window

    def crashing(*a, **k):
        calls.append(a[5])
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(S, "window", crashing)
    with pytest.raises(KeyboardInterrupt):
        predict(star_model, src, "logg", out=tmp_path / "out.parquet", **kw)
    assert not (tmp_path / "out.parquet").exists()
    assert len(list((tmp_path / ".out.parquet.predict").glob("part-*"))) == 3
    calls.clear()
    monkeypatch.setattr(S, "window", lambda *a, **k: (calls.append(a[5]), real(*a, **k))[1])
    predict(star_model, src, "logg", out=tmp_path / "out.parquet", **kw)
    assert calls == [3, 4, 5, 6]  # only the windows not yet written
    assert pl.read_parquet(tmp_path / "out.parquet").equals(pl.read_parquet(ref))


def test_changed_options_start_over(star_model, tmp_path, monkeypatch):
    import stardiff.predict.stream as S

    src = tmp_path / "in.parquet"
    _write(_rows(200), src, 64)
    work = tmp_path / ".o.parquet.predict"
    real = S.window

    def crash_second(*a, **k):
        if a[5] == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(S, "window", crash_second)
    with pytest.raises(KeyboardInterrupt):
        predict(star_model, src, "logg", out=tmp_path / "o.parquet", n=20, chunk_rows=64)
    assert (work / "part-000000.parquet").exists()
    monkeypatch.setattr(S, "window", real)
    got = predict(star_model, src, "logg", out=tmp_path / "o.parquet", n=30, chunk_rows=64)
    direct = predict(star_model, src, "logg", out=tmp_path / "d.parquet", n=30, chunk_rows=64)
    assert pl.read_parquet(got).equals(pl.read_parquet(direct))


_SLOW_RUN = """
import sys, time
import stardiff.predict.stream as S
from stardiff.cli import main
real = S.window
def slow(*a, **k):
    time.sleep(0.3)
    return real(*a, **k)
S.window = slow
sys.exit(main(sys.argv[1:]))
"""


def test_cli_resumes_after_kill_9(star_model, tmp_path):
    src = tmp_path / "in.parquet"
    _write(_rows(640), src, 100)
    out = tmp_path / "p.parquet"
    args = [str(star_model.folder), str(src), "--request", "teff", "-n", "30", "--chunk-rows",
            "64", "--out", str(out), "--quiet", "--keep", "name"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-c", _SLOW_RUN, "predict", *args]
    proc = subprocess.Popen(cmd, env=env)
    work = tmp_path / ".p.parquet.predict"
    deadline = time.time() + 120
    while time.time() < deadline and not (work / "part-000002.parquet").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in work.glob("part-*"))
    assert 3 <= len(done) < 10 and not out.exists()
    from stardiff.cli import main

    assert main(["predict", *args]) == 0
    ref = predict(star_model, _rows(640), "teff", n=30, chunk_rows=64, keep=["name"])
    assert pl.read_parquet(out).equals(ref)
    assert pl.read_parquet(out)["name"].to_list() == _rows(640)["name"].to_list()


def test_cli_error_is_one_line(star_model, tmp_path, capsys):
    from stardiff.cli import main

    code = main(["predict", str(star_model.folder), str(tmp_path / "missing.parquet"),
                 "--request", "teff", "--out", str(tmp_path / "o.parquet")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such table" in err


def test_arrow_and_pandas_inputs_agree(star_model):
    rows = _rows(64)
    a = predict(star_model, rows, "m_h", n=20, seed=2)
    b = predict(star_model, rows.to_arrow(), "m_h", n=20, seed=2)
    c = predict(star_model, rows.to_pandas(), "m_h", n=20, seed=2)
    d = star_model.predict(rows, "m_h", n=20, seed=2)
    assert a.equals(b) and a.equals(c) and a.equals(d)
    assert isinstance(rows.to_arrow(), pa.Table)


def test_rows_that_carry_their_own_answers_predict_the_same_on_every_path(star_model, tmp_path):
    """The requested columns are never inputs, on the table, file and model.predict paths,
    unless asked for; asked for, they move the statistics (the check can fail)."""
    rows = _rows(128, seed=5)
    bare = rows.drop("teff", "logg")
    opts = {"n": 40, "chunk_rows": 64, "seed": 3}
    want = predict(star_model, bare, ["teff", "logg"], **opts)
    rows.write_parquet(tmp_path / "with.parquet")
    stats = [c for c in want.columns if c.startswith(("teff_", "logg_"))]
    for got in (
        predict(star_model, rows, ["teff", "logg"], **opts),
        star_model.predict(rows.to_arrow(), ["teff", "logg"], **opts),
        pl.read_parquet(
            predict(
                star_model, tmp_path / "with.parquet", ["teff", "logg"],
                out=tmp_path / "p.parquet", progress=False, **opts,
            )
        ),
    ):  # fmt: skip
        assert got.select(stats).equals(want.select(stats))
    leaked = predict(star_model, rows, ["teff", "logg"], requested_as_inputs=True, **opts)
    assert not leaked.select(stats).equals(want.select(stats))


@pytest.mark.parametrize("suffix", [".csv", ".fits", ".vot"])
def test_predict_reads_what_the_crossmatch_reads(star_model, tmp_path, suffix):
    """CSV, FITS and VOTable give the numbers a Parquet file gives (one reader for both)."""
    from astropy.table import Table

    from stardiff.cli import main

    rows = _rows(100, seed=7).drop("name")
    rows.write_parquet(tmp_path / "rows.parquet")
    src = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        rows.write_csv(src)
    else:
        Table(rows.to_pandas().to_dict("list")).write(
            src, format="fits" if suffix == ".fits" else "votable"
        )
    args = ["--request", "teff", "-n", "20", "--chunk-rows", "64", "--quiet"]
    for path, out in ((tmp_path / "rows.parquet", "a.parquet"), (src, "b.parquet")):
        assert (
            main(
                ["predict", str(star_model.folder), str(path), *args, "--out", str(tmp_path / out)]
            )
            == 0
        )
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    np.testing.assert_allclose(b["teff_median"].to_numpy(), a["teff_median"].to_numpy(), rtol=1e-6)
