"""`recover: {delay, cooldown, max_attempts, window, pre, dry_run, restore_role}`.

Split-brain auto-recovery: the article's hastrecover.sh run by the hook, with
the guards in hasthook/tools/recover.py (which `hasthook recover` shares).

Its outcome is told the way every event is: a synthetic `recover` event
(cause `recover`) goes through the pipeline, where rules naming
`cause: recover` can route it. Its report also goes to the channels that were
told about the split-brain (every rule it matched, e.g. a `continue` chain),
unless a matching rule already took the channel; a critical outcome with no
channel at all goes to settings.alert_channels, as hasthook's own alerts do.
Rules that do not name `cause` never see it, nor the role changes the
recovery makes, so nothing is told twice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from ..event import Event
from ..render import render
from ..rules import INTERNAL_RULE
from ..units import parse_duration
from . import Context, Report, outcome

PLACEHOLDER_TIME = "%Y%m%dT%H%M%SZ"  # {time} in pre argv: UTC, valid in a ZFS snapshot name
# A rule's throttle or repeat_interval does not hold this action back: cooldown and
# max_attempts are its throttle, and loop detection needs every split-brain.
OWN_GUARDS = True


def _params(params: Any) -> dict[str, Any]:
    from ..tools.recover import DEFAULTS

    p = {k: DEFAULTS[k] for k in ("delay", "cooldown", "max_attempts", "window")}
    p.update({k: v for k, v in (params or {}).items() if v is not None})
    return p


def guard_window(rules: list[dict[str, Any]]) -> float:
    """How far back cooldown and max_attempts look, for the longest recover action in
    these rules (or the defaults): retention keeps the recovery rows this long."""
    from ..rules import action_of
    from ..tools.recover import SETTLE

    every = [params for rule in rules for name, params in map(action_of, rule.get("actions") or ())
             if name == "recover"]
    return SETTLE + max(max(parse_duration(p["window"]), parse_duration(p["cooldown"]))
                        for p in map(_params, [{}, *every]))


def pre_argv(params: Any, ctx: Context) -> list[list[str]]:
    """The pre-steps with placeholders filled; each argv element rendered on its own."""
    values = dict(ctx.values())
    values["time"] = time.strftime(PLACEHOLDER_TIME, time.gmtime(ctx.now))
    return [[render(str(a), values) for a in argv] for argv in _params(params).get("pre") or ()]


def prepare(params: Any, ctx: Context, db: sqlite3.Connection) -> None:
    """Nothing to write with the event.

    The decision needs the resource's lock and may wait `delay`; neither may
    happen inside the event's transaction, which every other hook queues behind.
    The `recoveries` table, written under the lock, is the durable state.
    """


def execute(params: Any, ctx: Context) -> dict[str, Any]:
    from ..tools.recover import Limits, Recoverer

    ev = ctx.event
    p = _params(params)
    if ev.event != "split-brain":
        return outcome("recover", False, f"recover acts on split-brain only, not {ev.event}")
    if ev.role == "primary":  # the primary sees every split-brain too: leave at once
        return outcome("recover", True, "role primary: the primary is never reset",
                       state="primary")
    pre = pre_argv(params, ctx)
    if ctx.dry_run:  # `hasthook test`: say what would happen, touch nothing
        steps = [" ".join(a) for a in pre] + [
            f"hastctl role init {ev.resource}", f"hastctl create {ev.resource}",
            f"hastctl role ROLE {ev.resource}"]
        return outcome("recover", True,
                       ("(dry_run: only logged and reported) " if p.get("dry_run") else "")
                       + f"after {p['delay']}, unless {ev.resource} is primary then or within "
                       f"cooldown {p['cooldown']} / {p['max_attempts']} per {p['window']}: "
                       + "; ".join(steps), state="would-run")
    settings = ctx.config.settings
    publish = publisher(ctx.pipeline, ctx.rule, ev)
    rec = Recoverer(ctx.hastctl(), ctx.log, settings, ev.host, store=ctx.store, publish=publish,
                    refuse_pre=next(filter(None, (ctx.config.refusal(a[0]) for a in pre if a)),
                                    None))
    o = rec.run(ev.resource, delay=parse_duration(p["delay"]),
                restore_role=p.get("restore_role"), dry_run=bool(p.get("dry_run")),
                pre=pre, limits=Limits(parse_duration(p["cooldown"]), int(p["max_attempts"]),
                                       parse_duration(p["window"])),
                event_time=ev.time, event_id=ctx.event_id, origin="hook")
    ctx.pipeline.flush()
    keep = ("state", "role_before", "role_after", "recovery_id", "report_id", "alert",
            "dry_run")
    return outcome("recover", o.ok, o.detail, **{k: getattr(o, k) for k in keep},
                   steps=[s.line() for s in o.steps])


def publisher(pipeline: Any, rule: str | None = None,
              split_brain: Event | None = None) -> Callable[[Event], int]:
    """How a recovery publishes its outcome: the synthetic `recover` event goes through
    the pipeline (rules naming `cause: recover` route it), its jobs run after the
    recovery (pipeline.flush), and its report also goes to the channels told about the
    split-brain that no matching rule took; a critical outcome with nowhere else to go
    reaches settings.alert_channels."""
    channels = told(split_brain, pipeline.cfg.rules) if split_brain is not None else []

    def publish(ev: Event) -> int:
        title, body = message(ev)
        report = Report(title, body, channels, f"{rule or INTERNAL_RULE}: recover")
        return pipeline.publish(ev, report, later=True)

    return publish


def told(ev: Event, rules: list[dict[str, Any]]) -> list[str]:
    """The channels the rules matching an event notify, in rule order."""
    from ..rules import match

    out: list[str] = []
    for m in match(ev, rules):
        for name, params in m.actions:
            if name == "notify":
                out += [c for c in params["channels"] if c not in out]
    return out


def message(ev: Event) -> tuple[str, str]:
    """Title and body of a recovery report (literal text)."""
    from ..tools.recover import report_text

    x = ev.extra
    if x.get("alert"):
        head = str(x["alert"])
    elif x.get("dry_run"):
        head = "split-brain recovery (dry run): nothing changed"
    else:
        head = "split-brain recovered: local writes discarded, full resync follows"
    return f"[{ev.severity}] {ev.resource} ({ev.host}): {head}", report_text(ev)
