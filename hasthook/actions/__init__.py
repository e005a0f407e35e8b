"""Actions a rule can take, one module each, all with the same two functions.

    prepare(params, ctx, db) -> None   inside the event's SQLite transaction:
                                       durable intent (outbox rows, locks), no I/O
    execute(params, ctx) -> dict       after commit: the work itself; returns an
                                       outcome {"action", "ok", "detail", ...}

The dispatcher below picks the module by name (imported only when a rule
uses it), never lets an action's exception escape into the hook, and turns a
module that is missing from this installation into a logged, recorded failure.
With ctx.dry_run, execute must describe what it would do and change nothing.
"""

from __future__ import annotations

import importlib

from ..event import Event
from ..record import Record, fresh
from ..store import savepoint

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

NAMES = ("notify", "recover", "command")


class Context(Record):
    """What an action knows about the event it acts on."""

    event: Event
    event_id: int | None
    rule: str | None
    config: Any                        # hasthook.config.Config
    store: Any | None                  # hasthook.store.Store; None in a dry run
    log: Any                           # hasthook.log.Log
    hastctl: Callable[[], Any]         # -> hasthook.hast.Hastctl
    now: float
    dry_run: bool = False
    rule_config: dict[str, Any] = fresh(dict)  # group_wait, send_resolved
    suppressed: int = 0                # events this rule held back since it last acted
    # Jobs an action's prepare adds (e.g. an alert), run after the commit like its own.
    after: list[Job] = fresh(list)
    pipeline: Any = None               # hasthook.pipeline.Pipeline: to publish an outcome

    def values(self) -> dict[str, str]:
        """The template placeholders for this event and rule."""
        from ..render import fields

        return fields(self.event, self.rule, self.suppressed)


def get(name: str) -> ModuleType | None:
    """The action module, or None when this installation does not have it."""
    if name not in NAMES:
        return None
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        return None


def own_guards(name: str) -> bool:
    """Does the action guard itself (recover: cooldown, max_attempts), so a rule's
    throttle and repeat_interval do not hold it back?"""
    return bool(getattr(get(name), "OWN_GUARDS", False))


def outcome(name: str, ok: bool, detail: str, **more: Any) -> dict[str, Any]:
    return {"action": name, "ok": ok, "detail": detail, **more}


def _missing(name: str, ctx: Context) -> dict[str, Any]:
    msg = f"action {name!r} is not available in this installation"
    ctx.log.error(f"[{ctx.event.resource}] rule {ctx.rule!r}: {msg}")
    return outcome(name, False, msg)


class Report(Record):
    """What a synthetic event's maker wants told beyond what the rules tell."""

    title: str
    body: str
    channels: list[str] = fresh(list)  # tell these too, unless a matching rule did
    rule: str | None = None            # the rule name its message goes under; None:
                                       # hasthook's own alert (rules.INTERNAL_RULE)


class Job(Record):
    """A prepared action waiting for the commit; `failed` set means execute is skipped."""

    name: str
    params: Any
    ctx: Context
    failed: dict[str, Any] | None = None

    def run(self) -> dict[str, Any]:
        result = self.failed or execute(self.name, self.params, self.ctx)
        return {"rule": self.ctx.rule, **result}


def prepare(name: str, params: Any, ctx: Context, db: sqlite3.Connection) -> Job:
    """Run an action's prepare in a savepoint (a failure undoes only its own writes)."""
    mod = get(name)
    if mod is None:
        return Job(name, params, ctx, _missing(name, ctx))
    try:
        with savepoint(db, "action"):
            mod.prepare(params, ctx, db)
    except Exception as e:  # noqa: BLE001 - one action must not cost the event its record
        ctx.log.error(f"[{ctx.event.resource}] rule {ctx.rule!r}: {name} failed to "
                      f"prepare: {type(e).__name__}: {e}")
        return Job(name, params, ctx, outcome(name, False,
                                              f"prepare failed: {type(e).__name__}: {e}"))
    return Job(name, params, ctx)


def execute(name: str, params: Any, ctx: Context) -> dict[str, Any]:
    """Run an action's execute; always returns an outcome, never raises."""
    mod = get(name)
    if mod is None:
        return _missing(name, ctx)
    try:
        result = dict(mod.execute(params, ctx))
    except Exception as e:  # noqa: BLE001
        ctx.log.error(f"[{ctx.event.resource}] rule {ctx.rule!r}: {name} failed: "
                      f"{type(e).__name__}: {e}")
        return outcome(name, False, f"{type(e).__name__}: {e}")
    result.setdefault("action", name)
    result.setdefault("ok", False)
    result.setdefault("detail", "")
    return result


def alert(ctx: Context, db: sqlite3.Connection, title: str, body: str) -> Job | None:
    """hasthook's own alert (config broken, command refused, ...) to the alert channels.

    It goes through the notify action like any message: queued in this
    transaction and added to ctx.after, to be sent after the commit. None when
    the config has no channel to tell, or this run already raised the same alert.
    """
    channels = ctx.config.alert_channels
    if not channels or any(j.name == "notify" and (j.params.get("report") or {}).get("title")
                           == title for j in ctx.after):
        return None
    job = prepare("notify", {"channels": channels, "report": {"title": title, "body": body},
                             "internal": True}, ctx, db)
    ctx.after.append(job)
    return job


def no_hastctl() -> Any:
    """The hastctl factory of a dry run: any call is a bug, so it fails loudly."""
    raise RuntimeError("a dry run makes no hastctl calls")
