"""Resumable, verified file downloads (the allStar file).

:func:`download` streams to ``<name>.part``, resumes with an HTTP ``Range`` request, checks the
size, the pinned SHA-1/SHA-256 and the content (``check``, e.g. a FITS header walk) and renames
atomically only when all pass; transient failures are retried by
:func:`stardata.sources.http.retry_call`.

``<name>.sha256`` records the SHA-256 of a file that passed those checks. A cached file is reused
only if it still passes them (with no pinned hash, it must match its recorded SHA-256); a file
that fails is named in a warning and fetched again, and its record is never rewritten from it.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stardata.errors import IncompleteDownload, InputFileError, RemoteError
from stardata.io import atomic_path, file_digests
from stardata.sources.http import USER_AGENT, retry_call

__all__ = ["DownloadResult", "download", "file_digests", "verify_file"]

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


def _recorded(path: Path) -> str | None:
    record = path.with_name(path.name + ".sha256")
    try:
        return record.read_text().split()[0].lower()
    except (OSError, IndexError):
        return None


def verify_file(
    path: str | os.PathLike,
    *,
    expected_size: int | None = None,
    hashes: dict[str, str] | None = None,
    check: Callable[[Path], None] | None = None,
    use_record: bool = True,
) -> str:
    """Check a file and return its SHA-256, or raise :class:`InputFileError` naming it.

    Parameters
    ----------
    path : path-like
        The file.
    expected_size : int, optional
        Size in bytes it must have.
    hashes : dict, optional
        Pinned digests, e.g. ``{"sha1": ...}`` or ``{"sha256": ...}``; all must match.
    check : callable, optional
        Content check (raises :class:`InputFileError` or :class:`IncompleteDownload`).
    use_record : bool, optional
        Without pinned hashes, require the SHA-256 recorded in ``<name>.sha256`` (if any).
    """
    path = Path(path)
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise InputFileError(f"{path}: {size} bytes, expected {expected_size}")
    if check is not None:
        check(path)
    pins = {k.lower(): v.lower() for k, v in (hashes or {}).items() if v}
    digests = file_digests(path, sorted({"sha256", *pins}))
    for name, want in pins.items():
        if digests[name] != want:
            raise InputFileError(f"{path}: {name.upper()} {digests[name]}, expected {want}")
    recorded = _recorded(path) if use_record and not pins else None
    if recorded is not None and digests["sha256"] != recorded:
        raise InputFileError(
            f"{path}: SHA-256 {digests['sha256'][:12]}... differs from the recorded "
            f"{recorded[:12]}... (changed or damaged since it was downloaded)"
        )
    return digests["sha256"]


def download(
    url: str,
    dest_dir: str | os.PathLike,
    *,
    filename: str | None = None,
    expected_size: int | None = None,
    sha256: str | None = None,
    sha1: str | None = None,
    check: Callable[[Path], None] | None = None,
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
    sha256, sha1 : str, optional
        Hex digests the file must have (e.g. a published SHA-1).
    check : callable, optional
        Content check of the complete file: raises :class:`InputFileError` if it is not the
        expected kind of file (e.g. an HTML error page served with HTTP 200; not retried, the
        partial file is removed) or :class:`IncompleteDownload` if it is cut short (resumed).
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
    A file already at the destination is reused when it passes the checks (see the module
    notes) and is otherwise deleted and fetched again. A ``.part`` file left by an interrupted
    run is resumed with ``Range: bytes=N-``; servers that ignore ``Range`` (HTTP 200) make it
    restart.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    name = filename or Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot derive a file name from URL {url!r}; pass filename=")
    final, part = dest / name, dest / f"{name}.part"
    pins = {"sha256": sha256, "sha1": sha1}
    if final.exists():
        try:
            digest = verify_file(final, expected_size=expected_size, hashes=pins, check=check)
            return _finish(final, url, digest)
        except (InputFileError, IncompleteDownload) as exc:
            log.warning("%s; fetching it again", exc)
            final.unlink()
            final.with_name(final.name + ".sha256").unlink(missing_ok=True)

    def attempt() -> str:
        total = _fetch_once(url, part, timeout=timeout, progress=progress)
        size = part.stat().st_size
        if expected_size is not None and size != expected_size:
            part.unlink()
            if total is not None and total != expected_size:
                raise RemoteError(f"{url}: server has {total} bytes, expected {expected_size}")
            raise IncompleteDownload(f"{url}: got {size} bytes, expected {expected_size}")
        if check is not None:
            try:
                check(part)
            except InputFileError as exc:  # not the file at all: retrying will not help
                part.unlink()
                raise RemoteError(f"{url} did not send the expected file: {exc}") from exc
        try:
            return verify_file(part, hashes=pins, use_record=False)
        except InputFileError as exc:  # complete but different bytes: fetch again
            part.unlink()
            raise IncompleteDownload(f"{url}: {exc}") from exc

    digest = retry_call(attempt, what=f"download of {url}", retries=retries, backoff=backoff)
    os.replace(part, final)
    return _finish(final, url, digest)


def _finish(path: Path, url: str, digest: str) -> DownloadResult:
    if _recorded(path) != digest:
        with atomic_path(path.with_name(path.name + ".sha256")) as tmp:
            tmp.write_text(f"{digest}  {path.name}\n")
    return DownloadResult(path=path, url=url, size=path.stat().st_size, sha256=digest)
