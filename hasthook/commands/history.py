"""Show recorded events, newest first."""

from __future__ import annotations

import argparse
import json
import time

from .. import sysexits
from ..errors import HasthookError, UsageError
from ..event import check_name
from ..units import format_duration, iso
from . import duration

READ_ONLY = True

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.add_argument("--resource", metavar="R", help="only this resource")
    p.add_argument("--event", metavar="E", help="only this event (e.g. split-brain, recover)")
    p.add_argument("--since", metavar="DURATION", help="only the last DURATION (e.g. 2h)")
    p.add_argument("--limit", metavar="N", type=int, help="at most N events")


def run(args: argparse.Namespace, app) -> int:
    since = None
    if args.since:
        since = time.time() - duration("--since", args.since)
    if args.limit is not None and args.limit < 1:
        raise HasthookError("--limit: must be at least 1", sysexits.EX_USAGE)
    if args.event is not None:
        try:
            check_name(args.event, own=True)
        except UsageError as e:
            raise UsageError(f"--event: {e}") from None
    rows = app.store.history(args.resource, args.event, since, args.limit)
    for r in rows:
        r["time"] = iso(r["time"])
    if args.json:
        print(json.dumps(rows, indent=2))
        return sysexits.EX_OK
    if not rows:
        given = [f"--{k} {v}" for k, v in (("resource", args.resource), ("event", args.event),
                                           ("since", args.since)) if v is not None]
        print("no events match " + ", ".join(given) if given else "no events recorded yet")
    for r in rows:
        roles = f" {r['old_role']}->{r['new_role']}" if r["event"] == "role" else ""
        state = " ".join(f"{k}={r[k]}" for k in ("role", "status", "dirty") if r[k] is not None)
        extra = f" cause={r['cause']}" if r.get("cause") else ""
        held = (r.get("outcome") or {}).get("suppressed") or []
        extra += "".join(f" silenced-by={h['silence']}" for h in held if h.get("by") == "silence")
        # Events hasthook makes itself (a failover step, a recovery) say what they were.
        what = (r.get("extra") or {}).get("what") if isinstance(r.get("extra"), dict) else None
        extra += f"  {what}" if what else ""
        print(f"{r['time']} {r['host']} {r['severity']:<8} {r['event']:<11} "
              f"{r['resource']}{roles}  {state}{extra}".rstrip())
    oldest = app.store.oldest()
    if oldest is not None:  # what retention kept: older events are gone, not missing
        print(f"# the history reaches back to {iso(oldest)} "
              f"(settings.retention {format_duration(app.settings.retention)})")
    return sysexits.EX_OK
