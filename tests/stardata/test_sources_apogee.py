"""allStar reading: exact DR17 column types, memory-mapped column copies, download from a mirror."""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from stardata.errors import IncompleteDownload, InputFileError, RemoteError
from stardata.sources import apogee
from stardata.sources.apogee import (
    ALLSTAR_COLUMNS,
    ALLSTAR_SHA1,
    ALLSTAR_URL,
    check_fits,
    fetch_allstar,
    iter_allstar,
    read_allstar,
)
from stardata.testing import write_allstar

# FITS TFORMs of the DR17 allStar data model for the columns the pipeline reads.
DR17_TFORMS = {
    "GAIAEDR3_SOURCE_ID": "K",
    "RA": "D",
    "DEC": "D",
    "GLON": "D",
    "GLAT": "D",
    "SNR": "E",
    "J": "E",
    "J_ERR": "E",
    "H": "E",
    "H_ERR": "E",
    "K": "E",
    "K_ERR": "E",
    "STARFLAG": "K",
    "ASPCAPFLAG": "K",
    "EXTRATARG": "J",
    "TEFF": "E",
    "TEFF_ERR": "E",
    "LOGG": "E",
    "LOGG_ERR": "E",
    "M_H": "E",
    "M_H_ERR": "E",
}


def test_url_and_columns():
    assert ALLSTAR_URL.endswith("/dr17/synspec_rev1/allStar-dr17-synspec_rev1.fits")
    assert set(DR17_TFORMS) | {"APOGEE_ID", "TELESCOPE", "FIELD"} == set(ALLSTAR_COLUMNS)


def test_fixture_has_dr17_layout(allstar_path):
    with fits.open(allstar_path) as hdul:
        assert hdul[0].data is None and isinstance(hdul[1], fits.BinTableHDU)
        columns = hdul[1].columns
        for name, tform in DR17_TFORMS.items():
            assert columns[name].format == tform, name
        assert columns["APOGEE_ID"].format.endswith("A")
        assert len(columns.names) > len(ALLSTAR_COLUMNS)  # other columns in the records too
        assert columns["PARAM"].format == "9E"


def test_read_matches_a_plain_astropy_read(allstar_path):
    data = read_allstar(allstar_path)
    reference = Table.read(allstar_path, hdu=1)
    assert list(data) == list(ALLSTAR_COLUMNS)
    for name, values in data.items():
        assert len(values) == 300
        if values.dtype.kind == "U":
            expected = np.char.strip(np.asarray(reference[name]).astype(str))
            np.testing.assert_array_equal(values, expected)
        else:
            assert values.dtype.isnative, name
            assert values.dtype.itemsize == reference[name].dtype.itemsize, name
            np.testing.assert_array_equal(values, np.asarray(reference[name]), err_msg=name)
    assert data["STARFLAG"].dtype == np.int64 and data["EXTRATARG"].dtype == np.int32
    assert data["TELESCOPE"][0] in ("apo25m", "lco25m", "apo1m")


def test_duplicates_are_flagged_with_extratarg_bit_4(allstar_path):
    data = read_allstar(allstar_path, ["APOGEE_ID", "TELESCOPE", "EXTRATARG"])
    dup = (data["EXTRATARG"] & (1 << 4)) != 0
    assert dup.sum() == 5
    for k in np.flatnonzero(dup):
        twin = np.flatnonzero((data["APOGEE_ID"] == data["APOGEE_ID"][k]) & ~dup)
        assert twin.size == 1 and data["TELESCOPE"][twin[0]] != data["TELESCOPE"][k]


def test_row_slices_and_chunks_agree_with_the_full_read(allstar_path):
    full = read_allstar(allstar_path, ["RA", "APOGEE_ID"])
    part = read_allstar(allstar_path, ["RA", "APOGEE_ID"], rows=slice(17, 250, 3), chunk_rows=7)
    np.testing.assert_array_equal(part["RA"], full["RA"][17:250:3])
    np.testing.assert_array_equal(part["APOGEE_ID"], full["APOGEE_ID"][17:250:3])
    blocks = list(iter_allstar(allstar_path, ["SNR"], 64))
    assert [len(b["SNR"]) for b in blocks] == [64, 64, 64, 64, 44]


def _rewrite(path, name, fmt, values=None):
    """Rewrite one column of an allStar file with another FITS type (same values by default)."""
    with fits.open(path, mode="update") as hdul:
        cols = [
            c
            if c.name != name
            else fits.Column(name, fmt, array=c.array if values is None else values)
            for c in hdul[1].columns
        ]
        hdul[1] = fits.BinTableHDU.from_columns(cols)
    return path


def test_missing_and_unusable_columns_are_named(tmp_path, allstar_path):
    with pytest.raises(
        InputFileError, match=r"allStar-test.fits: allStar column\(s\) missing: NOPE"
    ):
        read_allstar(allstar_path, ["RA", "NOPE"])
    bad = _rewrite(write_allstar(tmp_path / "bad.fits", 10), "STARFLAG", "E")  # float flags
    with pytest.raises(
        InputFileError,
        match="bad.fits: allStar column STARFLAG has type float32; it must be an integer",
    ):
        read_allstar(bad)
    text = _rewrite(write_allstar(tmp_path / "text.fits", 10), "SNR", "8A", np.array(["x"] * 10))
    with pytest.raises(
        InputFileError, match="text.fits: allStar column SNR has type .*; it must be a number type"
    ):
        read_allstar(text)


def test_lossless_type_variants_are_accepted(tmp_path):
    """32- vs 64-bit flags, wider floats, big-endian storage, other string widths."""
    ref = write_allstar(tmp_path / "ref.fits", 50, seed=2)
    expected = read_allstar(ref)
    path = write_allstar(tmp_path / "var.fits", 50, seed=2)
    _rewrite(path, "STARFLAG", "J", expected["STARFLAG"].astype(np.int32) & 0x7FFFFFFF)
    _rewrite(path, "EXTRATARG", "K")  # 64-bit where the model has 32
    _rewrite(path, "SNR", "D")
    _rewrite(path, "APOGEE_ID", "40A")
    got = read_allstar(path)
    np.testing.assert_array_equal(got["STARFLAG"], expected["STARFLAG"] & 0x7FFFFFFF)
    assert got["STARFLAG"].dtype == np.int64  # widened to the data model's type
    assert got["EXTRATARG"].dtype == np.int64 and got["SNR"].dtype == np.float64
    np.testing.assert_array_equal(got["EXTRATARG"], expected["EXTRATARG"])
    np.testing.assert_array_equal(got["SNR"], expected["SNR"].astype(np.float64))
    np.testing.assert_array_equal(got["APOGEE_ID"], expected["APOGEE_ID"])
    with fits.open(ref) as hdul:  # FITS stores big-endian; what is read is native-endian
        table = hdul[1].data
        assert table["RA"].dtype.byteorder == ">"
    assert got["RA"].dtype.isnative and np.array_equal(got["RA"], expected["RA"])


def test_check_fits_walks_headers(tmp_path, allstar_path):
    check_fits(allstar_path)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(allstar_path.read_bytes()[:-5000])
    with pytest.raises(IncompleteDownload, match="cut.fits: cut short"):
        check_fits(cut)
    page = tmp_path / "page.fits"
    page.write_bytes(b"<!DOCTYPE html><html><body>Not Found</body></html>")
    with pytest.raises(InputFileError, match="page.fits: not a FITS file"):
        check_fits(page)


def test_reading_few_columns_does_not_load_the_table(tmp_path):
    path = write_allstar(tmp_path / "big.fits", 40_000, seed=1, duplicates=0)
    size = path.stat().st_size
    tracemalloc.start()
    data = read_allstar(path, ["RA", "SNR"], chunk_rows=4096)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert data["RA"].size == 40_000
    assert peak < 0.25 * size, (peak, size)


def test_fetch_allstar_from_a_mirror(mirror, tmp_path, allstar_path):
    url = mirror.add_file("/sas/dr17/allStar-dr17-synspec_rev1.fits", allstar_path)
    result = fetch_allstar(tmp_path / "cache", url=url, progress=False)
    assert result.path.name == "allStar-dr17-synspec_rev1.fits"
    assert result.size == allstar_path.stat().st_size
    assert read_allstar(result.path, ["APOGEE_ID"])["APOGEE_ID"].size == 300


def test_an_html_page_served_with_200_is_never_cached(mirror, tmp_path):
    url = mirror.add_file("/sas/dr17/allStar-dr17-synspec_rev1.fits", b"<html>Maintenance</html>")
    with pytest.raises(RemoteError, match="did not send the expected file: .* not a FITS file"):
        fetch_allstar(tmp_path, url=url, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert mirror.count("/sas/") == 1  # not retried


def test_the_published_sha1_is_used_for_the_sdss_url(mirror, tmp_path, allstar_path, monkeypatch):
    url = mirror.add_file("/sas/dr17/allStar-dr17-synspec_rev1.fits", allstar_path)
    assert ALLSTAR_SHA1 == "7aa2f381de0e8e246f9833cc7da540ef45096702"  # astroNN's pin
    monkeypatch.setattr(apogee, "ALLSTAR_URL", url)  # this mirror plays SDSS
    monkeypatch.setattr(apogee, "ALLSTAR_SHA1", "0" * 40)
    with pytest.raises(RemoteError, match="SHA1 .*, expected 0000"):
        fetch_allstar(tmp_path, url=url, retries=0, progress=False)
    good = hashlib.sha1(allstar_path.read_bytes()).hexdigest()
    monkeypatch.setattr(apogee, "ALLSTAR_SHA1", good)
    assert fetch_allstar(tmp_path, url=url, progress=False).size == allstar_path.stat().st_size
    assert fetch_allstar(tmp_path, url=url, offline=True).path.exists()
    other = mirror.add_file("/mirror/allStar-dr17-synspec_rev1.fits", allstar_path)
    monkeypatch.setattr(apogee, "ALLSTAR_SHA1", "0" * 40)  # no pin for another URL
    assert fetch_allstar(tmp_path / "o", url=other, progress=False).path.exists()
    with pytest.raises(InputFileError, match="offline: allStar file .* is not cached"):
        fetch_allstar(tmp_path / "none", url=url, offline=True)


def test_a_cut_cached_allstar_without_record_or_pin_is_fetched_again(
    mirror, tmp_path, allstar_path, caplog
):
    url = mirror.add_file("/mirror/allStar-dr17-synspec_rev1.fits", allstar_path)
    first = fetch_allstar(tmp_path, url=url, progress=False)
    first.path.write_bytes(allstar_path.read_bytes()[:-3000])  # cut after the fact
    first.path.with_name(first.path.name + ".sha256").unlink()  # and no record to compare with
    again = fetch_allstar(tmp_path, url=url, progress=False)
    assert again.sha256 == first.sha256 and mirror.count("/mirror/") == 2
    assert "allStar-dr17-synspec_rev1.fits: cut short" in caplog.text
