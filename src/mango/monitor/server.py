"""The monitor's web server: standard-library HTTP on 127.0.0.1, one page, one JSON, images.

Why the standard library (``ThreadingHTTPServer``): the page is one file and the data one small JSON
polled every second, so a web framework would only add an install. The server binds the loopback
address only: a run's images and settings are not published to the network.
"""
from __future__ import annotations

import errno
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import MangoError, first_line
from . import DEFAULT_PORT
from .page import PAGE
from .state import RunWatcher

HOST = "127.0.0.1"
_IMAGE = re.compile(r"^/image/([A-Za-z0-9_.-]+)\.png$")
log = logging.getLogger("mango.monitor")


class MonitorServer(ThreadingHTTPServer):
    """Serves the live view of ``run_dir`` on ``http://127.0.0.1:port/`` (port 0: a free one)."""

    daemon_threads = True  # a browser's open connection never keeps the process alive

    def __init__(self, run_dir: str | Path, port: int = DEFAULT_PORT) -> None:
        if not 0 <= port <= 65535:
            raise MangoError(f"--port must be 0..65535 (0 picks a free one), got {port}")
        try:
            super().__init__((HOST, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MangoError(f"port {port} on {HOST} is in use: choose another with --port "
                                 "(--port 0 picks a free one)") from None
            raise MangoError(f"cannot listen on {HOST}:{port}: {exc.strerror or first_line(exc)}") from None
        self.watcher = RunWatcher(run_dir)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def start(self) -> threading.Thread:
        """Serve from a background thread (tests, notebooks); :meth:`stop` ends it."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                  name="mango-monitor")
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: MonitorServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802  (the standard library's name)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE.encode())
            elif path == "/state.json":
                body = json.dumps(self.server.watcher.state(), allow_nan=False).encode()
                self._send(200, "application/json", body)
            elif m := _IMAGE.match(path):
                png = self.server.watcher.image(m.group(1))
                if png is None:
                    self._send(404, "text/plain", f"no image {m.group(1)} in this run\n".encode())
                else:
                    self._send(200, "image/png", png, cache=True)
            else:
                self._send(404, "text/plain", b"not found: the monitor serves /, /state.json and /image/ID.png\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except Exception as exc:  # a bug: keep serving, say what failed
            log.exception("monitor request %s failed", path)
            self._send(500, "text/plain", f"{type(exc).__name__}: {first_line(exc)}\n".encode())

    def _send(self, code: int, kind: str, body: bytes, cache: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        # an image id names one image for the life of the run; state and page change
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Requests are not logged: a page polling every second would flood the terminal."""
