"""The retry policy and error types of the connectors, and a checked HTTP POST.

Every remote call of :mod:`stardata.sources` goes through :func:`retry_call`, which retries
transient failures (HTTP 5xx, 408, 429, time-outs, dropped connections, truncated bodies) with
exponential backoff and then raises a one-line :class:`RemoteError` naming what failed. Plain
file downloads (resumable, verified) are in :mod:`stardata.sources.download`.

Set the environment variable ``STARDATA_BACKOFF_SCALE`` (a float, default 1) to scale every
backoff sleep; tests set it to 0.
"""

from __future__ import annotations

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
from typing import TypeVar

from stardata.errors import ArchiveError, IncompleteDownload, RemoteError

__all__ = [
    "USER_AGENT",
    "http_post",
    "is_permanent_message",
    "is_transient",
    "retry_call",
    "service_message",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
USER_AGENT = "stardata/0.1 (python-urllib)"
_MAX_SLEEP = 120.0
_5XX_REASONS = ("internal server error", "bad gateway", "service unavailable", "gateway time")


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
                raise RemoteError(f"{what} failed: {_one_line(exc, 600)}") from exc
            if attempt + 1 == attempts:
                raise RemoteError(
                    f"{what} failed after {attempts} attempts: {_one_line(exc)}"
                ) from exc
            delay = _backoff_seconds(backoff, attempt)
            log.warning("%s: %s; retrying in %.1f s", what, _one_line(exc, 120), delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


_PERMANENT = re.compile(
    r"\b(invalid|not valid|unsupported|not supported|not allowed|too many|exceeds?|malformed|"
    r"missing|bad request)\b",
    re.IGNORECASE,
)


def service_message(body: bytes, limit: int = 300) -> str:
    """The service's own words in an error body (HTML tags and the status prefix stripped).

    The Gaia data server answers e.g. ``Error 500: Invalid Data Structure parameter: ...
    Cannot process request: ... due to: ...``; the text before ``Cannot process request`` is
    the reason, the rest repeats it with the request's internals.
    """
    text = re.sub(r"<[^>]+>", " ", body.decode("utf-8", errors="replace"))
    text = " ".join(text.split())
    text = re.sub(r"^(?:HTTP\s*)?Error\s*\d{3}\s*:?\s*", "", text, flags=re.IGNORECASE)
    head, sep, _ = text.partition("Cannot process request")
    text = head.strip() if sep and head.strip() else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_permanent_message(message: str) -> bool:
    """Whether a service's error text states a problem with the request (retrying cannot help)."""
    return bool(_PERMANENT.search(message))


def http_post(url: str, fields: dict[str, str], *, timeout: float = 300) -> bytes:
    """POST url-encoded ``fields`` and return the whole body, checking its announced length.

    Raises
    ------
    urllib.error.HTTPError
        For a transient HTTP error status (5xx, 408, 429) without a reason of the service's own.
    ArchiveError
        For other HTTP errors, and for a 5xx whose body says the request itself is wrong (the
        Gaia data server answers a rejected parameter with HTTP 500), with the service's words.
    IncompleteDownload
        If the body is shorter than its ``Content-Length``.
    """
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        try:
            message = service_message(exc.read(8192))
        except OSError:  # the error body itself was cut off
            message = ""
        if is_transient(exc) and not is_permanent_message(message):
            raise
        raise ArchiveError(f"HTTP Error {exc.code} from {url}: {message}") from exc
    with response:
        announced = response.headers.get("Content-Length")
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:
            raise IncompleteDownload(f"{url}: body cut short ({len(exc.partial)} bytes)") from exc
    if announced is not None and len(body) != int(announced):
        raise IncompleteDownload(f"{url}: got {len(body)} of {announced} bytes")
    return body
