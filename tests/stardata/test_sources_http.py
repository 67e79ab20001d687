"""Resumable, verified downloads and the retry policy, against a local server."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest

from stardata.sources.download import download
from stardata.sources.http import (
    ArchiveError,
    RemoteError,
    is_transient,
    retry_call,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not a multiple of the copy block
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def served(mirror):
    return mirror, mirror.add_file("/sas/allStar-x.fits", PAYLOAD)


def test_download_records_sha_and_reuses_a_verified_file(served, tmp_path):
    mirror, url = served
    result = download(url, tmp_path, sha256=SHA, expected_size=len(PAYLOAD), progress=False)
    assert result.path.read_bytes() == PAYLOAD
    assert (result.size, result.sha256, result.url) == (len(PAYLOAD), SHA, url)
    assert (tmp_path / "allStar-x.fits.sha256").read_text().split()[0] == SHA
    assert not (tmp_path / "allStar-x.fits.part").exists()
    again = download(url, tmp_path, sha256=SHA, progress=False)
    assert again == result
    assert mirror.count("/sas/", "GET") == 1  # the second call did not fetch


def test_resume_sends_a_range_request_for_the_rest_only(served, tmp_path):
    mirror, url = served
    (tmp_path / "allStar-x.fits.part").write_bytes(PAYLOAD[:300_001])
    result = download(url, tmp_path, sha256=SHA, progress=False)
    assert result.path.read_bytes() == PAYLOAD
    (request,) = mirror.requests
    assert request["headers"]["Range"] == "bytes=300001-"


def test_server_ignoring_range_restarts_from_zero(served, tmp_path):
    mirror, url = served
    (tmp_path / "allStar-x.fits.part").write_bytes(b"stale bytes from another file")
    mirror.inject("/sas/", "ignore_range")
    result = download(url, tmp_path, sha256=SHA, progress=False)
    assert result.path.read_bytes() == PAYLOAD


def test_truncated_body_is_detected_and_resumed(served, tmp_path):
    mirror, url = served
    mirror.inject("/sas/", "truncate", keep=0.4)
    result = download(url, tmp_path, expected_size=len(PAYLOAD), sha256=SHA, progress=False)
    assert result.path.read_bytes() == PAYLOAD
    first, second = mirror.requests
    assert "Range" not in first["headers"]
    assert second["headers"]["Range"] == f"bytes={int(len(PAYLOAD) * 0.4)}-"


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_complete_file_is_refetched(served, tmp_path, damage):
    mirror, url = served
    bad = bytearray(PAYLOAD)
    if damage == "corrupt":
        bad[1000] ^= 0xFF  # same size, wrong content: only the hash can tell
    else:
        bad = bad[:-10]
    (tmp_path / "allStar-x.fits").write_bytes(bytes(bad))
    result = download(url, tmp_path, sha256=SHA, expected_size=len(PAYLOAD), progress=False)
    assert result.path.read_bytes() == PAYLOAD
    assert mirror.count("/sas/", "GET") == 1


def test_transient_errors_are_retried(served, tmp_path):
    mirror, url = served
    mirror.inject("/sas/", "status", status=503, times=2)
    mirror.inject("/sas/", "drop", skip=0, times=1)
    result = download(url, tmp_path, sha256=SHA, progress=False)
    assert result.sha256 == SHA
    assert mirror.count("/sas/") == 4


def test_persistent_5xx_fails_with_one_line_naming_the_url(served, tmp_path):
    mirror, url = served
    mirror.inject("/sas/", "status", status=500, times=100)
    with pytest.raises(RemoteError, match=r"download of .*allStar-x.fits failed after 3 attempts"):
        download(url, tmp_path, retries=2, progress=False)
    assert not (tmp_path / "allStar-x.fits").exists()
    assert mirror.count("/sas/") == 3


def test_not_found_is_not_retried(mirror, tmp_path):
    with pytest.raises(RemoteError, match="HTTP Error 404") as info:
        download(mirror.url + "/sas/missing.fits", tmp_path, progress=False)
    assert "\n" not in str(info.value)
    assert mirror.count("/sas/") == 1


def test_wrong_checksum_everywhere_fails_and_leaves_nothing(served, tmp_path):
    _, url = served
    with pytest.raises(RemoteError, match=f"SHA256 {SHA}, expected 0000"):
        download(url, tmp_path, sha256="0" * 64, retries=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_pinned_sha1_is_checked(served, tmp_path):
    mirror, url = served
    sha1 = hashlib.sha1(PAYLOAD).hexdigest()
    assert download(url, tmp_path, sha1=sha1, progress=False).sha256 == SHA
    with pytest.raises(RemoteError, match=f"SHA1 {sha1}, expected ffff"):
        download(url, tmp_path / "b", sha1="f" * 40, retries=0, progress=False)


def test_a_truncated_cached_file_never_gets_its_record_rewritten(served, tmp_path, caplog):
    """No pinned hash: the recorded SHA-256 of the verified download is the reference."""
    mirror, url = served
    download(url, tmp_path, progress=False)
    final = tmp_path / "allStar-x.fits"
    final.write_bytes(PAYLOAD[:-1000])  # truncated after the fact (disk, copy, kill)
    result = download(url, tmp_path, progress=False)
    assert result.sha256 == SHA and final.read_bytes() == PAYLOAD
    assert (tmp_path / "allStar-x.fits.sha256").read_text().split()[0] == SHA
    assert "allStar-x.fits: SHA-256" in caplog.text and "differs from the recorded" in caplog.text
    assert mirror.count("/sas/", "GET") == 2


def test_retry_call_backs_off_exponentially_then_names_the_chunk(monkeypatch):
    monkeypatch.setenv("STARDATA_BACKOFF_SCALE", "1")
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        raise urllib.error.HTTPError("http://x", 502, "Bad Gateway", {}, None)

    with pytest.raises(RemoteError, match=r"gaia chunk 7 failed after 4 attempts: .*502"):
        retry_call(flaky, what="gaia chunk 7", retries=3, backoff=0.5, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(calls) == 4


def test_retry_call_leaves_programming_errors_alone():
    calls = []

    def broken():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry_call(broken, what="x", sleep=lambda s: None)
    assert calls == [1]


def test_transient_classification():
    assert is_transient(urllib.error.HTTPError("u", 503, "x", {}, None))
    assert is_transient(urllib.error.HTTPError("u", 429, "x", {}, None))
    assert not is_transient(urllib.error.HTTPError("u", 404, "x", {}, None))
    assert is_transient(TimeoutError("timed out"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("Error 400: bad query"))
    assert is_transient(RuntimeError("Error 500: Internal Server Error"))
    assert not is_transient(ArchiveError("Error 500 in the user's ADQL"))


def test_a_stalled_server_times_out_and_is_retried(served, tmp_path):
    mirror, url = served
    mirror.inject("/sas/", "stall", delay=1.0)
    result = download(url, tmp_path, sha256=SHA, timeout=0.2, progress=False)
    assert result.sha256 == SHA and mirror.count("/sas/") == 2


def test_the_service_message_of_a_recorded_gaia_error():
    from pathlib import Path

    from stardata.sources.http import is_permanent_message, service_message

    page = (
        Path(__file__).resolve().parents[1] / "data" / "gaia_datalink_error_500.txt"
    ).read_bytes()
    message = service_message(page)
    assert (
        message == "Invalid Data Structure parameter: 'COMBINED', valid ones are: RAW, INDIVIDUAL"
    )
    assert is_permanent_message(message)
    assert not is_permanent_message("Service Temporarily Unavailable")
    assert service_message(b"<html><body><h1>502 Bad Gateway</h1></body></html>") == (
        "502 Bad Gateway"
    )
