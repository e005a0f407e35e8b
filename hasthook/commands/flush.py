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
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say what would be taken in and sent; send and change nothing")


def read_only(args: argparse.Namespace) -> bool:
    return bool(args.dry_run)


def run(args: argparse.Namespace, app) -> int:
    if args.dry_run:
        return _dry_run(args, app)
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


def _dry_run(args: argparse.Namespace, app) -> int:
    """What a flush would do now, read from the state without touching it."""
    from ..delivery.alertmanager import RESOLVED_BY, is_channel
    from ..rules import INTERNAL_RULE
    from ..spool import waiting
    from ..units import plural

    store, now = app.store, time.time()
    spooled = waiting(app.settings.state_dir)
    if spooled:
        print(f"would take in {plural(spooled, 'spooled event')} (recorded late: no rule "
              "acts on them; one alert names them)")
    pending = store.outbox_list(("pending",))
    groups = store.outbox_ready(now, args.all)
    for channel, key in groups:
        rows = [r for r in pending if (r["channel"], r["group_key"]) == (channel, key)]
        print(f"would send to {channel}: one message for {plural(len(rows), 'queued row')}")
        for r in rows:
            print(f"  {r['title']}")
    left = len(pending) - sum(1 for r in pending if (r["channel"], r["group_key"]) in
                              set(groups))
    for name, spec in app.cfg.channels.items():
        if is_channel(spec):
            open_ = [c for c in store.outbox_conditions(name, RESOLVED_BY,
                                                        exclude_rule=INTERNAL_RULE)
                     if c["resolved_at"] is None]
            print(f"would re-send {plural(len(open_), 'open alert')} to Alertmanager "
                  f"channel {name}")
    if not spooled and not groups:
        print("nothing is due now" + (f"; {plural(left, 'message')} wait for group_wait or "
                                       "a retry (--all sends them now)" if left else ""))
    elif left:
        print(f"{plural(left, 'message')} would keep waiting for group_wait or a retry")
    print("dry run: nothing taken in, sent or changed")
    return sysexits.EX_OK
