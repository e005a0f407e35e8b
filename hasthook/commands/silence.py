"""Mute notifications for a resource, or all, for a while; events are still recorded.

  hasthook silence add (RESOURCE | --all) --for DURATION [--event E] [--comment TEXT]
  hasthook silence list [--json]
  hasthook silence del ID

`add` prints the new silence's id; RESOURCE is a pattern as in a rule's
`resource` match (glob, or `re:` for an anchored regex); one that matches no
resource known to hastctl dump or the history is warned of. Silences end by
themselves; `del` ends one early. Recovery and command actions still run.
Exit status: 0, 64 (EX_USAGE) bad arguments, 65 (EX_DATAERR) unknown id.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .. import silences, sysexits
from ..errors import HasthookError
from ..units import format_duration, iso


def _config_option() -> argparse.ArgumentParser:
    # Each action's parser reads its own argv tail, so `silence add r1 --for 1h -c FILE`
    # needs -c here too; SUPPRESS keeps an earlier `hasthook -c FILE` in force.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="rules file (default: $HASTHOOK_CONFIG, "
                        "else /usr/local/etc/hasthook/rules.yaml)")
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="silence_action", metavar="ACTION")
    a = sub.add_parser("add", parents=[_config_option()], help="add a silence; prints its id")
    a.add_argument("resource", nargs="?", metavar="RESOURCE",
                   help="resource name or pattern (glob, or re:REGEX), as in a rule's match")
    a.add_argument("--all", action="store_true", help="every resource")
    a.add_argument("--for", dest="duration", metavar="DURATION",
                   help="how long, e.g. 30m, 2h, 1d (required)")
    a.add_argument("--event", metavar="E", help="only this event (e.g. disconnect)")
    a.add_argument("--comment", metavar="TEXT", help="why, for whoever reads `silence list`")
    a.set_defaults(_silence=_add)
    ls = sub.add_parser("list", parents=[_config_option()], help="list the active silences")
    ls.add_argument("--json", action="store_true", help="print a JSON list of objects")
    ls.set_defaults(_silence=_list)
    d = sub.add_parser("del", parents=[_config_option()], help="end a silence now")
    d.add_argument("id", metavar="ID", help="the id `silence add` printed")
    d.set_defaults(_silence=_del)
    p.set_defaults(_silence_parser=p)


def run(args: argparse.Namespace, app) -> int:
    action = getattr(args, "_silence", None)
    if action is None:
        args._silence_parser.print_usage(sys.stderr)
        return sysexits.EX_USAGE
    return action(args, app)


def _add(args: argparse.Namespace, app) -> int:
    if args.all == (args.resource is not None):
        raise HasthookError("silence add: give a RESOURCE or --all (not both)", sysexits.EX_USAGE)
    if args.duration is None:
        raise HasthookError("silence add: --for DURATION is required (e.g. --for 2h)",
                           sysexits.EX_USAGE)
    try:
        row = silences.new(args.resource, args.duration, time.time(), args.event, args.comment)
    except ValueError as e:
        raise HasthookError(f"silence add: {e}", sysexits.EX_USAGE) from None
    sid = app.store.silence_add(**row)
    if args.resource is not None:
        _warn_if_unknown(args.resource, app)
    app.log.notice(f"silence {sid} added by {row['author']}: {_what(row)} until "
                   f"{iso(row['ends'])}" + (f"; comment: {row['comment']}" if row["comment"]
                                             else ""))
    print(sid)
    return sysexits.EX_OK


def _warn_if_unknown(pattern: str, app) -> None:
    """A typo in RESOURCE would make a silence that mutes nothing: say so on stderr.
    The silence stays (a resource may be added to hast.conf later); scripts that
    read its id from stdout are not disturbed."""
    meta, r = app.hastctl.dump()
    known = set(meta) | set(app.store.resource_names())
    if silences.covered(pattern, known):
        return
    where = "in `hastctl dump` or the history" if r.ok else (
        "in the history (hastctl dump failed)")
    print(f"hasthook: silence add: warning: {pattern!r} matches no resource known {where}; "
          "added anyway", file=sys.stderr)


def _list(args: argparse.Namespace, app) -> int:
    now = time.time()
    rows = app.store.active_silences(now)
    if args.json:
        print(json.dumps([{**r, "ends": iso(r["ends"]), "created": iso(r["created"])}
                          for r in rows], indent=2))
        return sysexits.EX_OK
    if not rows:
        print("no active silences")
        return sysexits.EX_OK
    head = ("ID", "RESOURCE", "EVENT", "ENDS", "LEFT", "AUTHOR", "COMMENT")
    table = [(str(r["id"]), r["resource"], r["event"] or "*", iso(r["ends"]),
              format_duration(max(0.0, r["ends"] - now)), r["author"] or "-",
              r["comment"] or "") for r in rows]
    widths = [max(len(x[i]) for x in [head, *table]) for i in range(len(head) - 1)]
    for line in [head, *table]:
        cells = [c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]).rstrip())
    return sysexits.EX_OK


def _del(args: argparse.Namespace, app) -> int:
    known = args.id.isascii() and args.id.isdigit() and int(args.id) < 2**63
    row = app.store.silence_delete(int(args.id)) if known else None
    name = args.id if known else repr(args.id)  # repr: one line, whatever was typed
    if row is None:
        raise HasthookError(f"silence del: no silence {name}", sysexits.EX_DATAERR)
    app.log.notice(f"silence {row['id']} ({_what(row)}) deleted by {silences.author()}")
    ended = " (it had already ended)" if row["ends"] <= time.time() else ""
    print(f"silence {row['id']} deleted{ended}")
    return sysexits.EX_OK


def _what(row: dict) -> str:
    res = "every resource" if row["resource"] == silences.ALL else f"resource {row['resource']}"
    return f"{res}, " + (f"event {row['event']}" if row["event"] else "every event")

