"""The offline stand-ins themselves: map layout, TAP sync endpoint, ADQL subset, fault counting."""

from __future__ import annotations

import urllib.request

import h5py
import numpy as np
import polars as pl
import pytest

from stardata.testing import COMBINED19_DISTMODS, write_tiny_combined19


def test_tiny_combined19_has_the_real_layout(tmp_path):
    path = write_tiny_combined19(tmp_path)
    assert path == tmp_path / "combined19" / "combine19.h5"
    with h5py.File(path, "r") as handle:
        info, best = handle["/pixel_info"][:], handle["/best_fit"][:]
    assert info.dtype.names == ("nside", "healpix_index")
    assert info.dtype["nside"] == np.dtype("<u4") and info.dtype["healpix_index"] == np.dtype("<u8")
    assert best.dtype == np.float64 and best.shape == (len(info), 120)
    assert len(COMBINED19_DISTMODS) == 120 and COMBINED19_DISTMODS[-1] == 18.875
    # every point of the sky is covered exactly once (11 nside-1 pixels + 4 nside-2 children)
    pairs = zip(info["nside"], info["healpix_index"], strict=True)
    covered = sorted(4 * i if n == 1 else i for n, i in pairs)
    assert (info["nside"] == 1).sum() == 11 and (info["nside"] == 2).sum() == 4
    assert len(set(covered)) == len(covered)
    assert (np.diff(best, axis=1) >= 0).all()  # E(B-V) never decreases with distance


def test_sync_tap_query_and_adql_errors(mirror):
    from astropy.table import Table
    from astroquery.utils.tap.core import TapPlus

    mirror.tables["gaiadr3.gaia_source"] = pl.DataFrame(
        {"source_id": [5, 6, 7], "ra": [1.0, 2.0, 3.0]}
    )
    tap = TapPlus(url=mirror.tap_url, verbose=False, use_names_over_ids=True)
    upload = Table({"source_id": np.array([7, 5, 9], dtype=np.int64)})
    query = (
        "SELECT g.source_id, g.ra AS alpha FROM tap_upload.ids AS u "
        "JOIN gaiadr3.gaia_source AS g ON g.source_id = u.source_id"
    )
    job = tap.launch_job(query, upload_resource=upload, upload_table_name="ids")
    result = job.get_results()
    assert sorted(zip(result["source_id"], result["alpha"], strict=True)) == [(5, 1.0), (7, 3.0)]
    assert b"TOP 2000" in mirror.requests[0]["body"]  # why the connectors use async jobs
    bare = TapPlus(url=mirror.tap_url, verbose=False)  # reads by ID, as the real archive's trap
    by_id = bare.launch_job(query, upload_resource=upload, upload_table_name="ids").get_results()
    assert by_id.colnames == ["SOURCE_ID", "ALPHA"]
    with pytest.raises(Exception, match="Column not found: g.nope"):
        tap.launch_job(
            query.replace("g.ra", "g.nope"), upload_resource=upload, upload_table_name="ids"
        )


def test_faults_hit_the_nth_matching_request_only(mirror):
    url = mirror.add_file("/f.bin", b"0123456789")
    mirror.inject("/f", status=502, skip=1, times=1, method="GET")
    codes = []
    for _ in range(3):
        try:
            with urllib.request.urlopen(url) as response:
                codes.append(response.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    assert codes == [200, 502, 200]
    request = urllib.request.Request(url, headers={"Range": "bytes=2-4"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and response.read() == b"234"
        assert response.headers["Content-Range"] == "bytes 2-4/10"
