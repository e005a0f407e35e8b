"""Dry-run an event through the rules: which match, what each action would do, the messages.

    hasthook test split-brain shared1 --role secondary --status degraded --dirty 1G
    hasthook test role shared1 secondary primary --json

The event's words are hastd's; --role/--status/--dirty stand in for what the
hook would read from `hastctl list`. Nothing is recorded, sent or run, and
hastctl is not called at all. What the history holds now is read (read-only):
a silence that would mute the notifications, a rule whose throttle or
repeat_interval would hold the event back.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from typing import Any

from .. import sysexits
from ..errors import HasthookError
from ..event import ROLES, UsageError, check_name, classify
from ..log import Levels


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = ("%(prog)s [options] EVENT RESOURCE [OLDROLE NEWROLE]\n"
               "  e.g. %(prog)s split-brain shared1 --role secondary --status degraded")
    p.add_argument("words", nargs="+", metavar="EVENT RESOURCE",
                   help="the event as hastd gives it: EVENT RESOURCE [OLDROLE NEWROLE]")
    p.add_argument("--role", choices=ROLES, help="local role at the event")
    p.add_argument("--status", choices=("complete", "degraded"), help="connection status")
    p.add_argument("--dirty", metavar="SIZE", help="dirty bytes, e.g. 1G or 1048576")
    p.add_argument("--host", metavar="H", help="this node's name (default: the config's)")
    p.add_argument("--cause", metavar="C", help="what caused the event, e.g. recover")
    p.add_argument("--json", action="store_true", help="print one JSON object")


class DryLog(Levels):
    """Collects what the actions would have logged, to show instead of sending it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, level: str, message: str, **_: Any) -> None:
        self.lines.append(f"{level}: {message}")


def run(args: argparse.Namespace, app) -> int:
    from ..pipeline import Pipeline
    from ..store import Store
    from ..units import parse_size

    cfg = app.cfg
    try:
        check_name(args.words[0])  # a typo is refused; an unknown word is a newer hastd's
        ev = classify(args.words, args.host or cfg.hostname)
    except UsageError as e:
        raise HasthookError(str(e), sysexits.EX_USAGE) from None
    ev.role, ev.status, ev.cause = args.role, args.status, args.cause
    if args.dirty is not None:
        try:
            ev.dirty = parse_size(args.dirty)
        except ValueError as e:
            raise HasthookError(f"--dirty: {e}", sysexits.EX_USAGE) from None
    # The history as it is now, read-only: a dry run must not create, migrate or write
    # the database (the hook would see a different one).
    store = Store(cfg.settings.state_dir, readonly=True)
    history = "read"
    try:
        os.stat(store.path)
        store.active_silences(ev.time)
    except FileNotFoundError:  # a read-only store reads a missing file as empty
        history = f"not read: no history yet at {store.path}"
    except (OSError, sqlite3.Error) as e:  # a state_dir that is a file, permission denied
        history = f"not read ({store.path}: {getattr(e, 'strerror', None) or e})"
        store.close()
        store = Store.scratch()
    log = DryLog()
    h = Pipeline(cfg, store, log, dry_run=True).test(ev)
    store.close()
    silence = next((x for x in h.held if x.get("by") == "silence"), None)
    report: dict[str, Any] = {
        "event": ev.to_dict(), "matches": [], "dry_run": True, "history": history,
        "silenced_by": silence and {"id": silence["silence"], **{
            k: silence[k] for k in ("resource", "event", "ends", "author", "comment")}}}
    for m in h.matches:
        held = next(({"by": x["by"], "count": x["count"]} for x in h.held
                     if x.get("rule") == m.name), None)
        report["matches"].append({
            "rule": m.name, "index": m.index, "continue": bool(m.rule.get("continue")),
            "throttle": m.rule.get("throttle"), "repeat_interval": m.rule.get("repeat_interval"),
            "actions": [{**out, "params": job.params} for job, out in zip(h.jobs, h.outcomes,
                                                                          strict=True)
                        if job.ctx.rule == m.name],
            "held_by": held})
    report["log"] = log.lines
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print(ev, report)
    return sysexits.EX_OK


def _print(ev, report: dict[str, Any]) -> None:
    from ..units import humanize

    roles = f" {ev.old_role} -> {ev.new_role}" if ev.event == "role" else ""
    state = ", ".join(f"{k} {v}" for k, v in (
        ("role", ev.role), ("status", ev.status),
        ("dirty", humanize(ev.dirty) if ev.dirty is not None else None),
        ("cause", ev.cause)) if v is not None)
    print(f"event: {ev.event} {ev.resource}{roles} on {ev.host}, severity {ev.severity}"
          + (f", {state}" if state else ""))
    if not ev.known:
        print(f"{ev.event!r} is not one of hastd's events: the hook would record it as an "
              "unknown event from a newer hastd")
    s = report["silenced_by"]
    if s:
        print(f"silenced now by silence {s['id']} ({s['resource']}, {s['event'] or 'every event'}"
              f", until {s['ends']}): notify actions would not run")
    if not report["matches"]:
        print("no rule matches: the event would be recorded, nothing else")
    for m in report["matches"]:
        print(f"rule {m['rule']!r} (rules[{m['index']}]) matches"
              + ("; continue: true, so later rules are tried" if m["continue"] else ""))
        if m["throttle"]:
            t = m["throttle"]
            print(f"  throttle: at most {t['max']} per {t['window']}")
        if m["repeat_interval"]:
            print(f"  repeat_interval: {m['repeat_interval']} (until resolved)")
        if m["held_by"]:
            what = "repeat_interval" if m["held_by"]["by"] == "repeat" else "throttle"
            print(f"  held back now by its {what}: only recover actions would run")
        if not m["actions"]:
            print("  no actions: recorded only")
        for a in m["actions"]:
            print(f"  {a['action']}: {'' if a['ok'] else 'FAILS: '}{a['detail']}")
            for msg in a.get("messages", ()):
                print(f"    to {msg['channel']}: {msg['title']}")
                for line in msg["body"].splitlines():
                    print(f"      {line}")
    for line in report["log"]:
        print(f"would log {line}")
    print("dry run: nothing recorded, sent or run; silences, throttle and repeat state "
          + ("as the history holds them now" if report["history"] == "read"
             else report["history"]))
