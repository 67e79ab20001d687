"""Failures the local test archive can inject into its answers (:class:`Fault`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fault"]


@dataclass
class Fault:
    """A failure injected into the requests whose path starts with ``prefix``.

    Attributes
    ----------
    prefix : str
        URL path prefix the fault applies to (``"/"`` for all).
    kind : {"status", "truncate", "drop", "stall", "ignore_range"}
        Answer with ``status``; send only ``keep`` of the body under a full Content-Length;
        close the connection without answering; wait ``delay`` seconds before answering (to
        trip the client's time-out); or ignore a ``Range`` header (HTTP 200).
    status : int
        HTTP status for ``kind="status"``.
    skip : int
        Let this many matching requests through first (``skip=N-1`` hits the Nth request).
    times : int
        How many requests the fault hits.
    keep : float
        Fraction of the body sent for ``kind="truncate"``.
    method : str, optional
        Only requests with this HTTP method (e.g. ``"POST"``).
    delay : float
        Seconds to wait for ``kind="stall"``.
    body : bytes, optional
        Body sent with ``status`` (e.g. a recorded real error page); a small HTML page if None.
    """

    prefix: str
    kind: str = "status"
    status: int = 503
    skip: int = 0
    times: int = 1
    keep: float = 0.5
    method: str | None = None
    delay: float = 1.0
    body: bytes | None = None
    seen: int = 0
    fired: int = 0

    def take(self, path: str, method: str = "GET") -> bool:
        """Count a request and say whether the fault hits it."""
        if not path.startswith(self.prefix) or self.fired >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        self.fired += 1
        return True
