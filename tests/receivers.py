"""Real message receivers on loopback for the notification tests.

HttpSink: an HTTP server taking webhook POSTs (json://, mmost://, and slack://
once its endpoint is pointed here), recording path and JSON body; it lives in
the package (hasthook/sim/receiver.py) because `hasthook demo` and bench/ use
it too. SmtpSink: a real SMTP server (aiosmtpd) with AUTH over plain text,
recording each mail. Both can go down (the port refuses connections) and come
back on the same port, and HttpSink can hold requests open so a test can kill
the sender mid-send.
"""

from __future__ import annotations

import email
import email.policy

from hasthook.sim.driver import wait_for
from hasthook.sim.receiver import HttpSink, free_port

__all__ = ["HttpSink", "SmtpSink", "free_port", "wait_until"]


def wait_until(cond, timeout: float = 30, what: str = "condition"):
    """Poll `cond` until it returns something true; that value is returned."""
    return wait_for(cond, timeout, what)


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
