"""Alertmanager channels: `channels: {NAME: {alertmanager: [URL, ...], ttl: 5m}}`.

A fleet of HAST pairs wants one place that groups, deduplicates and routes
alerts across hosts; Prometheus Alertmanager is that place, so hasthook feeds
it rather than growing a server. Rows for an Alertmanager channel take the
same outbox, grouping and retry as apprise rows: the outbox asks
`outbox.channel_targets` for a channel's targets and this module supplies
the one target of an Alertmanager channel, whose `compose` turns a group of
rows into alerts and whose `send` POSTs them to `/api/v2/alerts`.

Conditions and one-shots. disconnect, syncintr, syncstart and split-brain
are conditions: active until the event that ends them (RESOLVED_BY), then
sent again with the same labels and `endsAt` at that event. Everything else
(role, connect, a recovery report, ...) is a one-shot alert. An alert always
carries a bounded `endsAt` (send time + `ttl`, default 5m), so it clears by
itself when this host dies and can no longer say it is over; `hasthook flush`
(cron, every minute) re-sends every open condition (refresh) so it stays
active for as long as it lasts.

What is sent is the database's state at send time, not the row's state at
queue time: an alert queued during an outage whose resolution is also queued
goes out already ended, never active for `ttl` after its end. Everything sent
to Alertmanager goes under the delivery lock (channel.lock), so sends reach it in
the order the database changed (Alertmanager merges by arrival).

HA cluster: the members share silences and the notification log, not
alerts, so every URL is sent every alert (as Prometheus does). A send counts
as done when ANY member accepted it: the cluster has it and will notify; a
member that missed it gets it from the next refresh. A send is retried only
when no member took it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import redact
from ..config.loader import is_alertmanager as is_channel
from ..config.schema import check_url
from ..event import RESOLVES, enders
from ..record import Record, fresh
from ..rules import INTERNAL_RULE
from ..store import DELIVERY_LOCK
from ..units import iso, parse_duration
from .channel import send_all

API_PATH = "/api/v2/alerts"
DEFAULT_TTL = 300.0

# Each condition -> the events that end it: event.RESOLVES turned around, and
# connect ends a split-brain too. hastd refuses the connection while split, and
# the node that was reset never sees syncdone (only the primary fires it), so
# without this its HastSplitBrain would be refreshed for ever.
RESOLVED_BY: dict[str, tuple[str, ...]] = {
    kind: enders(kind) + (("connect",) if kind == "split-brain" else ())
    for ends in RESOLVES.values() for kind in ends}

ALERTNAMES = {
    "split-brain": "HastSplitBrain",
    "disconnect": "HastDisconnected",
    "syncintr": "HastSyncInterrupted",
    "syncstart": "HastSynchronizing",
    "syncdone": "HastSyncDone",
    "connect": "HastConnected",
    "role": "HastRoleChanged",
    "recover": "HastRecovery",
    "failover": "HastFailover",
}


def alertname(event: str | None, rule: str | None = None, kind: str = "alert") -> str:
    """HastSplitBrain, HastDisconnected, ...; HasthookAlert for hasthook's own alerts."""
    if kind == "test":
        return "HasthookTest"
    if rule == INTERNAL_RULE:
        return "HasthookAlert"
    word = event or "event"
    return ALERTNAMES.get(word) or "Hast" + "".join(
        p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", word) if p)


def labels(name: str, resource: str | None, host: str | None, severity: str | None,
           cluster: str | None) -> dict[str, str]:
    """The label set that identifies an alert: the same for an alert and its resolution."""
    out = {"alertname": name, "resource": resource, "host": host,
           "severity": severity, "cluster": cluster}
    return {k: str(v) for k, v in out.items() if v}


def _alert(lbl: dict[str, str], title: str, body: str, starts: float,
           ends: float) -> dict[str, Any]:
    # Alertmanager refuses a whole batch if one alert ends before it starts.
    return {"labels": lbl, "annotations": {"summary": title, "description": body},
            "startsAt": iso(starts), "endsAt": iso(max(ends, starts))}


def condition_alert(cond: dict[str, Any], *, cluster: str | None, ttl: float,
                    now: float) -> dict[str, Any]:
    """A condition as it stands (store.outbox_conditions row): ended at its resolving
    event, else active until now + ttl."""
    ends = cond["resolved_at"] if cond["resolved_at"] is not None else now + ttl
    return _alert(labels(alertname(cond["event"]), cond["resource"], cond["host"],
                         cond["severity"], cluster),
                  cond["title"], cond["body"], cond["since"], ends)


def alerts(rows: list[dict[str, Any]], conditions: list[dict[str, Any]], *,
           cluster: str | None, ttl: float, now: float) -> list[dict[str, Any]]:
    """The alerts one outbox group sends. Pure.

    A condition's alert or resolution goes out as the condition stands now
    (`conditions`); a resolution for a condition never told to this channel
    sends nothing. Any other row is a one-shot, active until now + ttl.
    """
    by_key = {(c["event"], c["resource"], c["host"]): c for c in conditions}
    out: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for r in rows:
        if r["kind"] == "resolved":
            keys = [(k, r["resource"], r["host"]) for k, ends in RESOLVED_BY.items()
                    if r["event"] in ends]
        elif r["kind"] == "alert" and r["event"] in RESOLVED_BY and r.get("rule") != INTERNAL_RULE:
            keys = [(r["event"], r["resource"], r["host"])]
        else:
            a = _alert(labels(alertname(r["event"], r.get("rule"), r["kind"]), r["resource"],
                              r["host"], r["severity"], cluster),
                       r["title"], r["body"], r["created"], now + ttl)
            out[tuple(sorted(a["labels"].items()))] = a
            continue
        for k in keys:
            if k in by_key:
                a = condition_alert(by_key[k], cluster=cluster, ttl=ttl, now=now)
                out[tuple(sorted(a["labels"].items()))] = a
    return list(out.values())


# -- sending ------------------------------------------------------------


def post(url: str, payload: list[dict[str, Any]], timeout: float) -> str | None:
    """POST alerts to one Alertmanager; None when it accepted them, else why (no secret)."""
    import urllib.error
    import urllib.request

    from .http import failure, request

    p = urlsplit(url)
    path = p.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    req = request(urlunsplit(p._replace(path=path)), "POST", json.dumps(payload).encode(),
                  {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
        return None
    except urllib.error.HTTPError as e:
        detail = e.read(300).decode("utf-8", "replace").strip().strip('"')
        why = failure(e) + (f": {detail}" if detail else "")
    except (urllib.error.URLError, OSError, ValueError) as e:
        why = failure(e)
    return redact.text(why, [(url, redact.url(url))])[:500]


class _Member(Record):
    """One URL of the cluster, in the shape deliver.send_all takes."""

    key: str
    url: str

    def send(self, payload: list[dict[str, Any]], timeout: float) -> str | None:
        return post(self.url, payload, timeout)


def post_all(urls: list[str], payload: list[dict[str, Any]],
             timeout: float) -> dict[str, str | None]:
    """POST to every member at once; {shown URL: None or why it failed}."""
    return send_all([(_Member(redact.url(u), u), payload) for u in urls], timeout)


class Target(Record):
    """An Alertmanager channel as the outbox sends it: one target for the whole cluster."""

    channel: str
    urls: list[str]
    cluster: str | None = None
    ttl: float = DEFAULT_TTL
    store: Any = None  # hasthook.store.Store; None: no conditions (a test message)
    failures: dict[str, str] = fresh(dict)  # members that missed the last send

    @property
    def key(self) -> str:
        return f"{self.channel}#alertmanager"

    @property
    def shown(self) -> str:
        return "alertmanager " + ", ".join(redact.url(u) for u in self.urls)

    def compose(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The group's alerts, from the database as it is now (under the delivery lock)."""
        conds = []
        if self.store is not None:
            conds = self.store.outbox_conditions(
                self.channel, RESOLVED_BY, resources=sorted({r["resource"] for r in rows}),
                exclude_rule=INTERNAL_RULE)
        return alerts(rows, conds, cluster=self.cluster, ttl=self.ttl, now=time.time())

    def send(self, payload: list[dict[str, Any]], timeout: float) -> str | None:
        """Done when any member accepted; else every member's reason."""
        if not payload:
            return None
        # A little under deliver.send_all's own wait, so a member's real error wins.
        results = post_all(self.urls, payload, max(0.1, timeout - 0.5))
        self.failures = {k: v for k, v in results.items() if v is not None}
        if len(self.failures) < len(results):
            return None
        return "; ".join(f"{k}: {v}" for k, v in self.failures.items())


def target(name: str, spec: dict[str, Any], settings: Any, store: Any = None) -> Target:
    """The channel's target; ValueError names what is wrong with its config."""
    urls = spec.get("alertmanager")
    urls = [urls] if isinstance(urls, str) else [str(u) for u in urls or ()]
    if not urls:
        raise ValueError("has no Alertmanager URL")
    for u in urls:
        check_url(u)
    return Target(name, urls, settings.cluster,
                  parse_duration(spec.get("ttl", DEFAULT_TTL)), store)


def refresh(store: Any, cfg: Any, log: Any, timeout: float | None = None) -> dict[str, Any]:
    """Re-send every open condition to each Alertmanager channel, with a fresh endsAt.

    Run by `hasthook flush` (cron, every minute): an alert stays active while
    its condition lasts, a member that missed it gets it, and one that was
    down gets it once it is back. Under the delivery lock; when another
    process holds it, this run skips (the next one refreshes).
    Returns {"sent": alerts sent, "failed": [channels no member took], "busy": bool}.
    """
    out: dict[str, Any] = {"sent": 0, "failed": [], "busy": False}
    chans = {n: s for n, s in cfg.channels.items() if is_channel(s)}
    if not chans:
        return out
    timeout = timeout or cfg.settings.send_timeout
    held = store.lock(DELIVERY_LOCK)
    if held is None:
        out["busy"] = True
        return out
    try:
        for name, spec in chans.items():
            try:
                t = target(name, spec, cfg.settings, store)
            except ValueError as e:
                log.error(f"channel {name!r}: {e}")
                out["failed"].append(name)
                continue
            now = time.time()
            payload = [condition_alert(c, cluster=t.cluster, ttl=t.ttl, now=now)
                       for c in store.outbox_conditions(name, RESOLVED_BY,
                                                        exclude_rule=INTERNAL_RULE)
                       if c["resolved_at"] is None]
            why = t.send(payload, timeout)
            for member, err in t.failures.items():
                log.warning(f"alertmanager {name}: {member} did not take the refresh: {err}")
            if why is None:
                out["sent"] += len(payload)
                if payload:
                    log.info(f"alertmanager {name}: {len(payload)} open alerts re-sent")
            else:
                out["failed"].append(name)
    finally:
        held.close()
    return out
