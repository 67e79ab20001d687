"""Resumable, verified file downloads (the allStar file).

:func:`download` streams to ``<name>.part``, resumes with an HTTP ``Range`` request, checks the
size and SHA-256 and renames atomically only when complete; transient failures are retried by
:func:`stardata.sources.http.retry_call`.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stardata.sources.http import USER_AGENT, IncompleteDownload, RemoteError, retry_call

__all__ = ["DownloadResult", "download", "file_sha256"]

log = logging.getLogger(__name__)
_CHUNK_BYTES = 1 << 20


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


def file_sha256(path: str | os.PathLike, chunk_bytes: int = _CHUNK_BYTES) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


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
        See :func:`stardata.sources.http.retry_call`.
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
