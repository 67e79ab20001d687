"""Resumable, verified HTTP downloads and a retry helper: the transport seam of the connectors.

Every remote call of :mod:`stardata.sources` goes through :func:`retry_call`, which retries
transient failures (HTTP 5xx, 408, 429, time-outs, dropped connections, truncated bodies) with
exponential backoff and then raises a one-line :class:`RemoteError` naming what failed. Plain
file downloads use :func:`download`, which streams to ``<name>.part``, resumes with an HTTP
``Range`` request, checks the size and SHA-256 and renames atomically only when complete.

Set the environment variable ``STARDATA_BACKOFF_SCALE`` (a float, default 1) to scale every
backoff sleep; tests set it to 0.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = [
    "ArchiveError",
    "DownloadResult",
    "IncompleteDownload",
    "RemoteError",
    "USER_AGENT",
    "download",
    "file_sha256",
    "http_post",
    "is_transient",
    "retry_call",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
USER_AGENT = "stardata/0.1 (python-urllib)"
_CHUNK_BYTES = 1 << 20
_MAX_SLEEP = 120.0
_5XX_REASONS = ("internal server error", "bad gateway", "service unavailable", "gateway time")


class RemoteError(RuntimeError):
    """A remote service failed (after retries, or with a non-transient error)."""


class ArchiveError(RuntimeError):
    """A remote service answered with an error of its own (e.g. an ADQL error); not retried."""


class IncompleteDownload(OSError):
    """A response body was shorter than announced, or failed its size/hash check."""


@dataclass(frozen=True)
class DownloadResult:
    """A completed, verified download.

    Attributes
    ----------
    path : Path
        Final location of the file.
    url : str
        Where it came from.
    size : int
        Size in bytes.
    sha256 : str
        Hex SHA-256 of the file.
    """

    path: Path
    url: str
    size: int
    sha256: str


def _status_of(exc: BaseException) -> int | None:
    """HTTP status of an exception, if it carries or mentions one."""
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    if response is not None and isinstance(getattr(response, "status_code", None), int):
        return response.status_code
    text = str(exc)
    match = re.search(r"\b(?:Error|HTTP|status)\s*:?\s*([1-5]\d\d)\b", text, re.IGNORECASE)
    if match:
        return int(match.group(1))
    if any(reason in text.lower() for reason in _5XX_REASONS):
        return 503
    return None


def _is_remote(exc: BaseException) -> bool:
    """Whether an exception comes from the network or a remote service (not our own code)."""
    if isinstance(exc, OSError | http.client.HTTPException | TimeoutError | ArchiveError):
        return True
    module = type(exc).__module__
    return module.startswith(("requests", "urllib3", "astroquery")) or _status_of(exc) is not None


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is worth retrying.

    Parameters
    ----------
    exc : BaseException
        The exception raised by a remote call.

    Returns
    -------
    bool
        True for HTTP 5xx/408/429, time-outs, refused or dropped connections and truncated
        bodies; False for other HTTP errors (4xx) and for errors that are not remote.
    """
    if isinstance(exc, ArchiveError):
        return False
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    if isinstance(exc, IncompleteDownload | TimeoutError | socket.timeout | ConnectionError):
        return True
    if isinstance(exc, urllib.error.URLError | http.client.HTTPException):
        return True
    if (
        type(exc).__module__.startswith(("requests", "urllib3"))
        and "HTTPError" not in type(exc).__name__
    ):
        return True  # requests/urllib3 connection errors and time-outs
    status = _status_of(exc)
    return status is not None and (status >= 500 or status in (408, 429))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _backoff_seconds(backoff: float, attempt: int) -> float:
    scale = float(os.environ.get("STARDATA_BACKOFF_SCALE", "1"))
    return min(_MAX_SLEEP, backoff * scale * 2.0**attempt)


def retry_call(
    fn: Callable[[], T],
    *,
    what: str,
    retries: int = 5,
    backoff: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` and retry transient remote failures with exponential backoff.

    Parameters
    ----------
    fn : callable
        The remote call, without arguments.
    what : str
        What is being done (e.g. ``"gaia_source chunk 3 (50000 ids)"``); named in the error.
    retries : int, optional
        Number of retries after the first attempt.
    backoff : float, optional
        First sleep in seconds; doubled each retry, scaled by ``$STARDATA_BACKOFF_SCALE``.
    sleep : callable, optional
        Sleep function (tests may pass a recorder).

    Returns
    -------
    object
        Whatever ``fn`` returns.

    Raises
    ------
    RemoteError
        One line naming ``what`` after the last transient failure, or at once for a
        non-transient remote error (e.g. an HTTP 4xx or an archive query error).
    """
    attempts = max(1, retries + 1)
    for attempt in range(attempts):
        try:
            return fn()
        except RemoteError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if not _is_remote(exc) and not is_transient(exc):
                raise
            if not is_transient(exc):
                raise RemoteError(f"{what} failed: {_one_line(exc)}") from exc
            if attempt + 1 == attempts:
                raise RemoteError(
                    f"{what} failed after {attempts} attempts: {_one_line(exc)}"
                ) from exc
            delay = _backoff_seconds(backoff, attempt)
            log.warning("%s: %s; retrying in %.1f s", what, _one_line(exc, 120), delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def file_sha256(path: str | os.PathLike, chunk_bytes: int = _CHUNK_BYTES) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def http_post(url: str, fields: dict[str, str], *, timeout: float = 300) -> bytes:
    """POST url-encoded ``fields`` and return the whole body, checking its announced length.

    Raises
    ------
    urllib.error.HTTPError
        For a transient HTTP error status (5xx, 408, 429).
    ArchiveError
        For other HTTP errors, with the server's message.
    IncompleteDownload
        If the body is shorter than its ``Content-Length``.
    """
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if is_transient(exc):
            raise
        text = re.sub(r"<[^>]+>", " ", exc.read(4096).decode(errors="replace"))
        raise ArchiveError(f"HTTP Error {exc.code} from {url}: {' '.join(text.split())}") from exc
    with response:
        announced = response.headers.get("Content-Length")
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:
            raise IncompleteDownload(f"{url}: body cut short ({len(exc.partial)} bytes)") from exc
    if announced is not None and len(body) != int(announced):
        raise IncompleteDownload(f"{url}: got {len(body)} of {announced} bytes")
    return body


def _content_range_total(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from a ``Content-Range: bytes a-b/N`` header."""
    match = re.match(r"bytes\s+(\d+|\*)-?(\d*)/(\d+|\*)", value or "")
    if not match:
        return None, None
    start = None if match.group(1) == "*" else int(match.group(1))
    total = None if match.group(3) == "*" else int(match.group(3))
    return start, total


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool) -> int | None:
    """Stream ``url`` into ``part`` (resuming it); return the announced total size, if any."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        _, total = _content_range_total(exc.headers.get("Content-Range"))
        if total == offset:
            return total  # the part file is already complete
        part.unlink()
        raise IncompleteDownload(f"{url}: cannot resume at byte {offset}; restarting") from exc
    with response:
        start, total = _content_range_total(response.headers.get("Content-Range"))
        length = response.headers.get("Content-Length")
        if offset and response.status == 206:
            if start != offset:
                part.unlink()
                raise IncompleteDownload(f"{url}: asked for byte {offset}, got {start}; restarting")
            mode = "ab"
        else:  # no Range asked, or the server ignored it (HTTP 200): start again
            offset, mode, total = 0, "wb", None
        if total is None and length is not None:
            total = offset + int(length)
        written = _stream(response, part, mode, offset, total, progress, url)
    if total is not None and offset + written != total:
        raise IncompleteDownload(f"{url}: got {offset + written} of {total} bytes")
    return total


def _stream(response, part: Path, mode: str, offset: int, total, progress: bool, url: str) -> int:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=Path(part).stem)
    written = 0
    try:
        with open(part, mode) as handle:
            while True:
                try:
                    block = response.read(_CHUNK_BYTES)
                except http.client.IncompleteRead as exc:
                    handle.write(exc.partial)
                    raise IncompleteDownload(f"{url}: connection dropped") from exc
                if not block:
                    break
                handle.write(block)
                written += len(block)
                if bar is not None:
                    bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    return written


def _verify(path: Path, expected_size: int | None, sha256: str | None) -> str | None:
    """Return the file's SHA-256 if it passes the checks, else None."""
    if expected_size is not None and path.stat().st_size != expected_size:
        return None
    digest = file_sha256(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        return None
    return digest


def download(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    filename: str | None = None,
    expected_size: int | None = None,
    sha256: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool = True,
) -> DownloadResult:
    """Download ``url`` into ``dest_dir``, resuming, verifying and renaming atomically.

    Parameters
    ----------
    url : str
        File to fetch (``http`` or ``https``).
    dest_dir : path-like
        Cache folder; created if missing.
    filename : str, optional
        Local name; defaults to the last part of the URL path.
    expected_size : int, optional
        Size in bytes the file must have.
    sha256 : str, optional
        Hex SHA-256 the file must have.
    retries, backoff : optional
        See :func:`retry_call`.
    timeout : float, optional
        Socket time-out in seconds for each request.
    progress : bool, optional
        Show a tqdm progress bar.

    Returns
    -------
    DownloadResult
        Path, URL, size and SHA-256; the digest is also written to ``<name>.sha256``.

    Notes
    -----
    A file already at the destination is reused when it passes the size/hash checks and is
    otherwise deleted and fetched again. A ``.part`` file left by an interrupted run is resumed
    with ``Range: bytes=N-``; servers that ignore ``Range`` (HTTP 200) make it restart.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    name = filename or Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot derive a file name from URL {url!r}; pass filename=")
    final, part = dest / name, dest / f"{name}.part"
    if final.exists():
        digest = _verify(final, expected_size, sha256)
        if digest is not None:
            return _finish(final, url, digest)
        log.warning("%s fails its size/hash check; fetching it again", final)
        final.unlink()

    def attempt() -> str:
        total = _fetch_once(url, part, timeout=timeout, progress=progress)
        size = part.stat().st_size
        if expected_size is not None and size != expected_size:
            part.unlink()
            if total is not None and total != expected_size:
                raise RemoteError(f"{url}: server has {total} bytes, expected {expected_size}")
            raise IncompleteDownload(f"{url}: got {size} bytes, expected {expected_size}")
        digest = _verify(part, None, sha256)
        if digest is None:
            part.unlink()
            raise IncompleteDownload(f"{url}: SHA-256 mismatch (expected {sha256})")
        return digest

    digest = retry_call(attempt, what=f"download of {url}", retries=retries, backoff=backoff)
    os.replace(part, final)
    return _finish(final, url, digest)


def _finish(path: Path, url: str, digest: str) -> DownloadResult:
    record = path.with_name(path.name + ".sha256")
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, record)
    return DownloadResult(path=path, url=url, size=path.stat().st_size, sha256=digest)
