"""A webhook receiver on loopback: where `hasthook demo`, bench/ and the tests send messages.

apprise's json:// (and mmost://, and slack:// once pointed here) POSTs each
message to it; every request is kept with its path, JSON body and arrival
time, so a caller can show, count and time what arrived without any network
beyond 127.0.0.1. It can go down (the port refuses connections) and come back
on the same port, and hold requests open (`hold.clear()`) so a test can kill
the sender mid-send. Standard library only.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpSink:
    """An HTTP server on 127.0.0.1 recording each POST (and GET: a heartbeat's ping).

    `requests` holds {method, path, body, headers, at (monotonic), time (epoch)};
    `status` is what it answers; `base` (host:port) goes into a json:// URL.
    """

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.hold = threading.Event()   # cleared: requests wait until set
        self.hold.set()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """An apprise json:// URL delivering here, under /path."""
        return f"json://{self.base}/{path.lstrip('/')}"

    def up(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - a heartbeat ping
                self.do_POST()

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with sink.lock:
                    sink.requests.append({"method": self.command, "path": self.path,
                                          "body": body,
                                          "headers": dict(self.headers),
                                          "at": time.monotonic(), "time": time.time()})
                sink.hold.wait(120)
                self.send_response(sink.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if sink.status == 200 else b"error")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client killed mid-request (the kill -9 tests) is expected

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, path_part: str = "") -> list[dict[str, Any]]:
        """The requests so far whose path contains path_part, in arrival order."""
        with self.lock:
            return [r for r in self.requests if path_part in r["path"]]

    def __enter__(self) -> HttpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self.down()
