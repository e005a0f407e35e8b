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
from ..cli import CommandError
from ..event import ROLES, UsageError, classify
from ..log import Levels


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="+", metavar="WORD",
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
    from .. import actions, rules
    from ..units import parse_size

    cfg = app.cfg
    try:
        ev = classify(args.words, args.host or cfg.hostname)
    except UsageError as e:
        raise CommandError(str(e), sysexits.EX_USAGE) from None
    ev.role, ev.status, ev.cause = args.role, args.status, args.cause
    if args.dirty is not None:
        try:
            ev.dirty = parse_size(args.dirty)
        except ValueError as e:
            raise CommandError(f"--dirty: {e}", sysexits.EX_USAGE) from None
    log = DryLog()
    now = _StateNow(cfg.settings["state_dir"], ev)
    report = {"event": ev.to_dict(), "matches": [], "dry_run": True,
              "history": now.why_not or "read", "silenced_by": now.silence}
    for m in rules.match(ev, cfg.rules):
        entry = {"rule": m.name, "index": m.index, "continue": bool(m.rule.get("continue")),
                 "throttle": m.rule.get("throttle"),
                 "repeat_interval": m.rule.get("repeat_interval"), "actions": [],
                 "held_by": now.held_by(m)}
        for name, params in m.actions:
            ctx = actions.Context(ev, None, m.name, cfg, None, log, actions.no_hastctl,
                                  ev.time, dry_run=True, rule_config=m.rule)
            out = actions.execute(name, params, ctx)
            if name == "notify":
                out["messages"] = _messages(params, ctx)
            entry["actions"].append({**out, "params": params})
        report["matches"].append(entry)
    now.close()
    report["log"] = log.lines
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print(ev, report)
    return sysexits.EX_OK


class _StateNow:
    """Silences and rule state as the history holds them, read-only: a dry run must not
    create, migrate or write the database (the hook would see a different one)."""

    def __init__(self, state_dir: str, ev) -> None:
        from .. import silences
        from ..store import Store

        self.ev, self.silence, self.why_not = ev, None, None
        self.store = Store(state_dir, readonly=True)
        if not os.path.isfile(self.store.path):
            self.why_not = f"not read: no history yet at {self.store.path}"
            return
        try:
            self.silence = silences.silencing(ev, self.store.active_silences(ev.time))
        except sqlite3.Error as e:
            self.why_not = f"not read ({self.store.path}: {e})"
            self.close()

    def held_by(self, m) -> dict[str, Any] | None:
        """Would this rule's throttle or repeat_interval hold the event back now?"""
        from .. import rules
        from ..exec import counts_toward_state

        if self.why_not or not counts_toward_state(m, self.silence):
            return None
        try:
            state = self.store.rule_state(self.store.db, m.name, rules.key_of(m.rule, self.ev))
        except sqlite3.Error:
            return None
        d = rules.decide(m.rule, state, self.ev.time)
        return None if d.fire else {"by": d.reason, "count": d.state.suppressed}

    def close(self) -> None:
        self.store.close()


def _messages(params: dict[str, Any], ctx) -> list[dict[str, str]]:
    """The rendered message for each channel, as the notify action would queue it."""
    from .. import render

    out = []
    for channel in params["channels"]:
        spec = ctx.config.channels.get(channel)
        own = spec if isinstance(spec, dict) else {}
        title, body = render.message(
            ctx.event, ctx.rule, 0, title=params.get("title") or own.get("title"),
            body=params.get("body") or own.get("body"), overrides=ctx.config.templates)
        out.append({"channel": channel, "title": title, "body": body})
    return out


def _print(ev, report: dict[str, Any]) -> None:
    from ..hast import humanize

    roles = f" {ev.old_role} -> {ev.new_role}" if ev.event == "role" else ""
    state = ", ".join(f"{k} {v}" for k, v in (
        ("role", ev.role), ("status", ev.status),
        ("dirty", humanize(ev.dirty) if ev.dirty is not None else None),
        ("cause", ev.cause)) if v is not None)
    print(f"event: {ev.event} {ev.resource}{roles} on {ev.host}, severity {ev.severity}"
          + (f", {state}" if state else ""))
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
