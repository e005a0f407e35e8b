"""Send queued messages now: what is due, or with --all everything pending.

Every `hasthook watch` pass (cron, every minute: etc/cron.d/hasthook) does the
same, so a message whose channel was down is retried even when no HAST event
comes to do it; flush is the same work by hand. Exits 0 when the outbox holds
nothing it could not send, 75 (EX_TEMPFAIL) when some messages failed and
wait for a retry.

It also takes in spooled events, prunes the history settings.retention lets
go (at most hourly), and re-sends each open condition to Alertmanager
channels with a fresh endsAt (hasthook/delivery/alertmanager.py), which keeps
those alerts active while the condition lasts (Pipeline.upkeep).
"""

from __future__ import annotations

import argparse
import sys
import time

from .. import sysexits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..pipeline import Upkeep
    from ..store import Store


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true",
                   help="send everything pending now, ignoring group_wait and retry backoff")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing (for cron; syslog still gets every line)")


def run(args: argparse.Namespace, app) -> int:
    from ..log import Log
    from ..pipeline import Pipeline

    log = Log.from_settings(app.settings, echo=not args.quiet)
    # Events a hook had to spool (database locked, unwritable) go in within a minute,
    # even when no HAST event comes to do it.
    done = Pipeline(app.cfg, app.store, log).upkeep(everything=args.all)
    if not args.quiet:
        report(done, app.store)
    # Messages given up within the last max_age: a channel is broken and someone must
    # look (`hasthook queue`).
    dead = app.store.outbox_dead_since(time.time() - app.settings.max_age)
    if dead:
        if not args.quiet:
            print(f"hasthook: {dead} message{'s' if dead != 1 else ''} given up lately "
                  "(settings.max_age); `hasthook queue` lists them", file=sys.stderr)
        return sysexits.EX_UNAVAILABLE
    return sysexits.EX_TEMPFAIL if done.failed else sysexits.EX_OK


def report(done: Upkeep, store: Store) -> None:
    """What was sent and what waits (flush, and watch when not --quiet)."""
    rep, am = done.delivery, done.alertmanager
    if rep.busy:
        print("hasthook: another process is delivering; it sends what is due")
    pending = store.outbox_list(("pending", "sending"))
    print(f"{rep.sent} sent, {rep.failed} failed, {rep.dead} given up; "
          f"{len(pending)} still queued")
    if am["sent"] or am["failed"]:
        print(f"alertmanager: {am['sent']} open alerts re-sent"
              + (f", not taken by {', '.join(am['failed'])}" if am["failed"] else ""))
