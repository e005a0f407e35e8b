"""Try your rules on a simulated HAST pair from the shell: start it, play events, stop it.

`start DIR` leaves two simulated FreeBSD nodes (host1 primary, host2 secondary)
running in DIR and prints, per node, the settings a rules file needs and how to
make its hastd run hasthook-exec with that file (`hook`). Then each command
plays what hastd would do: `link down|up`, `split-brain`, `sync`, `role`,
`reload`, `disk-errors`; `status` shows the state, `stop` ends every process of
the pair. A scenario returns once the hooks it fired are done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .. import sysexits
from ..errors import HasthookError, UsageError
from . import duration

WAIT = "300"  # seconds for the hooks a step fires: a loaded machine is slow, not broken


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("-d", "--dir", metavar="DIR",
                       help="the pair's directory (default: $HASTHOOK_SIM_DIR)")
    waits = argparse.ArgumentParser(add_help=False)
    waits.add_argument("--wait", metavar="SECONDS", default=WAIT,
                       help=f"how long to wait for the hooks a step fires (default {WAIT})")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, helptext: str, *parents: argparse.ArgumentParser,
               aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, description=helptext, aliases=aliases,
                              parents=[where, *parents])

    a = sub.add_parser("start", help="start a pair in DIR (new or empty) and print its settings",
                       description="start a pair in DIR (new or empty) and print its settings")
    a.add_argument("dir", nargs="?", metavar="DIR",
                   help="where the pair lives (default: $HASTHOOK_SIM_DIR)")
    a.add_argument("-r", "--resource", action="append", metavar="NAME",
                   help="a HAST resource of the pair; repeat for more (default: shared1)")
    a = action("settings", "print each node's settings and hook command again")
    a.add_argument("--json", action="store_true", help="as JSON")
    a = action("hook", "make the node's hastd run hasthook-exec with RULES for every event")
    a.add_argument("node", metavar="NODE", help="host1 or host2")
    a.add_argument("rules", nargs="?", metavar="RULES", help="the node's rules file")
    a.add_argument("--exec", metavar="PROGRAM",
                   help="run this instead of the installed hasthook-exec")
    a.add_argument("--off", action="store_true", help="run no hook any more")
    a = action("link", "the link between the nodes goes down or comes back", waits)
    a.add_argument("state", choices=("down", "up"))
    a.add_argument("--idle", action="store_true",
                   help="down: the primaries are not writing (they notice later)")
    a.add_argument("--stall", action="store_true",
                   help="up: the synchronization that starts makes no progress")
    a = action("split-brain", "both nodes wrote while apart; hastd retries until a side "
                              "is re-created", waits)
    a.add_argument("resource", nargs="?", metavar="RESOURCE",
                   help="the resource (default: the first)")
    a.add_argument("--rounds", type=int, default=6, metavar="N",
                   help="connection attempts before giving up (default 6: a minute of "
                        "hastd's retries)")
    a = action("sync", "the primary synchronizes dirty extents to the secondary", waits)
    a.add_argument("resources", nargs="*", metavar="RESOURCE",
                   help="the resources (default: all)")
    a.add_argument("--extents", type=int, default=64, metavar="N",
                   help="dirty extents to copy (default 64, 128 MB)")
    a.add_argument("--stall", action="store_true",
                   help="the synchronization starts and makes no progress")
    a = action("role", "hastctl role on a node", waits)
    a.add_argument("node", metavar="NODE")
    a.add_argument("resource", metavar="RESOURCE")
    a.add_argument("role", metavar="ROLE", choices=("init", "primary", "secondary"))
    a = action("reload", "hastd re-reads the node's hast.conf (SIGHUP); edit it first",
               waits)
    a.add_argument("node", metavar="NODE")
    a = action("disk-errors", "the node's local disk fails requests: its error counters "
                              "rise")
    a.add_argument("node", metavar="NODE")
    a.add_argument("resource", metavar="RESOURCE")
    for kind in ("read", "write", "delete", "flush"):
        a.add_argument(f"--{kind}", type=int, default=0, metavar="N",
                       help=f"failed {kind} requests (default: --write 1 when none given)")
    a = action("status", "the pair's state: roles, connections, dirty, errors, hooks",
               aliases=("show",))
    a.add_argument("--json", action="store_true", help="as JSON")
    a.add_argument("--events", type=int, default=0, metavar="N",
                   help="also the last N events the nodes fired")
    action("stop", "end every process of the pair (its files stay)", waits)


def run(args: argparse.Namespace, app) -> int:  # noqa: ARG001 - the pair is its own config
    from ..sim import control

    act = {"show": "status"}.get(args.action, args.action)
    wait = _seconds(args.wait) if hasattr(args, "wait") else 0.0
    if act == "start":
        root = control.where(args.dir)
        control.start(root, args.resource or [])
        return _print(control.call(root, "settings", 60.0))
    root = control.where(args.dir)
    # A split-brain waits for hooks once per round, a sync or link up twice.
    timeout = wait * (max(getattr(args, "rounds", 0), 0) + 3) + 120
    if act == "stop":
        return _print(control.stop(root, wait))
    params: dict[str, Any] = {}
    if act == "settings" or act == "status":
        params = {"events": args.events} if act == "status" else {}
        reply = control.call(root, act, 60.0, **params)
        if args.json:
            print(json.dumps(reply["data"], indent=2))
            return sysexits.EX_OK
        return _print(reply)
    if act == "hook":
        params = {"node": args.node, "rules": _hook_file(args)}
        if args.exec:
            params["exec"] = _program(args.exec)
    elif act == "link":
        if args.idle and args.state == "up" or args.stall and args.state == "down":
            raise UsageError(f"link {args.state}: --{'idle' if args.idle else 'stall'} "
                             f"goes with link {'down' if args.idle else 'up'}")
        params = {"state": args.state, "idle": args.idle, "stall": args.stall}
    elif act == "split-brain":
        params = {"resource": args.resource, "rounds": args.rounds}
    elif act == "sync":
        params = {"resources": args.resources, "extents": args.extents, "stall": args.stall}
    elif act == "role":
        params = {"node": args.node, "resource": args.resource, "role": args.role}
    elif act == "reload":
        params = {"node": args.node}
    elif act == "disk-errors":
        params = {"node": args.node, "resource": args.resource,
                  **{k: getattr(args, k) for k in ("read", "write", "delete", "flush")}}
    if hasattr(args, "wait"):
        params["wait"] = wait
    return _print(control.call(root, act, timeout, **params))


def _seconds(text: str) -> float:
    return duration("--wait", text)


def _hook_file(args: argparse.Namespace) -> str | None:
    """The rules file as an absolute path (hooks run from /), or None for --off."""
    if args.off:
        if args.rules or args.exec:
            raise UsageError("hook --off takes no RULES or --exec")
        return None
    if not args.rules:
        raise UsageError(f"hook {args.node}: which rules file? (or --off)")
    path = os.path.abspath(args.rules)
    if not os.path.isfile(path):
        raise HasthookError(f"{path}: no such rules file", sysexits.EX_NOINPUT)
    return path


def _program(path: str) -> str:
    full = os.path.abspath(path)
    if not (os.path.isfile(full) and os.access(full, os.X_OK)):
        raise HasthookError(f"{full}: not an executable file", sysexits.EX_NOINPUT)
    return full


def _print(reply: dict[str, Any]) -> int:
    print(reply.get("out") or "", end="", flush=True)
    if reply.get("err"):
        print(reply["err"], end="", file=sys.stderr)
    return sysexits.EX_OK
