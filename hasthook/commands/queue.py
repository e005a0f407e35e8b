"""List queued messages: pending (with the next attempt), being sent, and dead.

Dead messages (older than settings.max_age, given up) stay listed until the
history retention prunes them, so a lost alert is visible, not silent.
"""

from __future__ import annotations

import argparse
import json
import time

from .. import sysexits
from ..units import format_duration, iso, plural

READ_ONLY = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON list of objects")
    p.add_argument("--sent", action="store_true", help="also list messages already sent")


def run(args: argparse.Namespace, app) -> int:
    states = ("pending", "sending", "dead") + (("sent",) if args.sent else ())
    rows = app.store.outbox_list(states)
    if args.json:
        for r in rows:
            for k in ("created", "due", "lease_until", "sent_at"):
                r[k] = iso(r[k]) if r[k] is not None else None
        print(json.dumps(rows, indent=2))
        return sysexits.EX_OK
    now = time.time()
    for r in rows:
        print(f"{r['id']:>5} {iso(r['created'])} {r['state']:<7} {r['channel']:<12} "
              f"{r['resource'] or '-'} {r['event'] or '-'}: {_progress(r, now)}  "
              f"{r['title']}" + (f"  error: {r['last_error']}" if r["last_error"]
                                 and r["state"] != "sent" else ""))
    if not rows:
        print("the outbox is empty" if args.sent else
              "nothing queued: no message pending, being sent or dead")
    return sysexits.EX_OK


def _progress(r: dict, now: float) -> str:
    """Where a message stands, attempts in words: `2 attempts, next in 30s`."""
    tries = plural(r["attempts"], "attempt")
    if r["state"] == "pending":
        wait = r["due"] - now
        when = f"next in {format_duration(wait)}" if wait > 0 else "due now"
        return f"{tries}, {when}" if r["attempts"] else f"not tried yet, {when}"
    if r["state"] == "sending":
        return f"attempt {r['attempts'] + 1} under way"
    if r["state"] == "dead":
        return f"given up after {tries}"
    return f"sent after {tries}"
