"""Syslog without the logging module: one datagram per message, as logger(1) sends.

Under hastd, stdio is /dev/null, so syslog is the only voice the hook has.
The socket is settings.syslog.socket, else /var/run/log (FreeBSD), else
/dev/log (Linux). With no socket, lines go to `hasthook.log` in the state dir.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import time

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from .config.settings import Settings

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
    "console": 14, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}
LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5,
          "info": 6, "debug": 7}
SOCKETS = ("/var/run/log", "/dev/log")
SEND_TIMEOUT = 2.0
# A message is one line of text: a newline becomes a space, other control characters
# (CR, ESC, C1 such as CSI) and Unicode's line separators a `?`, so a resource name
# cannot forge a line or drive a terminal.
_CLEAN = {c: "?" for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
          if c != 0x09} | {0x0A: " "}


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def parse_priority(spec: str, default_facility: str = "user") -> tuple[int, int]:
    """`user.notice` -> (facility, level), as logger -p takes it."""
    fac, _, lvl = spec.partition(".")
    if not lvl:
        fac, lvl = default_facility, fac
    if fac not in FACILITIES or lvl not in LEVELS:
        raise ValueError(f"unknown syslog priority {spec!r}")
    return FACILITIES[fac], LEVELS[lvl]


class Levels:
    """Short names over `self(level, message)`, so call sites read as what they say."""

    def __call__(self, level: str, message: str, *, facility: int | None = None,
                 tag: str | None = None) -> None:
        raise NotImplementedError

    def info(self, msg: str) -> None:
        self("info", msg)

    def notice(self, msg: str) -> None:
        self("notice", msg)

    def warning(self, msg: str) -> None:
        self("warning", msg)

    def error(self, msg: str) -> None:
        self("err", msg)

    def crit(self, msg: str) -> None:
        self("crit", msg)


class Log(Levels):
    """Send `tag[pid]: message` lines to syslog; `echo` also writes them to stderr."""

    def __init__(self, tag: str = "hasthook", facility: str = "daemon",
                 sock_path: str | None = None, fallback_dir: str | None = None,
                 echo: bool = False):
        self.tag = tag
        self.facility = FACILITIES.get(facility, FACILITIES["daemon"])
        self.fallback_dir = fallback_dir
        self.echo = echo
        self._path = sock_path or next((p for p in SOCKETS if _is_socket(p)), None)
        self._sock: socket.socket | None = None

    @classmethod
    def from_settings(cls, settings: Settings, echo: bool = False) -> Log:
        sl = settings.syslog
        return cls(sl.tag, sl.facility, sl.socket, settings.state_dir, echo)

    def __call__(self, level: str, message: str, *, facility: int | None = None,
                 tag: str | None = None) -> None:
        """Log one line; never raises (a hook must not die because syslogd did)."""
        message = message.translate(_CLEAN)
        if self.echo:
            try:
                print(f"{tag or self.tag}: {message}", file=sys.stderr)
            except (OSError, ValueError):
                pass
        fac = self.facility if facility is None else facility
        pri = fac * 8 + LEVELS.get(level, LEVELS["info"])
        stamp = time.strftime("%b %e %H:%M:%S")
        line = f"<{pri}>{stamp} {tag or self.tag}[{os.getpid()}]: {message}"
        if self._path and self._send(line.encode("utf-8", "replace")):
            return
        self._fallback(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {level} "
                       f"{tag or self.tag}[{os.getpid()}]: {message}\n")

    def _send(self, data: bytes) -> bool:
        try:
            if self._sock is None:
                assert self._path is not None
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.connect(self._path)
                # A full or stuck syslogd must not hang the hook (a recovery holds
                # off the time box): past this, the line goes to the fallback file.
                self._sock.settimeout(SEND_TIMEOUT)
            self._sock.send(data[:8192])
            return True
        except OSError:
            if self._sock is not None:
                self._sock.close()
            self._sock = None
            return False

    def _fallback(self, text: str) -> None:
        if not self.fallback_dir:
            return
        from . import trust

        try:
            trust.state_dir(self.fallback_dir)
            fd = os.open(os.path.join(self.fallback_dir, "hasthook.log"),
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except (OSError, trust.Untrusted):
            pass  # nowhere safe to write: syslog is all there is
