"""A local HTTP server standing in for SDSS and the Gaia archive, with fault injection.

:class:`MirrorServer` serves static files with HTTP ``Range`` support and emulates the Gaia
archive TAP (sync and async, with an uploaded id table) and DataLink endpoints on 127.0.0.1,
with fault hooks (:class:`Fault`: 5xx on the Nth request, truncated bodies, dropped
connections, stalls, ignored ``Range``).
"""

from __future__ import annotations

import gzip
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl

from stardata.testing.archive import (
    TAP_ERROR,
    XP_EXT,
    DataLinkRejected,
    execute_adql,
    parse_form,
    upload_tables,
    votable_bytes,
    xp_files,
)
from stardata.testing.faults import Fault

__all__ = ["DataLinkRejected", "Fault", "MirrorServer"]


class MirrorServer:
    """A threaded stdlib HTTP server on 127.0.0.1 that stands in for SDSS and the Gaia archive.

    Parameters
    ----------
    files : dict, optional
        URL path (e.g. ``"/sas/allStar.fits"``) to a file path or bytes, served with ``Range``.
    tables : dict, optional
        Archive tables by qualified name (``"gaiadr3.gaia_source"``) as polars DataFrames;
        queried by the TAP endpoints with an uploaded table (``tap_upload.<name>``).
    xp : polars.DataFrame, optional
        XP_CONTINUOUS rows served by the DataLink endpoint.
    shuffle : bool, optional
        Return TAP rows in a scrambled order, as nothing guarantees the archive's order.
    max_datalink_ids : int, optional
        The archive's DataLink limit (5,000 ids a request); more is answered with HTTP 400.
    datalink_structures : sequence of str, optional
        ``DATA_STRUCTURE`` values the DataLink endpoint accepts (the operational archive's
        ``INDIVIDUAL`` and ``RAW`` by default); another is rejected as the archive does: HTTP 500
        with ``Invalid Data Structure parameter: 'X', valid ones are: ...``. ``INDIVIDUAL`` and
        ``DATAMODEL_STANDARD`` give one file per source, the others one file for all.

    Attributes
    ----------
    tap_result : bytes or None
        When set, every TAP job answers these bytes (e.g. a recorded real archive VOTable).
    datalink_result : bytes or None
        When set, every DataLink request answers these bytes with HTTP 200 (a recorded product
        zip, or an error page as some services send).

    Notes
    -----
    Endpoints: ``GET/HEAD <files>``; ``POST /tap-server/tap/sync`` and ``/tap-server/tap/async``
    (``REQUEST=doQuery&LANG=ADQL&QUERY=...&UPLOAD=ids,param:ids`` multipart), ``GET
    /tap-server/tap/async/<job>/{phase,results/result,error}``; ``POST /data-server/data``
    (``ID, RETRIEVAL_TYPE=XP_CONTINUOUS, FORMAT, DATA_STRUCTURE``), answering a zip. The ADQL
    understood is ``SELECT [TOP n] a.col [AS name], ... FROM t AS a [JOIN t2 AS b ON b.x =
    a.y]...`` (astroquery's synchronous ``launch_job`` adds ``TOP 2000``).
    Every request is appended to :attr:`requests`.
    """

    tap_path = "/tap-server/tap"
    datalink_path = "/data-server/data"

    def __init__(
        self,
        *,
        files=None,
        tables=None,
        xp=None,
        shuffle=True,
        max_datalink_ids=5000,
        datalink_structures=("INDIVIDUAL", "RAW"),
    ):
        self.files: dict[str, object] = dict(files or {})
        self.tables = {name.lower(): frame for name, frame in (tables or {}).items()}
        self.xp = xp
        self.shuffle = shuffle
        self.max_datalink_ids = max_datalink_ids
        self.datalink_structures = tuple(datalink_structures)
        self.tap_result: bytes | None = None
        self.datalink_result: bytes | None = None
        self.faults: list[Fault] = []
        self.requests: list[dict] = []
        self._jobs: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MirrorServer:
        """Start serving on a free port (idempotent)."""
        if self._httpd is None:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            self._httpd.daemon_threads = True
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        if self._httpd is None:
            raise RuntimeError("MirrorServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def tap_url(self) -> str:
        """TAP base URL (pass as ``tap_url``)."""
        return self.url + self.tap_path

    @property
    def datalink_url(self) -> str:
        """DataLink URL (pass as ``datalink_url``)."""
        return self.url + self.datalink_path

    def add_file(self, url_path: str, content) -> str:
        """Serve ``content`` (a path or bytes) at ``url_path``; return its full URL."""
        self.files[url_path] = content
        return self.url + url_path

    def inject(self, prefix: str, kind: str = "status", **kwargs) -> Fault:
        """Add a :class:`Fault` for requests under ``prefix`` and return it."""
        fault = Fault(prefix=prefix, kind=kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def count(self, prefix: str, method: str | None = None) -> int:
        """Number of requests received under ``prefix`` (optionally of one method)."""
        return sum(
            1
            for r in self.requests
            if r["path"].startswith(prefix) and (method is None or r["method"] == method)
        )

    def _take_fault(self, path: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.take(path, method):
                    return fault
        return None

    # -- TAP -----------------------------------------------------------------------------------
    def run_query(self, query: str, uploads: dict[str, pl.DataFrame]) -> bytes:
        """Execute the supported ADQL subset; return a VOTable (raises ValueError on errors)."""
        if self.tap_result is not None:
            return self.tap_result
        from stardata.testing.cone import execute_cone, is_cone_query

        run = execute_cone if is_cone_query(query) else execute_adql
        frame, top = run(query, uploads, self.tables)
        if self.shuffle and frame.height > 1:
            frame = frame.sample(fraction=1.0, shuffle=True, seed=frame.height)
        return votable_bytes(frame if top is None else frame.head(top))

    def new_job(self, phase: str, payload: bytes) -> str:
        with self._lock:
            job_id = f"{len(self._jobs) + 1:06d}O"
            self._jobs[job_id] = (phase, payload)
        return job_id

    def job(self, job_id: str) -> tuple[str, bytes] | None:
        with self._lock:
            return self._jobs.get(job_id)

    # -- DataLink ------------------------------------------------------------------------------
    def datalink(self, fields: dict[str, str]) -> bytes:
        """Answer a DataLink request with a zip of XP_CONTINUOUS products (ValueError if bad)."""
        kind = fields.get("RETRIEVAL_TYPE", "").upper()
        if kind != "XP_CONTINUOUS":
            raise ValueError(f"Unsupported RETRIEVAL_TYPE {kind!r}")
        fmt = fields.get("FORMAT", "votable").lower()
        if fmt not in XP_EXT:
            raise ValueError(f"Unsupported FORMAT {fmt!r}")
        ids = [int(re.sub(r"\D", "", item)) for item in fields.get("ID", "").split(",") if item]
        if not ids:
            raise ValueError("Missing ID")
        if len(ids) > self.max_datalink_ids:
            raise ValueError(f"Too many ids: {len(ids)} > {self.max_datalink_ids}")
        structure = fields.get("DATA_STRUCTURE", "INDIVIDUAL")
        if structure not in self.datalink_structures:
            raise DataLinkRejected(
                f"Invalid Data Structure parameter: '{structure}', valid ones are: "
                + ", ".join(self.datalink_structures)
            )
        if self.datalink_result is not None:
            return self.datalink_result
        rows = self.xp.filter(pl.col("source_id").is_in(ids)) if self.xp is not None else None
        return xp_files(rows, fmt, combined=structure not in ("INDIVIDUAL", "DATAMODEL_STANDARD"))


def _handler_for(mirror: MirrorServer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "MirrorServer/1.0"

        def log_message(self, *args) -> None:  # keep test output quiet
            return

        # -- plumbing ------------------------------------------------------------------------
        def _begin(self, method: str) -> Fault | None:
            split = urllib.parse.urlsplit(self.path)
            path = split.path
            record = {
                "method": method,
                "path": path,
                "query": split.query,
                "headers": dict(self.headers),
            }
            body = b""
            if method == "POST":
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            record["body"] = body
            mirror.requests.append(record)
            self._path, self._body, self._truncate = path, body, None
            fault = mirror._take_fault(path, method)
            if fault is None:
                return None
            if fault.kind == "drop":
                self.close_connection = True
                return fault
            if fault.kind == "stall":
                time.sleep(fault.delay)
            if fault.kind == "status":
                page = fault.body or f"<html><body>Error {fault.status}</body></html>"
                self._send(fault.status, page, "text/plain" if fault.body else "text/html")
                return fault
            if fault.kind == "truncate":
                self._truncate = fault.keep
            self._fault_kind = fault.kind
            return None

        def _send(self, status: int, body, ctype="text/html", headers=None) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                if self._truncate is not None:
                    data = data[: int(len(data) * self._truncate)]
                    self.close_connection = True
                self.wfile.write(data)

        # -- verbs ---------------------------------------------------------------------------
        def do_HEAD(self) -> None:  # noqa: N802
            self._handle("HEAD")

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _handle(self, method: str) -> None:
            self._fault_kind, self._truncate = None, None
            try:
                if self._begin(method) is not None:
                    return
                if method == "POST":
                    self._post()
                elif self._path.startswith(mirror.tap_path + "/async/"):
                    self._job_get()
                else:
                    self._static()
            except OSError:  # the client went away (e.g. after its time-out)
                self.close_connection = True
            except Exception as exc:  # a bug in the emulator: answer it, do not hang
                self._truncate = None
                self._send(500, f"MirrorServer error: {type(exc).__name__}: {exc}", "text/plain")

        def _post(self) -> None:
            fields, files = parse_form(self.headers.get("Content-Type", ""), self._body)
            if self._path == mirror.datalink_path:
                try:
                    self._send(200, mirror.datalink(fields), "application/zip")
                except DataLinkRejected as exc:
                    self._send(500, exc.page(mirror.datalink_url), "text/plain")
                except ValueError as exc:
                    self._send(400, f"<html><body><li>{exc}</li></body></html>")
            elif self._path in (mirror.tap_path + "/sync", mirror.tap_path + "/async"):
                self._tap(fields, files, sync=self._path.endswith("/sync"))
            else:
                self._send(404, "Not found")

        # -- routes --------------------------------------------------------------------------
        def _static(self) -> None:
            content = mirror.files.get(self._path)
            if content is None:
                self._send(404, "Not found")
                return
            data = content if isinstance(content, bytes) else Path(content).read_bytes()
            match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
            if match and self._fault_kind != "ignore_range":
                start = int(match.group(1))
                stop = int(match.group(2)) + 1 if match.group(2) else len(data)
                if start >= len(data):
                    self._send(416, b"", headers={"Content-Range": f"bytes */{len(data)}"})
                    return
                rng = f"bytes {start}-{min(stop, len(data)) - 1}/{len(data)}"
                self._send(
                    206,
                    data[start:stop],
                    "application/octet-stream",
                    {"Content-Range": rng, "Accept-Ranges": "bytes"},
                )
                return
            self._send(200, data, "application/octet-stream", {"Accept-Ranges": "bytes"})

        def _tap(self, fields: dict, files: dict, *, sync: bool) -> None:
            try:
                if fields.get("REQUEST", "doQuery") != "doQuery" or "QUERY" not in fields:
                    raise ValueError("Missing REQUEST=doQuery or QUERY")
                result, phase = (
                    mirror.run_query(fields["QUERY"], upload_tables(fields, files)),
                    "COMPLETED",
                )
            except ValueError as exc:
                result, phase = TAP_ERROR.format(message=exc).encode(), "ERROR"
            if sync:
                self._send(200 if phase == "COMPLETED" else 400, result, "text/xml")
                return
            job_id = mirror.new_job(phase, result)
            location = f"{mirror.url}{mirror.tap_path}/async/{job_id}"
            self._send(303, b"", headers={"Location": location})

        def _job_get(self) -> None:
            parts = self._path[len(mirror.tap_path + "/async/") :].split("/", 1)
            job = mirror.job(parts[0])
            if job is None:
                self._send(404, "No such job")
                return
            phase, payload = job
            what = parts[1] if len(parts) > 1 else ""
            if what == "phase":
                self._send(200, phase, "text/plain")
            elif what == "results/result" and phase == "COMPLETED":
                self._send(200, gzip.compress(payload, mtime=0), "application/x-votable+xml")
            elif what == "error" and phase == "ERROR":
                self._send(200, payload, "text/xml")
            elif what == "results/result":  # a failed job has no result: answer its error
                self._send(400, payload, "text/xml")
            else:
                self._send(404, f"Job {parts[0]} has no {what or 'summary'} in phase {phase}")

    return Handler
