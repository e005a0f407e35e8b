"""Send what the outbox holds. The one module that imports apprise, and lazily.

hastd starts one short-lived hook per event, so batching and retry live in
the outbox table, not in a process. Any process may deliver, but only one at
a time: the holder of an flock on `deliver.lock` in the state dir. Every
other hook commits its rows and leaves them to the holder, which keeps
draining until nothing fresh is due before its time box ends, then checks
once more after letting go (a hook that committed while it finished saw the
lock held and left).

Grouping: rows for one channel and group key go out as ONE message once the
oldest of them has waited its group_wait. Retry: a failed URL is tried again
after an exponential backoff with jitter, by the next hook or `hasthook
flush`; URLs that took a message are not sent it again. Rows older than
settings.max_age become dead (logged crit, kept for `hasthook queue`).

Delivery is at least once: a row is claimed (`sending`, with a lease) before
the network and settled after. A deliverer killed in between leaves the row
claimed; once the lease expires the next deliverer sends it again, so a kill
at exactly that point can repeat one message. Nothing else repeats or is lost.

Secrets: URLs are shown only in apprise's privacy form, and error text is
scrubbed of every URL part that form hides.

Channel kinds: apprise URLs (here) and Alertmanager clusters
(alertmanager.py). channel_targets() picks by kind; each target composes a
group of rows into what it sends and sends it, so the outbox, grouping and
retry above are the same for both.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .event import SEVERITY_RANK
from .units import parse_duration

LOCK_NAME = "deliver.lock"
RETRY_BASE = 10.0     # the first retry waits 5-10 s ...
RETRY_CAP = 900.0     # ... doubling up to 7.5-15 min
LEASE_GRACE = 5.0     # a claim outlives the send timeout by this much
MARGIN = 3.0          # stop this long before the hook's time box
POLL = 0.2            # how often a waiting deliverer looks for new rows
MIN_SEND = 1.0        # do not start a send with less time than this left
NOTIFY_TYPE = {"critical": "failure", "warning": "warning", "info": "info"}
ABANDONED = "its deliverer stopped between sending and marking; sent again"


class ChannelError(Exception):
    """A channel cannot be used as configured; the message holds no secret."""


@dataclass
class Policy:
    """The delivery settings, in seconds."""

    group_wait: float = 2.0
    send_timeout: float = 15.0
    max_age: float = 86400.0
    hook_timeout: float = 45.0

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Policy:
        d = cls()
        return cls(*(parse_duration(settings.get(k, getattr(d, k)))
                     for k in ("group_wait", "send_timeout", "max_age", "hook_timeout")))


@dataclass
class Message:
    title: str
    body: str
    notify_type: str = "info"
    body_format: str | None = None


@dataclass
class Report:
    """What one drain did: messages sent and failed, rows that went dead."""

    sent: int = 0
    failed: int = 0
    rows_sent: int = 0
    dead: int = 0
    busy: bool = False  # another process held the lock
    errors: list[str] = field(default_factory=list)


# -- pure parts ---------------------------------------------------------


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `attempts` (1 = the first): doubling, half jittered.

    The jitter keeps hooks on many resources from retrying in lockstep.
    """
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempts - 1))
    return delay / 2 + rand() * delay / 2


def compose(rows: list[dict[str, Any]], body_format: str | None = None) -> Message:
    """One message for a group of rows, naming every resource and event.

    A single row goes out as rendered. A burst gets a title that counts it,
    a line per event kind listing its resources, then each row's own title.
    """
    kinds = {r["kind"] for r in rows}
    if kinds == {"resolved"}:
        ntype = "success"
    else:
        worst = max((r["severity"] for r in rows if r["kind"] != "resolved"),
                    key=lambda s: SEVERITY_RANK.get(s, 1))
        ntype = NOTIFY_TYPE.get(worst, "warning")
    if len(rows) == 1:
        return Message(rows[0]["title"], rows[0]["body"], ntype, body_format)
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
        what = (f"{len(rows)} events on {len(resources)} resources: "
                + ", ".join(f"{e} x{n}" for e, n in counts.items()))
    title = f"[{label}] {what} ({hosts})"
    lines = [f"{ev}: {', '.join(sorted(names, key=_natural))}" for ev, names in by_event.items()]
    lines.append("")
    lines += [f"{_hms(r['created'])} {r['title']}" for r in rows]
    return Message(title, "\n".join(lines), ntype, body_format)


def _natural(name: str) -> list[Any]:
    """Sort key putting r2 before r10, as an admin reads a resource list."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


_URL_PARTS = re.compile(r"[^/:@?&=#,;+\s]+")


def redact(text: str, urls: Iterable[tuple[str, str]]) -> str:
    """Remove from `text` every part of each (url, privacy_url) the privacy form hides."""
    from urllib.parse import quote, unquote

    for url, shown in urls:
        shown_u = unquote(shown)
        for part in sorted(set(_URL_PARTS.findall(url)), key=len, reverse=True):
            plain = unquote(part)
            if len(plain) < 3 or plain in shown_u:
                continue
            for form in sorted({part, plain, quote(plain, safe="")}, key=len, reverse=True):
                text = text.replace(form, "****")
    return text


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


# -- apprise ------------------------------------------------------------


@dataclass
class Target:
    """One apprise URL of a channel. `key` (its privacy form) names it everywhere."""

    key: str
    server: Any
    raw: str
    body_format: str | None = None

    def compose(self, rows: list[dict[str, Any]]) -> Message:
        return compose(rows, self.body_format)

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
        return redact(why or "apprise reported a failure", [(self.raw, self.key)])[:500]


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
        out.append(Target(server.url(privacy=True), server, url, body_format(spec)))
    if conf:
        ac = apprise.AppriseConfig()
        if not ac.add(conf):
            raise ChannelError(f"channel {name!r}: cannot read apprise config {conf}")
        a = apprise.Apprise()
        a.add(ac)
        found = list(a.find(tags) if tags else a)
        if not found:
            raise ChannelError(f"channel {name!r}: no URL in {conf}"
                               + (f" tagged {', '.join(tags)}" if tags else ""))
        out += [Target(s.url(privacy=True), s, s.url(privacy=False), body_format(spec))
                for s in found]
    seen: Counter[str] = Counter()
    for t in out:  # two URLs that differ only in a secret would share a key
        seen[t.key] += 1
        if seen[t.key] > 1:
            t.key += f"#{seen[t.key]}"
    return out


def channel_targets(cfg, name: str, store=None) -> list[Any]:
    """A channel's targets by kind: its apprise URLs, or one Alertmanager cluster
    (alertmanager.Target). Each has `key`, `compose(rows)` and `send(what, timeout)`."""
    from . import alertmanager

    spec = cfg.channels.get(name)
    if not alertmanager.is_channel(spec):
        return targets(name, spec)
    try:
        return [alertmanager.target(name, spec, cfg.settings, store)]
    except ValueError as e:
        raise ChannelError(f"channel {name!r} {e}") from None


def send_all(jobs: list[tuple[Any, Any]], timeout: float) -> dict[str, str | None]:
    """Send each (URL, message) at once, each in a thread; {key: None or why it failed}.

    A URL still busy after `timeout` counts as failed. Its thread may yet
    deliver, so a retry can repeat that message: at least once, never lost.
    """
    out: dict[str, str | None] = {}
    threads = [threading.Thread(target=lambda t=t, m=m: out.__setitem__(t.key, t.send(m, timeout)),
                                name=f"send {t.key}", daemon=True) for t, m in jobs]
    end = time.monotonic() + timeout
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(0.0, end - time.monotonic()))
    return {t.key: out[t.key] if t.key in out else f"no answer within {timeout:g}s"
            for t, _ in jobs}


def test_channel(cfg, name: str, timeout: float) -> dict[str, str | None]:
    """Send a test message to each URL of a channel now, bypassing the outbox."""
    tgts = channel_targets(cfg, name)
    now = time.time()
    row = {"id": 0, "created": now, "kind": "test", "severity": "info", "event": "test",
           "rule": None, "resource": None, "host": cfg.hostname,
           "title": "hasthook test message",
           "body": f"A test from `hasthook notify-test {name}` on {cfg.hostname} at "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(now))}. If you "
                   "read this, the channel works."}
    return send_all([(t, t.compose([row])) for t in tgts], timeout)


# -- the outbox ---------------------------------------------------------


def lock(state_dir: str) -> int | None:
    """Take the delivery lock without waiting; the fd, or None when another holds it."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock(fd: int) -> None:
    os.close(fd)  # closing drops the flock


def has_work(store, deadline: float, everything: bool = False, wait: bool = True) -> bool:
    """Is anything to do before `deadline` (monotonic)? One cheap query, no apprise."""
    now = time.time()
    due, fresh, lease = store.outbox_due()
    horizon = now + max(0.0, deadline - time.monotonic())
    return ((due is not None and (everything or due <= now))
            or (wait and fresh is not None and fresh <= horizon)
            or (lease is not None and lease <= now))


def drain(store, cfg, log, *, deadline: float | None = None, everything: bool = False,
          wait: bool = True) -> Report:
    """Deliver what is due, if no other process is delivering.

    `wait`: stay to send rows still inside their group_wait, until `deadline`
    (monotonic; default: what is left of the hook's time box, or a whole
    settings.hook_timeout, less a margin). `everything`:
    send all pending rows at once, ignoring group_wait and backoff.
    """
    pol = Policy.from_settings(cfg.settings)
    if deadline is None:  # inside hasthook-exec, the time box's alarm is already armed
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        deadline = time.monotonic() + (left or pol.hook_timeout) - MARGIN
    report = Report()
    while deadline - time.monotonic() >= MIN_SEND and has_work(store, deadline, everything, wait):
        fd = lock(store.state_dir)
        if fd is None:
            report.busy = True
            break
        try:
            _drain_locked(store, cfg, log, pol, deadline, everything, wait, report)
        finally:
            unlock(fd)
        everything = False
    return report


def _drain_locked(store, cfg, log, pol: Policy, deadline: float, everything: bool, wait: bool,
                  report: Report) -> None:
    while time.monotonic() < deadline:
        now = time.time()
        for r in store.outbox_requeue_abandoned(now, ABANDONED):
            log.warning(f"[{r['resource']}] message {r['id']} to {r['channel']}: {ABANDONED}")
        for r in store.outbox_expire(now - pol.max_age):
            report.dead += 1
            log.crit(f"[{r['resource']}] message {r['id']} to {r['channel']} ({r['title']}) "
                     f"undelivered after {r['attempts']} attempts, given up: {r['last_error']}")
        groups = store.outbox_ready(now, everything)
        everything = False
        for channel, key in groups:
            left = deadline - time.monotonic()
            if left < MIN_SEND:
                return
            timeout = min(pol.send_timeout, left)
            rows = store.outbox_claim(channel, key, time.time() + timeout + LEASE_GRACE)
            if rows:
                _send_group(store, cfg, log, channel, rows, timeout, report)
        if groups:
            continue
        if not wait:
            return
        _, fresh, _ = store.outbox_due()
        if fresh is None or fresh - time.time() > deadline - time.monotonic():
            return
        time.sleep(max(0.0, min(POLL, fresh - time.time())))


def _send_group(store, cfg, log, channel: str, rows: list[dict[str, Any]], timeout: float,
                report: Report) -> None:
    """Send one claimed group to each URL of its channel, then settle every row."""
    names = _names(rows)
    errors: dict[str, str] = {}
    try:
        tgts = channel_targets(cfg, channel, store)
    except ChannelError as e:
        tgts, errors["*"] = [], str(e)
        report.failed += 1
    by_id = {r["id"]: r for r in rows}
    jobs = []
    for t in tgts:  # each URL gets the rows it has not taken yet: usually all
        todo = [r for r in rows if t.key not in r["delivered"]]
        if todo:
            jobs.append((t, t.compose(todo), [r["id"] for r in todo]))
    results = send_all([(t, m) for t, m, _ in jobs], timeout)
    now = time.time()
    for t, _, ids in jobs:
        why = results[t.key]
        if why is None:
            report.sent += 1
            for i in ids:
                by_id[i]["delivered"].append(t.key)
            log.notice(f"{names} sent to {channel} via {t.key}")
        else:
            report.failed += 1
            errors[t.key] = why
    keys = [t.key for t in tgts]
    outcomes = []
    for r in rows:
        done = bool(keys) and all(k in r["delivered"] for k in keys)
        err = "; ".join(f"{k}: {v}" if k != "*" else v for k, v in errors.items()
                        if k == "*" or k not in r["delivered"])
        outcomes.append({"id": r["id"], "delivered": r["delivered"], "sent": done,
                         "due": now + backoff(r["attempts"] + 1), "error": err or None})
        report.rows_sent += int(done)
    store.outbox_settle(outcomes, now)
    failed = [o for o in outcomes if not o["sent"]]
    if failed:
        wait = min(o["due"] for o in failed) - now
        msg = f"{names} not sent to {channel}: {failed[0]['error']}; retry in {wait:.0f}s"
        report.errors.append(msg)
        log.warning(msg)


def _names(rows: list[dict[str, Any]]) -> str:
    """`[shared1]` or `[r01 +29 more]`: which resources a log line is about."""
    res = list(dict.fromkeys(r["resource"] or "?" for r in rows))
    return f"[{res[0]}]" if len(res) == 1 else f"[{res[0]} +{len(res) - 1} more]"
