"""XP continuous spectra: parsers on real DR3 archive products; DataLink via the emulator."""

from __future__ import annotations

import io
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from stardata.errors import RemoteError
from stardata.sources.xp import (
    XP_DATA_STRUCTURES,
    StructureChoice,
    fetch_xp_continuous,
    parse_xp_continuous,
    parse_xp_csv,
    structure_candidates,
)
from stardata.testing import real_xp_product, synthetic_xp

DATA = Path(__file__).resolve().parents[1] / "data"

REAL_ID = 5937083312263887616
FORMATS = ["csv", "ecsv", "fits", "vot"]


@pytest.fixture(scope="module")
def parsed():
    out = {}
    for fmt in FORMATS:
        name, data = real_xp_product(fmt)
        out[fmt] = parse_xp_continuous(io.BytesIO(data), name, correlations=True)
    return out


def test_real_products_parse_identically_in_every_format(parsed):
    fits = parsed["fits"]
    assert fits["source_id"].to_list() == [REAL_ID]
    assert fits.schema["bp_coefficients"] == pl.Array(pl.Float64, 55)
    assert fits.schema["rp_coefficient_correlations"] == pl.Array(pl.Float64, 1485)
    assert fits["bp_n_relevant_bases"].to_list() == [22]
    assert fits["rp_n_relevant_bases"].to_list() == [12]
    bp = np.asarray(fits["bp_coefficients"][0])
    assert bp[0] == pytest.approx(3325.743093963916, rel=1e-15)
    assert np.isfinite(bp).all() and np.isfinite(np.asarray(fits["rp_coefficient_errors"][0])).all()
    for fmt in ("csv", "ecsv", "vot"):
        other = parsed[fmt]
        assert other.columns == fits.columns
        for column in fits.columns:
            a = np.asarray(other[column].to_list(), dtype=float)
            b = np.asarray(fits[column].to_list(), dtype=float)
            np.testing.assert_allclose(a, b, rtol=2e-7, err_msg=f"{fmt} {column}")


@pytest.mark.filterwarnings("ignore:The 'mode.chained_assignment' option is deprecated")
def test_parsed_coefficients_reproduce_the_archive_sampled_spectrum(parsed):
    """gaiaxpy on *our* parsed table reproduces the archive's own XP_SAMPLED flux."""
    from astropy.table import Table
    from gaiaxpy import calibrate

    name, data = real_xp_product("ecsv", "XP_SAMPLED")
    sampled = Table.read(data.decode(), format="ascii.ecsv")
    frame = parsed["fits"].to_pandas()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(np.asarray)
    spectra, sampling = calibrate(frame, save_file=False)
    np.testing.assert_allclose(sampling, np.asarray(sampled["wavelength"]))
    flux = np.asarray(spectra["flux"].iloc[0])
    np.testing.assert_allclose(flux, np.asarray(sampled["flux"]), rtol=5e-4)


def test_unparseable_product_is_named():
    with pytest.raises(ValueError, match="broken.fits: cannot parse XP_CONTINUOUS"):
        parse_xp_continuous(io.BytesIO(b"not a fits file"), "broken.fits")


@pytest.fixture
def xp_archive(mirror):
    ids = np.random.default_rng(5).integers(10**15, 6 * 10**18, 30, dtype=np.int64)
    mirror.xp = synthetic_xp(ids[:24], seed=1)
    return mirror, ids


@pytest.mark.parametrize("data_format", ["fits", "votable", "ecsv", "csv"])
def test_fetch_through_datalink_in_each_format(xp_archive, tmp_path, data_format):
    mirror, ids = xp_archive
    got = fetch_xp_continuous(
        ids,
        tmp_path,
        datalink_url=mirror.datalink_url,
        chunk_size=10,
        data_format=data_format,
        progress=False,
    )
    truth = mirror.xp.sort("source_id")
    assert got["source_id"].to_list() == truth["source_id"].to_list()  # ids without XP absent
    for column in got.columns:
        np.testing.assert_allclose(
            np.asarray(got[column].to_list(), dtype=float),
            np.asarray(truth[column].to_list(), dtype=float),
            rtol=1e-6,
            err_msg=column,
        )
    posts = [r for r in mirror.requests if r["method"] == "POST"]
    assert len(posts) == 3
    fields = dict(urllib.parse.parse_qsl(posts[0]["body"].decode()))
    assert fields["RETRIEVAL_TYPE"] == "XP_CONTINUOUS" and fields["FORMAT"] == data_format
    assert fields["DATA_STRUCTURE"] == "INDIVIDUAL" and fields["RELEASE"] == "Gaia DR3"
    assert len(fields["ID"].split(",")) == 10
    again = fetch_xp_continuous(
        ids,
        tmp_path,
        datalink_url=mirror.datalink_url,
        chunk_size=10,
        data_format=data_format,
        progress=False,
    )
    assert again.equals(got) and len(mirror.requests) == 3  # served from the chunk cache


def test_truncated_zip_is_refetched_and_errors_name_the_chunk(xp_archive, tmp_path):
    mirror, ids = xp_archive
    mirror.inject("/data-server/data", "truncate", keep=0.5)
    got = fetch_xp_continuous(ids, tmp_path / "a", datalink_url=mirror.datalink_url, progress=False)
    assert got.height == 24 and mirror.count("/data-server/data") == 2
    mirror.inject("/data-server/data", status=502, times=10)
    with pytest.raises(RemoteError, match=r"xp_continuous chunk 0 \(30 ids, .*\) failed after 3"):
        fetch_xp_continuous(
            ids, tmp_path / "b", datalink_url=mirror.datalink_url, retries=2, progress=False
        )
    assert list((tmp_path / "b").iterdir()) == []


def test_datalink_limit(xp_archive, tmp_path):
    mirror, ids = xp_archive
    with pytest.raises(ValueError, match="5000"):
        fetch_xp_continuous(ids, tmp_path, datalink_url=mirror.datalink_url, chunk_size=5001)
    mirror.max_datalink_ids = 5
    with pytest.raises(RemoteError, match="HTTP Error 400 .*Too many ids: 10 > 5"):
        fetch_xp_continuous(
            ids, tmp_path, datalink_url=mirror.datalink_url, chunk_size=10, progress=False
        )


@pytest.mark.parametrize("correlations", [False, True])
def test_fast_csv_reader_equals_the_astropy_reader_on_the_real_product(correlations):
    name, data = real_xp_product("csv")
    slow = parse_xp_continuous(io.BytesIO(data), name, correlations=correlations)
    fast = parse_xp_csv([(name, data), (name, data)], correlations=correlations)
    assert fast.schema == slow.schema
    assert fast.slice(1, 1).equals(slow) and fast.slice(0, 1).equals(slow)


def test_a_missing_band_becomes_nan(mirror, tmp_path):
    xp = synthetic_xp([11, 12], seed=2)
    mirror.xp = xp.with_columns(
        pl.when(pl.col("source_id") == 12)
        .then(None)
        .otherwise(pl.col("rp_coefficients"))
        .alias("rp_coefficients")
    )
    got = fetch_xp_continuous([11, 12], tmp_path, datalink_url=mirror.datalink_url, progress=False)
    rp = np.asarray(got["rp_coefficients"].to_list())
    assert np.isfinite(rp[0]).all() and np.isnan(rp[1]).all()
    assert np.isfinite(np.asarray(got["bp_coefficients"].to_list())).all()


def _structures(mirror) -> list[str]:
    posts = [r for r in mirror.requests if r["method"] == "POST"]
    return [dict(urllib.parse.parse_qsl(r["body"].decode()))["DATA_STRUCTURE"] for r in posts]


# -- requirement: recorded real DataLink answers through the connector ---------------------------
@pytest.mark.parametrize("fmt", ["csv", "fits"])
def test_recorded_datalink_answer_through_the_connector(mirror, tmp_path, fmt):
    """The archive's own zip for DR3 5937083312263887616 (XP_CONTINUOUS + XP_SAMPLED + MCMC_MSC)."""
    recorded = (DATA / f"gaia_dr3_source_id_{REAL_ID}_dl_products_{fmt}.zip").read_bytes()
    mirror.datalink_result = recorded
    got = fetch_xp_continuous(
        [REAL_ID], tmp_path, datalink_url=mirror.datalink_url, data_format=fmt, progress=False
    )
    with zipfile.ZipFile(io.BytesIO(recorded)) as bundle:
        (member,) = [n for n in bundle.namelist() if n.startswith("XP_CONTINUOUS")]
        truth = parse_xp_continuous(io.BytesIO(bundle.read(member)), member)
    assert got["source_id"].to_list() == [REAL_ID]
    assert got.columns == truth.columns
    for column in got.columns:
        np.testing.assert_allclose(
            np.asarray(got[column].to_list(), dtype=float),
            np.asarray(truth[column].to_list(), dtype=float),
            rtol=1e-12,
            err_msg=column,
        )
    assert np.asarray(got["bp_coefficients"][0])[0] == pytest.approx(3325.743093963916, 1e-15)
    assert _structures(mirror) == ["INDIVIDUAL"]  # the default asked first


# -- requirement: DATA_STRUCTURE default, fallback, and the service's own error messages ---------
def test_default_structure_and_candidates():
    assert XP_DATA_STRUCTURES[0] == "INDIVIDUAL"
    assert structure_candidates("INDIVIDUAL") == [
        "INDIVIDUAL", "DATAMODEL_STANDARD", "RAW", "DATAMODEL_GAIA"
    ]  # fmt: skip
    assert structure_candidates("RAW")[:2] == ["RAW", "DATAMODEL_GAIA"]


def test_renamed_structures_fall_back_once_and_stay(xp_archive, tmp_path, caplog):
    mirror, ids = xp_archive
    mirror.datalink_structures = ("DATAMODEL_STANDARD", "DATAMODEL_GAIA")  # after PR #3629
    choice = StructureChoice("INDIVIDUAL")  # shared by the calls, as the build's blocks do
    kwargs = dict(datalink_url=mirror.datalink_url, chunk_size=10, progress=False)
    got = fetch_xp_continuous(ids[:20], tmp_path, data_structure=choice, **kwargs)
    more = fetch_xp_continuous(ids[20:], tmp_path, data_structure=choice, **kwargs)
    got = pl.concat([got, more]).sort("source_id")
    assert got["source_id"].to_list() == mirror.xp.sort("source_id")["source_id"].to_list()
    assert _structures(mirror) == ["INDIVIDUAL"] + ["DATAMODEL_STANDARD"] * 3
    assert "rejected DATA_STRUCTURE=INDIVIDUAL; using DATAMODEL_STANDARD" in caplog.text


def test_one_file_for_all_sources_parses_the_same(xp_archive, tmp_path):
    mirror, ids = xp_archive
    kwargs = dict(datalink_url=mirror.datalink_url, chunk_size=10, progress=False)
    one_each = fetch_xp_continuous(ids, tmp_path / "a", **kwargs)
    one_for_all = fetch_xp_continuous(ids, tmp_path / "b", data_structure="RAW", **kwargs)
    assert one_for_all.equals(one_each)


def test_recorded_rejection_picks_a_value_the_service_lists(xp_archive, tmp_path):
    """The archive's real HTTP 500 text: 'valid ones are: RAW, INDIVIDUAL'; no blind retries."""
    mirror, ids = xp_archive
    page = (DATA / "gaia_datalink_error_500.txt").read_bytes()
    mirror.inject("/data-server/data", status=500, body=page, method="POST")
    got = fetch_xp_continuous(
        ids, tmp_path, datalink_url=mirror.datalink_url, data_structure="DATAMODEL_GAIA",
        progress=False,
    )  # fmt: skip
    assert got.height == 24
    assert _structures(mirror) == ["DATAMODEL_GAIA", "RAW"]  # the listed one, not a retry


def test_every_structure_rejected_is_one_line_with_the_service_message(xp_archive, tmp_path):
    mirror, ids = xp_archive
    mirror.datalink_structures = ("COMBINED",)
    with pytest.raises(RemoteError) as info:
        fetch_xp_continuous(ids, tmp_path, datalink_url=mirror.datalink_url, progress=False)
    message = str(info.value)
    assert "Invalid Data Structure parameter: 'INDIVIDUAL', valid ones are: COMBINED" in message
    assert "Cannot process request" not in message and "\n" not in message
    assert mirror.count("/data-server/data") == 1  # the service named what it accepts
    assert list(tmp_path.iterdir()) == []


def test_a_permanent_500_is_not_retried(xp_archive, tmp_path):
    mirror, ids = xp_archive
    page = b"Error 500:\nInvalid RETRIEVAL_TYPE\n\nCannot process request: ..."
    mirror.inject("/data-server/data", status=500, body=page, times=10)
    with pytest.raises(RemoteError, match="HTTP Error 500 .*: Invalid RETRIEVAL_TYPE$"):
        fetch_xp_continuous(ids, tmp_path, datalink_url=mirror.datalink_url, progress=False)
    assert mirror.count("/data-server/data") == 1


@pytest.mark.parametrize(
    ("page", "attempts"),
    [("Service under maintenance", 3), ("Invalid ID list: 'x'", 1)],  # transient / permanent
)
def test_an_error_page_with_http_200_shows_the_service_message(
    xp_archive, tmp_path, page, attempts
):
    mirror, ids = xp_archive
    mirror.datalink_result = f"<html><body><h1>{page}</h1></body></html>".encode()
    with pytest.raises(RemoteError) as info:
        fetch_xp_continuous(
            ids, tmp_path, datalink_url=mirror.datalink_url, retries=2, progress=False
        )
    message = str(info.value)
    assert f"answered an error page, not a zip: {page}" in message
    assert "not a complete zip" not in message
    assert mirror.count("/data-server/data") == attempts
