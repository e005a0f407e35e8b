"""`notify: CHANNEL | [CHANNELS] | {channels, title, body}`: queue a message per channel.

prepare() renders the message and puts it in the outbox inside the event's
own transaction, so an alert exists before any network I/O and survives a
mail server that is down or a hook that is killed. execute() sends what is
already due; the outbox (hasthook/delivery/outbox.py) groups, sends and retries.

Resolved messages: an alert queued by a rule with `send_resolved: true`
remembers it. The event that ends its condition (connect after disconnect,
syncdone after syncintr or syncstart) queues a "resolved" message to the same
channels with how long it lasted: see prepare_resolved, which the hook runs
for every event, matched by a rule or not.
"""

from __future__ import annotations

import sqlite3
import time

from .. import render
from ..config.loader import is_alertmanager
from ..rules import INTERNAL_RULE
from ..units import format_duration, parse_duration, when
from . import Context, outcome

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

    from ..config.settings import Settings

def _params(params: Any) -> dict[str, Any]:
    from ..rules import action_of

    return action_of({"notify": params})[1]


def _group_wait(rule: dict[str, Any], settings: Settings) -> float:
    return parse_duration(rule["group_wait"]) if "group_wait" in rule else settings.group_wait


def messages(params: Any, ctx: Context) -> list[dict[str, Any]]:
    """The outbox rows this action makes, one per channel, rendered. Pure.

    Title and body: the action's own, else the channel's, else the config's
    `templates`, else the built-in ones. hasthook's own alerts and reports
    (`report`: literal text) take the channel's title template too. Group key:
    rule + severity, so one rule's burst is one message per channel.
    """
    p = _params(params)
    cfg, ev, rule = ctx.config, ctx.event, ctx.rule_config or {}
    name = ctx.rule or (INTERNAL_RULE if p.get("internal") else None)
    rows = []
    for channel in p["channels"]:
        spec = cfg.channels.get(channel)
        own = spec if isinstance(spec, dict) else {}
        if p.get("report") is not None:
            title, body = report_message(p["report"], own.get("title"), ctx)
        else:
            title, body = render.message(
                ev, name, ctx.suppressed,
                title=p.get("title") or own.get("title"), body=p.get("body") or own.get("body"),
                overrides=cfg.data.get("templates"))
        rows.append({
            "created": ctx.now, "event_id": ctx.event_id, "rule": name, "channel": channel,
            "group_key": f"{name}|{ev.severity}", "kind": "alert", "severity": ev.severity,
            "event": ev.event, "resource": ev.resource, "host": ev.host,
            "title": title, "body": body,
            # Alertmanager holds an alert until told it ended: always resolve there.
            "send_resolved": bool(rule.get("send_resolved")) or is_alertmanager(spec),
            "due": ctx.now + _group_wait(rule, cfg.settings)})
    return rows


def report_message(report: dict[str, str], channel_title: str | None, ctx: Context
                   ) -> tuple[str, str]:
    """hasthook's own alert, or a recovery's or failover's report (literal text), as one
    channel tells it: under the channel's `title` template when it has one, which sees
    the alert's own title as {summary}; that title then opens the body, so nothing is lost.
    """
    if not channel_title:
        return report["title"], report["body"]
    values = {**ctx.values(), "summary": report["title"]}
    return render.render(channel_title, values), f"{report['title']}\n\n{report['body']}"


def prepare(params: Any, ctx: Context, db: sqlite3.Connection) -> None:
    """Queue the messages in the event's transaction (nothing in a dry run)."""
    if ctx.dry_run:
        return
    assert ctx.store is not None
    for row in messages(params, ctx):
        ctx.store.outbox_add(db, **_landed(row, ctx.now))


def _landed(row: dict[str, Any], event_time: float) -> dict[str, Any]:
    """Count group_wait from when the row lands in the outbox, not from the event.

    On a loaded host a hook can take seconds to get here; counted from the
    event, its row would be due on arrival and a burst would split up.
    """
    return {**row, "due": row["due"] - event_time + max(event_time, time.time())}


def execute(params: Any, ctx: Context) -> dict[str, Any]:
    """The messages are in the outbox already (prepare); the pipeline delivers them once
    every job has run (pipeline.Pipeline.deliver), so a burst has one deliverer."""
    if ctx.dry_run:
        rows = messages(params, ctx)
        return outcome("notify", True, f"would queue for {', '.join(r['channel'] for r in rows)}",
                       messages=[{k: r[k] for k in ("channel", "title", "body")} for r in rows])
    return outcome("notify", True, f"queued for {', '.join(_params(params)['channels'])}")


def resolved_messages(ctx: Context) -> list[dict[str, Any]]:
    """Rows for a resolving event: one per rule and channel whose alert asked for
    `send_resolved` and has not been resolved yet, saying how long it lasted."""
    ev, store, cfg = ctx.event, ctx.store, ctx.config
    if not ev.resolves or store is None:
        return []
    prev = store.last_event(ev.resource, (ev.event,), before_id=ctx.event_id, host=ev.host)
    rows = []
    for a in store.outbox_to_resolve(ev.resource, ev.host, ev.resolves,
                                     prev["id"] if prev else 0):
        lasted = format_duration(max(0.0, ctx.now - a["since"]))
        title, body = render.message(ev, a["rule"], kind="resolved",
                                     overrides=cfg.data.get("templates"))
        since = when(a["since"], ctx.now)
        rule: dict[str, Any] = next((r for r in cfg.rules if r.get("name") == a["rule"]), {})
        rows.append({
            "created": ctx.now, "event_id": ctx.event_id, "rule": a["rule"],
            "channel": a["channel"], "group_key": f"{a['rule']}|resolved", "kind": "resolved",
            "severity": "info", "event": ev.event, "resource": ev.resource, "host": ev.host,
            "title": f"{title} after {lasted}",
            "body": f"{body}\nResolves {a['events']} since {since} (rule {a['rule']}): "
                    f"{lasted} in all.",
            "due": ctx.now + _group_wait(rule, cfg.settings)})
    return rows


def prepare_resolved(ctx: Context, db: sqlite3.Connection) -> None:
    """Queue the resolved messages this event owes, in its transaction."""
    if ctx.dry_run:
        return
    assert ctx.store is not None
    for row in resolved_messages(ctx):
        ctx.store.outbox_add(db, **_landed(row, ctx.now))
