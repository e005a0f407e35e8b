"""`recover: {delay, cooldown, max_attempts, window, pre, dry_run, restore_role}`.

Split-brain auto-recovery: the article's hastrecover.sh run by the hook, with
the guards in hasthook/tools/recover.py (which `hasthook recover` shares).

Its outcome is told the way every event is: a synthetic `recover` event
(cause `recover`) is recorded and goes through the rules, where rules naming
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
from typing import Any

from ..event import Event
from ..render import render
from ..units import parse_duration
from . import Context, Job, outcome
from . import prepare as prepare_action

PLACEHOLDER_TIME = "%Y%m%dT%H%M%SZ"  # {time} in pre argv: UTC, valid in a ZFS snapshot name
# A rule's throttle or repeat_interval does not hold this action back: cooldown and
# max_attempts are its throttle, and loop detection needs every split-brain.
OWN_GUARDS = True


def _params(params: Any) -> dict[str, Any]:
    from ..tools.recover import DEFAULTS

    p = {k: DEFAULTS[k] for k in ("delay", "cooldown", "max_attempts", "window")}
    p.update({k: v for k, v in (params or {}).items() if v is not None})
    return p


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
    pub = Publisher(ctx.config, ctx.store, ctx.log, ctx.rule, ev)
    rec = Recoverer(ctx.hastctl(), ctx.log, settings, ev.host, store=ctx.store, publish=pub,
                    refuse_pre=ctx.config.unsafe_reason() if pre else None)
    o = rec.run(ev.resource, delay=parse_duration(p["delay"]),
                restore_role=p.get("restore_role"), dry_run=bool(p.get("dry_run")),
                pre=pre, limits=Limits(parse_duration(p["cooldown"]), int(p["max_attempts"]),
                                       parse_duration(p["window"])),
                event_time=ev.time, event_id=ctx.event_id, origin="hook")
    pub.flush()
    keep = ("state", "role_before", "role_after", "recovery_id", "report_id", "alert",
            "dry_run")
    return outcome("recover", o.ok, o.detail, **{k: getattr(o, k) for k in keep},
                   steps=[s.line() for s in o.steps])


class Publisher:
    """Records a recovery's synthetic event and routes it like any event.

    The event, the rules' decisions and its queued messages commit in one
    transaction (as a hastd event's do); the jobs run on flush(), after the
    recovery, so no network I/O happens while HAST is being changed.
    """

    def __init__(self, cfg: Any, store: Any, log: Any, rule: str | None = None,
                 split_brain: Event | None = None):
        self.cfg = cfg
        self.store = store
        self.log = log
        self.rule = rule
        self.split_brain = split_brain
        self.pending: list[tuple[int, list[str], list[dict], list[Job]]] = []

    def channels(self) -> list[str]:
        """The channels the rules matching the split-brain notify, in rule order."""
        from ..rules import match

        out: list[str] = []
        if self.split_brain is None:
            return out
        for m in match(self.split_brain, self.cfg.rules):
            for name, params in m.actions:
                if name == "notify":
                    out += [c for c in params["channels"] if c not in out]
        return out

    def __call__(self, ev: Event) -> int:
        from ..exec import evaluate
        from ..hast import Hastctl

        with self.store.transaction() as db:
            event_id = self.store.record(ev, db)
            jobs, matched, held = evaluate(ev, event_id, self.cfg, self.store, db, self.log)
            taken = {c for j in jobs if j.name == "notify" and isinstance(j.params, dict)
                     for c in j.params.get("channels") or ()}
            rest = [c for c in self.channels() if c not in taken]
            if not rest and not taken and ev.severity == "critical":
                rest = self.cfg.alert_channels
            if rest:
                ctx = Context(ev, event_id, f"{self.rule or 'hasthook'}: recover", self.cfg,
                              self.store, self.log,
                              lambda: Hastctl.from_settings(self.cfg.settings), ev.time)
                title, body = message(ev)
                jobs.append(prepare_action("notify", {"channels": rest, "title": title,
                                                      "body": body}, ctx, db))
                matched.append(ctx.rule)
        self.pending.append((event_id, matched, held, jobs))
        return event_id

    def flush(self) -> None:
        """Run the queued jobs (notify sends what is due) and record their outcome."""
        while self.pending:
            event_id, matched, held, jobs = self.pending.pop(0)
            outcomes = [j.run() for j in jobs]
            if matched or held or outcomes:
                try:
                    self.store.set_outcome(event_id, matched,
                                           {"actions": outcomes, "suppressed": held})
                except Exception as e:  # noqa: BLE001 - the messages are queued already
                    self.log.error(f"cannot record the outcome of event {event_id}: {e}")


def message(ev: Event) -> tuple[str, str]:
    """Title and body of a recovery report, as templates with every brace escaped."""
    from ..tools.recover import report_text

    x = ev.extra
    if x.get("alert"):
        head = str(x["alert"])
    elif x.get("dry_run"):
        head = "split-brain recovery (dry run): nothing changed"
    else:
        head = "split-brain recovered: local writes discarded, full resync follows"
    title = f"[{ev.severity}] {ev.resource} ({ev.host}): {head}"
    return _literal(title), _literal(report_text(ev))


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def notifier(cfg: Any, store: Any, log: Any) -> Publisher:
    """The publisher `hasthook recover` uses: rules naming `cause: recover` route it,
    and a failure with nowhere else to go reaches settings.alert_channels."""
    return Publisher(cfg, store, log)
