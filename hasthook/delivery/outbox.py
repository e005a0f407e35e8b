"""The outbox: send what it holds, grouped, retried, at least once.

hastd starts one short-lived hook per event, so batching and retry live in
the outbox table, not in a process. Any process may deliver, but only one at
a time: the holder of the delivery lock (channel.lock). Every other hook
commits its rows and leaves them to the holder, which keeps draining until
nothing fresh is due before its time box ends, then checks once more after
letting go (a hook that committed while it finished saw the lock held and left).

Grouping: rows for one channel and group key go out as ONE message once the
oldest of them has waited its group_wait. Retry: a failed target is tried
again after an exponential backoff with jitter, by the next hook or `hasthook
flush`; targets that took a message are not sent it again. Rows older than
settings.max_age become dead (logged crit, kept for `hasthook queue`).

Delivery is at least once: a row is claimed (`sending`, with a lease) before
the network and settled after. A deliverer killed in between leaves the row
claimed; once the lease expires the next deliverer sends it again, so a kill
at exactly that point can repeat one message. Nothing else repeats or is lost.

Channel kinds: apprise URLs (apprise_target.py) and Alertmanager clusters
(alertmanager.py). channel_targets() picks by kind; each target composes a
group of rows into what it sends and sends it, so the outbox, grouping and
retry above are the same for both.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import Any

from ..record import Record, fresh
from ..store import DELIVERY_LOCK
from ..units import plural
from .channel import ChannelError, send_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..proc import FileLock

RETRY_BASE = 10.0     # the first retry waits 5-10 s ...
RETRY_CAP = 900.0     # ... doubling up to 7.5-15 min
LEASE_GRACE = 5.0     # a claim outlives the send timeout by this much
MARGIN = 3.0          # stop this long before the hook's time box
POLL = 0.2            # how often a waiting deliverer looks for new rows
MIN_SEND = 1.0        # do not start a send with less time than this left
ABANDONED = "its deliverer stopped between sending and marking; sent again"


class Report(Record):
    """What one drain did: messages sent and failed, rows that went dead."""

    sent: int = 0
    failed: int = 0
    rows_sent: int = 0
    dead: int = 0
    busy: bool = False  # another process held the lock
    errors: list[str] = fresh(list)


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `attempts` (1 = the first): doubling, half jittered.

    The jitter keeps hooks on many resources from retrying in lockstep.
    """
    delay = min(RETRY_CAP, RETRY_BASE * 2 ** max(0, attempts - 1))
    return delay / 2 + rand() * delay / 2


def channel_targets(cfg, name: str, store=None) -> list[Any]:
    """A channel's targets by kind: its apprise URLs, or one Alertmanager cluster
    (alertmanager.Target). Each has `key`, `compose(rows)` and `send(what, timeout)`."""
    from . import alertmanager

    spec = cfg.channels.get(name)
    if not alertmanager.is_channel(spec):
        from .apprise_target import targets

        return targets(name, spec)
    try:
        return [alertmanager.target(name, spec, cfg.settings, store)]
    except ValueError as e:
        raise ChannelError(f"channel {name!r} {e}") from None


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
    results = send_all([(t, t.compose([row])) for t in tgts], timeout)
    return {t.shown: results[t.key] for t in tgts}



def has_work(store, deadline: float, everything: bool = False, wait: bool = True) -> bool:
    """Is anything to do before `deadline` (monotonic)? One cheap query, no apprise."""
    now = time.time()
    due, fresh, lease = store.outbox_due()
    horizon = now + max(0.0, deadline - time.monotonic())
    return ((due is not None and (everything or due <= now))
            or (wait and fresh is not None and fresh <= horizon)
            or (lease is not None and lease <= now))


def drain(store, cfg, log, *, deadline: float | None = None, everything: bool = False,
          wait: bool = True, held: FileLock | None = None) -> Report:
    """Deliver what is due, if no other process is delivering.

    `wait`: stay to send rows still inside their group_wait, until `deadline`
    (monotonic; default: what is left of the hook's time box, or a whole
    settings.hook_timeout, less a margin). `everything`:
    send all pending rows at once, ignoring group_wait and backoff. `held`: the
    delivery lock, already taken by the caller (who then imported this module).
    """
    pol = cfg.settings
    if deadline is None:  # inside hasthook-exec, the time box's alarm is already armed
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        deadline = time.monotonic() + (left or pol.hook_timeout) - MARGIN
    report = Report()
    while deadline - time.monotonic() >= MIN_SEND and has_work(store, deadline, everything, wait):
        lock, held = held or store.lock(DELIVERY_LOCK), None
        if lock is None:
            report.busy = True
            break
        try:
            _drain_locked(store, cfg, log, pol, deadline, everything, wait, report)
        finally:
            lock.close()
        everything = False
    return report


def _drain_locked(store, cfg, log, pol: Settings, deadline: float, everything: bool, wait: bool,
                  report: Report) -> None:
    while time.monotonic() < deadline:
        now = time.time()
        for r in store.outbox_requeue_abandoned(now, ABANDONED):
            log.warning(f"[{r['resource']}] message {r['id']} to {r['channel']}: {ABANDONED}")
        for r in store.outbox_expire(now - pol.max_age, now):
            report.dead += 1
            log.crit(f"[{r['resource']}] message {r['id']} to {r['channel']} ({r['title']}) "
                     f"undelivered after {plural(r['attempts'], 'attempt')}, given up: "
                     f"{r['last_error']}")
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
        _tell_broken(store, cfg, log, channel, str(e))
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
            log.notice(f"{names} sent to {channel} via {t.shown}")
        else:
            report.failed += 1
            errors[t.key] = f"{t.shown}: {why}"
    keys = [t.key for t in tgts]
    outcomes = []
    for r in rows:
        done = bool(keys) and all(k in r["delivered"] for k in keys)
        err = "; ".join(v for k, v in errors.items() if k == "*" or k not in r["delivered"])
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


def _tell_broken(store, cfg, log, channel: str, why: str) -> None:
    """A channel that cannot be used as configured (an unreadable or untrusted apprise
    config, a bad URL) would let its messages die unnoticed: hasthook's own alert goes
    to the other alert channels at once, at most hourly."""
    from ..rules import INTERNAL_RULE

    others = [c for c in cfg.alert_channels if c != channel]
    title = f"hasthook on {cfg.hostname}: channel {channel} cannot send"
    now = time.time()
    if not others or store.outbox_told(INTERNAL_RULE, title, now - 3600):
        return
    log.crit(f"{why}; telling {', '.join(others)}")
    with store.transaction() as db:
        for c in others:
            store.outbox_add(db, created=now, event_id=None, rule=INTERNAL_RULE, channel=c,
                             group_key=f"{INTERNAL_RULE}|critical", kind="alert",
                             severity="critical", event=None, resource=None,
                             host=cfg.hostname, title=title,
                             body=f"{why}.\nIts messages wait in the outbox and go dead after "
                                  "settings.max_age: fix the channel, then `hasthook check` "
                                  "and `hasthook flush`.", due=now)


def _names(rows: list[dict[str, Any]]) -> str:
    """`[shared1]` or `[r01 +29 more]`: which resources a log line is about."""
    res = list(dict.fromkeys(r["resource"] or "?" for r in rows))
    return f"[{res[0]}]" if len(res) == 1 else f"[{res[0]} +{len(res) - 1} more]"
