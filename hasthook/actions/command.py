"""`command: {argv: [...], timeout: 10s}`: run a program for an event, never a shell.

Each argv element is a template rendered on its own, so a resource name full
of spaces or semicolons stays one argument. stdin is /dev/null, the event is
also in HASTHOOK_* variables, and the program runs in its own process group
so the timeout kills everything it started. As the hook runs as root, a
config file or directory that others can write is refused, as cron does.
"""

from __future__ import annotations

import os
import shlex
import signal
import sqlite3
import subprocess
from typing import Any

from ..render import render
from ..units import parse_duration
from . import Context, alert, outcome

DEFAULT_TIMEOUT = "10s"
OUTPUT_LIMIT = 2000
PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


def _refusal(ctx: Context) -> str | None:
    why = ctx.config.unsafe_reason()
    return f"refused to run commands from {ctx.config.path}: {why}" if why else None


def prepare(params: dict[str, Any], ctx: Context, db: sqlite3.Connection) -> None:
    refusal = _refusal(ctx)
    if refusal and not ctx.dry_run:
        ctx.log.crit(f"[{ctx.event.resource}] rule {ctx.rule!r}: {refusal}")
        alert(ctx, db, f"hasthook on {ctx.event.host}: command refused",
              f"{refusal}. Make the file and its directory owned by root and writable "
              "only by root (chmod go-w).")


def argv_for(params: dict[str, Any], ctx: Context) -> list[str]:
    values = ctx.values()
    return [render(str(a), values) for a in params["argv"]]


def execute(params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    argv = argv_for(params, ctx)
    timeout = parse_duration(params.get("timeout", DEFAULT_TIMEOUT))
    refusal = _refusal(ctx)
    if refusal:
        return outcome("command", False, refusal, argv=argv)
    if ctx.dry_run:
        return outcome("command", True, f"would run {shlex.join(argv)} "
                       f"(timeout {params.get('timeout', DEFAULT_TIMEOUT)})", argv=argv)
    env = {"PATH": os.environ.get("PATH") or PATH,
           **{f"HASTHOOK_{k.upper()}": v for k, v in ctx.values().items()},
           "HASTHOOK_EVENT_ID": str(ctx.event_id or "")}
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as e:
        ctx.log.error(f"[{ctx.event.resource}] rule {ctx.rule!r}: cannot run "
                      f"{shlex.join(argv)}: {e.strerror}")
        return outcome("command", False, f"{argv[0]}: {e.strerror}", argv=argv, rc=None)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(p)
        limit = params.get("timeout", DEFAULT_TIMEOUT)
        ctx.log.error(f"[{ctx.event.resource}] rule {ctx.rule!r}: {shlex.join(argv)} timed "
                      f"out after {limit}; killed")
        return outcome("command", False, f"timed out after {limit}; killed", argv=argv,
                       rc=None)
    finally:
        if p.poll() is None:  # the hook's time box interrupted us
            _kill(p)
    text = out.decode("utf-8", "replace")[-OUTPUT_LIMIT:].strip()
    ok = p.returncode == 0
    level = "notice" if ok else "err"
    ctx.log(level, f"[{ctx.event.resource}] rule {ctx.rule!r}: {shlex.join(argv)} exited "
            f"{p.returncode}" + (f": {text.splitlines()[-1]}" if text and not ok else ""))
    return outcome("command", ok, f"exit {p.returncode}", argv=argv, rc=p.returncode,
                   output=text)


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        p.communicate(timeout=1)
    except subprocess.TimeoutExpired:
        pass  # a descendant left the group holding the pipe; do not wait for it
