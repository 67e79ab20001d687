"""gaia_source by TAP upload against the local archive emulator: join, chunking, cache, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from astropy.table import Table

from stardata.errors import RemoteError
from stardata.sources.gaia import GAIA_SOURCE_COLUMNS, query_gaia_source
from stardata.sources.tap import GAIA_TAP_URL
from stardata.testing import synthetic_gaia_source

DATA = Path(__file__).resolve().parents[1] / "data"
RECORDED_IDS = [4583627001381815936, 5348723816842275584]  # in tests/data/gaia_source_2rows_ids.vot

IDS = np.random.default_rng(7).integers(10**15, 6 * 10**18, 250, dtype=np.int64)


@pytest.fixture
def archive(mirror):
    mirror.tables["gaiadr3.gaia_source"] = synthetic_gaia_source(IDS[:230], seed=2)
    return mirror


def _uploaded_ids(request) -> np.ndarray:
    body = request["body"]
    start = body.index(b"<?xml")
    end = body.index(b"</VOTABLE>") + len(b"</VOTABLE>")
    return np.sort(
        np.asarray(Table.read(io.BytesIO(body[start:end]), format="votable")["source_id"])
    )


def test_defaults():
    assert GAIA_TAP_URL == "https://gea.esac.esa.int/tap-server/tap"
    assert GAIA_SOURCE_COLUMNS[0] == "source_id" and "has_xp_continuous" in GAIA_SOURCE_COLUMNS


def test_join_on_source_id_despite_scrambled_archive_order(archive, tmp_path):
    asked = np.concatenate([IDS, IDS[:10], [0, -5]])  # duplicates and non-ids are dropped
    got = query_gaia_source(
        asked, tmp_path, tap_url=archive.tap_url, chunk_size=100, progress=False
    )
    truth = archive.tables["gaiadr3.gaia_source"].sort("source_id")
    assert got.columns == list(GAIA_SOURCE_COLUMNS)
    assert got["source_id"].is_sorted() and got.height == 230
    for column in GAIA_SOURCE_COLUMNS:  # values travel with their own source_id
        np.testing.assert_array_equal(
            got[column].to_numpy(), truth[column].to_numpy(), err_msg=column
        )
    assert got.schema["phot_g_mean_mag"] == pl.Float32
    assert got.schema["astrometric_params_solved"] == pl.Int16
    assert got.schema["has_xp_continuous"] == pl.Boolean
    posts = [r for r in archive.requests if r["method"] == "POST"]
    assert len(posts) == 3  # 250 unique ids in chunks of 100
    uploaded = np.concatenate([_uploaded_ids(r) for r in posts])
    np.testing.assert_array_equal(np.sort(uploaded), np.sort(IDS))
    assert b"JOIN gaiadr3.gaia_source AS g ON g.source_id = u.source_id" in posts[0]["body"]


def test_missing_ids_policies(archive, tmp_path):
    kwargs = dict(tap_url=archive.tap_url, chunk_size=300, progress=False)
    nulls = query_gaia_source(IDS, tmp_path, on_missing="null", **kwargs)
    assert nulls.height == 250 and nulls["ra"].is_nan().sum() + nulls["ra"].null_count() == 20
    with pytest.raises(RemoteError, match="20 of 250 ids not found"):
        query_gaia_source(IDS, tmp_path, on_missing="raise", **kwargs)


def test_rerun_resumes_from_the_chunk_cache(archive, tmp_path):
    archive.inject("/tap-server/tap/async", status=500, skip=2, times=100, method="POST")
    with pytest.raises(RemoteError, match=r"gaia_source chunk 2 \(50 ids, .*\) failed after 2"):
        query_gaia_source(
            IDS, tmp_path, tap_url=archive.tap_url, chunk_size=100, retries=1, progress=False
        )
    cached = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert [name.split("-")[1] for name in cached] == ["00000", "00001"]  # nothing half-written
    archive.faults.clear()
    before = archive.count("/tap-server/tap/async", "POST")
    got = query_gaia_source(IDS, tmp_path, tap_url=archive.tap_url, chunk_size=100, progress=False)
    assert archive.count("/tap-server/tap/async", "POST") - before == 1  # only chunk 2
    assert got.height == 230
    # dropping the largest id changes only the last chunk: it alone is fetched again
    fewer = query_gaia_source(
        np.sort(IDS)[:-1], tmp_path, tap_url=archive.tap_url, chunk_size=100, progress=False
    )
    assert archive.count("/tap-server/tap/async", "POST") - before == 2
    assert np.sort(IDS)[-1] not in fewer["source_id"].to_numpy()


def test_transient_failures_inside_a_job_are_retried(archive, tmp_path):
    archive.inject("/tap-server/tap/async/", status=503, skip=1, times=1)  # a results GET
    archive.inject("/tap-server/tap/async", "drop", skip=2, times=1, method="POST")
    got = query_gaia_source(IDS, tmp_path, tap_url=archive.tap_url, chunk_size=100, progress=False)
    assert got.height == 230
    assert archive.count("/tap-server/tap/async", "POST") == 5  # 3 chunks + 2 retried jobs


def test_archive_query_error_is_one_clear_line_and_not_retried(mirror, tmp_path):
    with pytest.raises(RemoteError) as info:  # no gaia_source table: the job ends in ERROR
        query_gaia_source(IDS, tmp_path, tap_url=mirror.tap_url, chunk_size=500, progress=False)
    message = str(info.value)
    assert "gaia_source chunk 0" in message and "Table not found: gaiadr3.gaia_source" in message
    assert "\n" not in message
    assert mirror.count("/tap-server/tap/async", "POST") == 1
    assert list(tmp_path.iterdir()) == []


def test_duplicate_rows_from_the_archive_are_refused(mirror, tmp_path):
    table = synthetic_gaia_source(IDS[:20])
    mirror.tables["gaiadr3.gaia_source"] = pl.concat([table, table.head(1)])
    with pytest.raises(RemoteError, match="duplicate rows"):
        query_gaia_source(IDS[:20], tmp_path, tap_url=mirror.tap_url, progress=False)


def test_a_stalled_tap_job_times_out_and_is_retried(archive, tmp_path):
    archive.inject("/tap-server/tap/async", "stall", delay=1.0, method="POST")
    got = query_gaia_source(
        IDS, tmp_path, tap_url=archive.tap_url, chunk_size=500, timeout=0.3, progress=False
    )
    assert got.height == 230 and archive.count("/tap-server/tap/async", "POST") == 2


# -- requirement: real archive VOTables name columns by ``name``, with other ``ID``s ---------------
def test_recorded_archive_votable_is_read_by_name(mirror, tmp_path):
    """A real gaia_source job result (FIELD ID="SOURCE_ID" name="source_id"), end to end."""
    recorded = (DATA / "gaia_source_2rows_ids.vot").read_bytes()
    assert b'<FIELD ID="SOURCE_ID" datatype="long" name="source_id"' in recorded
    mirror.tap_result = recorded
    got = query_gaia_source(RECORDED_IDS, tmp_path, tap_url=mirror.tap_url, progress=False)
    truth = Table.read(io.BytesIO(recorded), format="votable", use_names_over_ids=True)
    assert got.columns == list(GAIA_SOURCE_COLUMNS)
    assert got["source_id"].to_list() == RECORDED_IDS
    for column in GAIA_SOURCE_COLUMNS:
        expected = np.asarray(truth[column])[np.argsort(np.asarray(truth["source_id"]))]
        np.testing.assert_array_equal(got[column].to_numpy(), expected, err_msg=column)
    # what a bare reader (astropy's default, TapPlus without use_names_over_ids) would see
    by_id = Table.read(io.BytesIO(recorded), format="votable")
    assert "SOURCE_ID" in by_id.colnames and "source_id" not in by_id.colnames


def test_the_local_archive_answers_with_upper_case_ids(archive, tmp_path):
    query_gaia_source(IDS[:5], tmp_path, tap_url=archive.tap_url, progress=False)
    result = archive.job("000001O")[1]
    assert b'ID="SOURCE_ID"' in result and b'name="source_id"' in result
    assert b'utype="adhoc:service"' in result  # a DataLink service descriptor, as the archive
    assert "SOURCE_ID" in Table.read(io.BytesIO(result), format="votable").colnames


def test_a_missing_column_is_one_line_naming_it_and_the_query(mirror, tmp_path):
    mirror.tables["gaiadr3.gaia_source"] = synthetic_gaia_source(IDS[:20]).drop("ruwe")
    recorded = (DATA / "gaia_source_2rows_ids.vot").read_bytes()
    mirror.tap_result = recorded.replace(b'name="ruwe"', b'name="ruwe_renamed"')
    with pytest.raises(RemoteError) as info:
        query_gaia_source(RECORDED_IDS, tmp_path, tap_url=mirror.tap_url, progress=False)
    message = str(info.value)
    assert "lacks column(s) ruwe" in message and "query: SELECT g.source_id" in message
    assert "gaia_source chunk 0" in message and "\n" not in message
    assert mirror.count("/tap-server/tap/async", "POST") == 1  # not retried
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_record"])
def test_a_damaged_cached_chunk_is_fetched_again(archive, tmp_path, caplog, damage):
    kwargs = dict(tap_url=archive.tap_url, chunk_size=100, progress=False)
    first = query_gaia_source(IDS, tmp_path, **kwargs)
    chunk = sorted(tmp_path.glob("gaia_source-00001-*.parquet"))[0]
    data = chunk.read_bytes()
    if damage == "truncate":
        chunk.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        chunk.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        chunk.with_name(chunk.name + ".sha256").unlink()
    before = archive.count("/tap-server/tap/async", "POST")
    again = query_gaia_source(IDS, tmp_path, **kwargs)
    assert archive.count("/tap-server/tap/async", "POST") - before == 1  # that chunk only
    assert again.equals(first)
    assert any(chunk.name in r.getMessage() for r in caplog.records)
    assert chunk.with_name(chunk.name + ".sha256").exists()
