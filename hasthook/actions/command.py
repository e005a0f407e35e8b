"""`command: {argv: [...], timeout: 10s}`: run a program for an event, never a shell.

Each argv element is a template rendered on its own, so a resource name full
of spaces or semicolons stays one argument. stdin is /dev/null, the event is
also in HASTHOOK_* variables, and the program runs in its own process group
so the timeout kills everything it started. As the hook runs as root, a
config file or directory that others can write is refused, as cron does.
"""

from __future__ import annotations

import shlex
import sqlite3
from typing import Any

from .. import proc
from ..render import render
from ..units import parse_duration
from . import Context, alert, outcome

DEFAULT_TIMEOUT = "10s"
OUTPUT_LIMIT = 2000


def _refusal(ctx: Context, argv: list[str]) -> str | None:
    return ctx.config.refusal(argv[0]) if argv else "empty argv"


def prepare(params: dict[str, Any], ctx: Context, db: sqlite3.Connection) -> None:
    refusal = _refusal(ctx, argv_for(params, ctx))
    if refusal and not ctx.dry_run:
        ctx.log.crit(f"[{ctx.event.resource}] rule {ctx.rule!r}: {refusal}")
        alert(ctx, db, f"hasthook on {ctx.event.host}: command refused",
              f"{refusal}. Make the file, the program and the directories above them "
              "owned by root and writable only by root (chmod go-w).")


def argv_for(params: dict[str, Any], ctx: Context) -> list[str]:
    values = ctx.values()
    return [render(str(a), values) for a in params["argv"]]


def execute(params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    argv = argv_for(params, ctx)
    limit = params.get("timeout", DEFAULT_TIMEOUT)
    refusal = _refusal(ctx, argv)
    if refusal:
        return outcome("command", False, refusal, argv=argv)
    if ctx.dry_run:
        return outcome("command", True, f"would run {shlex.join(argv)} (timeout {limit})",
                       argv=argv)
    env = proc.environment({**{f"HASTHOOK_{k.upper()}": v for k, v in ctx.values().items()},
                            "HASTHOOK_EVENT_ID": str(ctx.event_id or "")})
    r = proc.run(argv, parse_duration(limit), env=env, merge_stderr=True)
    text = r.stdout[-OUTPUT_LIMIT:].strip()
    where = f"[{ctx.event.resource}] rule {ctx.rule!r}: {shlex.join(argv)}"
    if r.error is not None:
        ctx.log.error(f"{where}: cannot run: {r.error}")
        return outcome("command", False, r.why(), argv=argv, rc=None)
    if r.rc is None:
        why = f"timed out after {limit}; killed" if r.timeout is not None else r.why()
        ctx.log.error(f"{where} {why}")
        return outcome("command", False, why, argv=argv, rc=None)
    ctx.log("notice" if r.ok else "err", f"{where} exited {r.rc}"
            + (f": {text.splitlines()[-1]}" if text and not r.ok else ""))
    return outcome("command", r.ok, f"exit {r.rc}", argv=argv, rc=r.rc, output=text)
