"""allStar reading: exact DR17 column types, memory-mapped column copies, download from a mirror."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from stardata.sources.apogee import (
    ALLSTAR_COLUMNS,
    ALLSTAR_URL,
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


def test_missing_and_mistyped_columns_are_named(tmp_path, allstar_path):
    with pytest.raises(KeyError, match=r"allStar-test.fits: allStar column\(s\) missing: NOPE"):
        read_allstar(allstar_path, ["RA", "NOPE"])
    bad = write_allstar(tmp_path / "bad.fits", 10, overrides={"STARFLAG": np.zeros(10, "i4")})
    with fits.open(bad, mode="update") as hdul:  # rewrite STARFLAG as 32-bit
        cols = [
            c if c.name != "STARFLAG" else fits.Column("STARFLAG", "J", array=c.array)
            for c in hdul[1].columns
        ]
        hdul[1] = fits.BinTableHDU.from_columns(cols)
    with pytest.raises(TypeError, match="bad.fits: allStar column STARFLAG has type"):
        read_allstar(bad)


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
