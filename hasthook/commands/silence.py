"""Mute notifications for a resource, or all, for a while; events are still recorded.

  hasthook silence add (RESOURCE | --all) --for DURATION [--event E] [--comment TEXT] [-n]
  hasthook silence list [--json]
  hasthook silence del [-n] ID

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
    sub = p.add_subparsers(dest="silence_action", metavar="ACTION", required=True)
    a = sub.add_parser("add", parents=[_config_option()], help="add a silence; prints its id",
                       usage="%(prog)s (RESOURCE | --all) --for DURATION [--event E] "
                             "[--comment TEXT] [-n] [-c FILE]")
    which = a.add_mutually_exclusive_group(required=True)
    which.add_argument("resource", nargs="?", metavar="RESOURCE",
                       help="resource name or pattern (glob, or re:REGEX), as in a rule's match")
    which.add_argument("--all", action="store_true", help="every resource")
    a.add_argument("--for", dest="duration", metavar="DURATION", required=True,
                   help="how long, e.g. 30m, 2h, 1d")
    a.add_argument("--event", metavar="E", help="only this event (e.g. disconnect)")
    a.add_argument("--comment", metavar="TEXT", help="why, for whoever reads `silence list`")
    a.add_argument("-n", "--dry-run", action="store_true",
                   help="check the silence and say what it would mute; add nothing")
    a.set_defaults(_silence=_add)
    ls = sub.add_parser("list", parents=[_config_option()], help="list the active silences")
    ls.add_argument("--json", action="store_true", help="print a JSON list of objects")
    ls.set_defaults(_silence=_list, dry_run=False)
    d = sub.add_parser("del", parents=[_config_option()], help="end a silence now",
                       usage="%(prog)s [-n] [-c FILE] ID")
    d.add_argument("id", metavar="ID", help="the id `silence add` printed")
    d.add_argument("-n", "--dry-run", action="store_true",
                   help="say which silence would end; end nothing")
    d.set_defaults(_silence=_del)


def read_only(args: argparse.Namespace) -> bool:
    return args.silence_action == "list" or bool(args.dry_run)


def run(args: argparse.Namespace, app) -> int:
    return args._silence(args, app)


def _add(args: argparse.Namespace, app) -> int:
    try:
        row = silences.new(args.resource, args.duration, time.time(), args.event, args.comment)
    except ValueError as e:
        raise HasthookError(f"silence add: {e}", sysexits.EX_USAGE) from None
    if args.dry_run:
        if args.resource is not None:
            _warn_if_unknown(args.resource, app)
        print(f"would add a silence of {_what(row)} until {iso(row['ends'])}"
              + (f" ({row['comment']})" if row["comment"] else "")
              + "; dry run: nothing added")
        return sysexits.EX_OK
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
    name = args.id if known else repr(args.id)  # repr: one line, whatever was typed
    if args.dry_run:
        everything = app.store.active_silences(0) if known else []  # ended ones too
        row = next((r for r in everything if r["id"] == int(args.id)), None)
        if row is None:
            raise HasthookError(f"silence del: no silence {name}", sysexits.EX_DATAERR)
        ended = " (it has already ended)" if row["ends"] <= time.time() else ""
        print(f"would delete silence {row['id']} ({_what(row)}){ended}; dry run: nothing "
              "deleted")
        return sysexits.EX_OK
    row = app.store.silence_delete(int(args.id)) if known else None
    if row is None:
        raise HasthookError(f"silence del: no silence {name}", sysexits.EX_DATAERR)
    app.log.notice(f"silence {row['id']} ({_what(row)}) deleted by {silences.author()}")
    ended = " (it had already ended)" if row["ends"] <= time.time() else ""
    print(f"silence {row['id']} deleted{ended}")
    return sysexits.EX_OK


def _what(row: dict) -> str:
    res = "every resource" if row["resource"] == silences.ALL else f"resource {row['resource']}"
    return f"{res}, " + (f"event {row['event']}" if row["event"] else "every event")

