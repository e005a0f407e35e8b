"""Real message receivers on loopback for the notification tests.

HttpSink: an HTTP server taking webhook POSTs (json://, mmost://, and slack://
once its endpoint is pointed here), recording path and JSON body. SmtpSink: a
real SMTP server (aiosmtpd) with AUTH over plain text, recording each mail.
Both can go down (the port refuses connections) and come back on the same
port, and HttpSink can hold requests open so a test can kill the sender
mid-send.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float = 30, what: str = "condition"):
    """Poll `cond` until it returns something true; that value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class HttpSink:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.requests: list[dict] = []
        self.status = 200
        self.hold = threading.Event()   # cleared: requests wait until set
        self.hold.set()
        self._server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()
        self.up()

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with sink.lock:
                    sink.requests.append({"path": self.path, "body": body,
                                          "headers": dict(self.headers),
                                          "at": time.monotonic()})
                sink.hold.wait(120)
                self.send_response(sink.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if sink.status == 200 else b"error")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client killed mid-request (the kill -9 tests) is expected

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, path_part: str = "") -> list[dict]:
        with self.lock:
            return [r for r in self.requests if path_part in r["path"]]


class SmtpSink:
    def __init__(self, password: str = "s3cret-Pw0rd"):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.port = free_port()
        self.password = password
        self.mails: list[email.message.EmailMessage] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                sink.mails.append(email.message_from_bytes(
                    envelope.original_content or envelope.content, policy=email.policy.default))
                return "250 OK"

        def auth(server, session, envelope, mechanism, data):
            return AuthResult(success=data.password == password.encode())

        self._make = lambda: Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                        auth_require_tls=False, authenticator=auth)
        self._ctl = None
        self.up()

    def url(self, user: str = "alerts", to: str = "ops@example.org") -> str:
        """apprise mailto:// in insecure (plain SMTP) mode to this server."""
        return (f"mailto://{user}:{self.password}@127.0.0.1:{self.port}"
                f"?from=hasthook@example.org&to={to}&mode=insecure")

    def up(self) -> None:
        self._ctl = self._make()
        self._ctl.start()

    def down(self) -> None:
        if self._ctl:
            self._ctl.stop()
            self._ctl = None

    @staticmethod
    def text(mail) -> str:
        part = mail.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part else mail.get_payload()
