"""apprise URLs as a channel kind: each URL one target, a group of rows one message.

The one module that imports apprise, and only when a message is to go out (a
hook with nothing to send never loads it). URLs are named by apprise's privacy
form (their `key`), and a failure's text is scrubbed of every URL part that
form hides.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from typing import Any

from .. import redact
from ..event import SEVERITY_RANK
from ..record import Record
from ..units import plural, when
from .channel import ChannelError

NOTIFY_TYPE = {"critical": "failure", "warning": "warning", "info": "info"}


class Message(Record):
    """One message as apprise sends it."""

    title: str
    body: str
    notify_type: str = "info"
    body_format: str | None = None


def compose(rows: list[dict[str, Any]], body_format: str | None = None,
            now: float | None = None) -> Message:
    """One message for a group of rows, naming every resource and event, its body
    written in `body_format` (see as_format).

    A single row goes out as rendered. A burst gets a title that counts it,
    a line per event kind listing its resources, then one line per row: when it
    happened and its own title.
    """
    kinds = {r["kind"] for r in rows}
    if kinds == {"resolved"}:
        ntype = "success"
    else:
        worst = max((r["severity"] for r in rows if r["kind"] != "resolved"),
                    key=lambda s: SEVERITY_RANK.get(s, 1))
        ntype = NOTIFY_TYPE.get(worst, "warning")
    if len(rows) == 1:
        return Message(rows[0]["title"], as_format(rows[0]["body"], body_format), ntype,
                       body_format)
    label = "resolved" if ntype == "success" else worst
    by_event: dict[str, list[str]] = {}
    for r in rows:
        names = by_event.setdefault(r["event"] or "?", [])
        if r["resource"] not in names:
            names.append(r["resource"] or "?")
    resources = list(dict.fromkeys(r["resource"] or "?" for r in rows))
    hosts = ", ".join(dict.fromkeys(r["host"] or "?" for r in rows))
    counts = Counter(r["event"] or "?" for r in rows)
    if len(counts) == 1:
        [(ev, n)] = counts.items()
        what = (f"{ev} on {len(resources)} resources" if len(resources) > 1
                else f"{ev} x{n} on {resources[0]}")
    else:
        what = (f"{len(rows)} events on {plural(len(resources), 'resource')}: "
                + ", ".join(f"{e} x{n}" for e, n in counts.items()))
    title = f"[{label}] {what} ({hosts})"
    lines = [f"{ev}: {', '.join(sorted(names, key=_natural))}" for ev, names in by_event.items()]
    lines.append("")
    now = time.time() if now is None else now
    lines += [f"{when(r['created'], now)} {r['title']}" for r in rows]
    return Message(title, as_format("\n".join(lines), body_format), ntype, body_format)


def as_format(text: str, body_format: str | None) -> str:
    """Plain text (templates, grouped lines) written in a body format, its lines kept.

    Markdown and text services keep a newline as a line break. HTML joins lines and
    reads markup, so each line is escaped and the breaks are <br>: an email's HTML part
    shows one line per event, and the text part apprise derives from it too.
    """
    if body_format != "html":
        return text
    import html

    return "<br>".join(html.escape(line, quote=False) for line in text.split("\n"))


def native_format(server: Any) -> str:
    """The body format a plugin sends in: its URL's `format=`, else its own default.

    Composing in it leaves apprise nothing to convert; a body given with no format
    is passed through as is, so plain text became an HTML email run together.
    """
    resolve = getattr(server, "resolve_format", None)  # apprise 2.x
    fmt = resolve(None) if resolve is not None else server.notify_format
    if isinstance(fmt, tuple | list):
        fmt = fmt[0]
    return str(getattr(fmt, "value", fmt))


def _natural(name: str) -> list[Any]:
    """Sort key putting r2 before r10, as an admin reads a resource list."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def channel_urls(spec: Any) -> tuple[list[str], str | None, list[str] | None]:
    """A channel spec as (urls, apprise_config path, tags). Pure; raises ChannelError."""
    if isinstance(spec, str):
        return [spec], None, None
    if isinstance(spec, list):
        return [str(u) for u in spec], None, None
    if isinstance(spec, dict):
        urls = spec.get("urls") or []
        urls = [urls] if isinstance(urls, str) else [str(u) for u in urls]
        tag = spec.get("tag")
        tags = [tag] if isinstance(tag, str) else (list(tag) if tag else None)
        if urls or spec.get("apprise_config"):
            return urls, spec.get("apprise_config"), tags
    raise ChannelError("has no apprise URL (give a URL, a list, `urls` or `apprise_config`)")


def body_format(spec: Any) -> str | None:
    return spec.get("format") if isinstance(spec, dict) else None


class Target(Record):
    """One apprise URL of a channel: `key` (channel#N-digest: no URL) names it in the
    database, `shown` (redact.url of apprise's privacy form) in logs and output."""

    key: str
    server: Any
    raw: str
    body_format: str | None = None
    shown: str = ""

    def compose(self, rows: list[dict[str, Any]]) -> Message:
        return compose(rows, self.body_format or native_format(self.server))

    def send(self, msg: Message, timeout: float) -> str | None:
        """Send once, blocking; returns None or why it failed (secret-free).

        Callers bound the wait (see send_all); the socket timeouts are only
        lowered here so a dead server does not hold a thread for long.
        """
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            if hasattr(self.server, attr):
                setattr(self.server, attr, min(getattr(self.server, attr) or timeout, timeout))
        _capture.start()
        try:
            ok, exc = self.server.notify(body=msg.body, title=msg.title,
                                         notify_type=msg.notify_type,
                                         body_format=msg.body_format), ""
        except Exception as e:  # noqa: BLE001 - a plugin bug is a failed send
            ok, exc = False, f"{type(e).__name__}: {e}"
        lines = _capture.stop()
        if ok:
            return None
        why = "; ".join(dict.fromkeys([*lines, exc])).strip("; ")
        return redact.text(why or "apprise reported a failure", [(self.raw, self.shown)])[:500]


_capture: Any = None  # made by _apprise(): a hook that sends nothing needs no logging


def _new_capture() -> Any:
    """A logging handler keeping apprise's log lines per sending thread, so a failure
    can say why."""
    import logging

    class Capture(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self._local = threading.local()

        def start(self) -> None:
            self._local.lines = []

        def stop(self) -> list[str]:
            lines, self._local.lines = getattr(self._local, "lines", []), None
            return lines

        def emit(self, record: logging.LogRecord) -> None:
            lines = getattr(self._local, "lines", None)
            if lines is None:
                return
            msg = record.getMessage()
            if record.levelno >= logging.WARNING or msg.startswith("Socket Exception"):
                lines.append(" ".join(msg.split()))

    return Capture()


def _apprise():
    """Import apprise on first use and route its logging to the capture, not stderr."""
    import logging

    import apprise

    global _capture
    if _capture is None:
        _capture = _new_capture()
    lg = logging.getLogger("apprise")
    if _capture not in lg.handlers:
        lg.addHandler(_capture)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
    return apprise


def targets(name: str, spec: Any) -> list[Target]:
    """The apprise URLs a channel sends to; ChannelError says why there are none."""
    if spec is None:
        raise ChannelError(f"channel {name!r} is not in the config")
    try:
        urls, conf, tags = channel_urls(spec)
    except ChannelError as e:
        raise ChannelError(f"channel {name!r} {e}") from None
    apprise = _apprise()
    out: list[Target] = []
    for i, url in enumerate(urls, 1):
        server = apprise.Apprise.instantiate(url)
        if server is None:
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            raise ChannelError(f"channel {name!r}: URL {i} ({scheme}://...) is not a valid "
                               "apprise URL")
        out.append(Target(name, server, url, body_format(spec),
                          redact.url(server.url(privacy=True))))
    if conf:
        from .. import trust

        why = trust.problem(conf) if os.path.exists(conf) else f"{conf}: no such file"
        if why:  # it is read as root: a file others can change would steer the alerts
            raise ChannelError(f"channel {name!r}: apprise config refused: {why}")
        ac = apprise.AppriseConfig()
        if not ac.add(conf):
            raise ChannelError(f"channel {name!r}: cannot read apprise config {conf}")
        a = apprise.Apprise()
        a.add(ac)
        found = list(a.find(tags) if tags else a)
        if not found:
            raise ChannelError(f"channel {name!r}: no URL in {conf}"
                               + (f" tagged {', '.join(tags)}" if tags else ""))
        out += [Target(name, s, s.url(privacy=False), body_format(spec),
                       redact.url(s.url(privacy=True))) for s in found]
    import hashlib

    for i, t in enumerate(out, 1):  # stable across runs, and no part of the URL in it
        t.key = f"{name}#{i}-{hashlib.sha256(t.raw.encode()).hexdigest()[:10]}"
    return out


