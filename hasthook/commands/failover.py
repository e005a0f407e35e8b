"""Promote or demote this node: role change plus the filesystem and service steps around it.

promote: role primary (as `hasthook role` does it), fsck and mount (ufs) or
`zpool import -f` (zfs), then `service NAME onestart`. demote: onestop,
umount or `zpool export`, then role secondary. Idempotent; the first failing
step stops the chain with a critical alert. Exit status: 0 done, 64 usage,
65 a resource hastd does not know, 69 a step failed or hastd is unreachable,
78 bad resource settings, or the status of `hasthook role` when the role
change itself failed (1: the old secondary worker or the device timed out).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("promote", "demote"),
                   help="promote: become primary and start; demote: stop and become secondary")
    p.add_argument("resources", nargs="*", metavar="RESOURCE",
                   help="HAST resources (default: every resource from `hastctl dump`)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="print the steps in order and change nothing")
    p.add_argument("--wait", type=float, default=60, metavar="SECONDS",
                   help="how long the role change waits for hastd (default 60)")


def run(args: argparse.Namespace, app) -> int:
    from ..actions import Report
    from ..tools.failover import Failover, alert_body

    # Each step is recorded and routed through the rules, like an event from hastd; a
    # stopped failover that no rule sends anywhere goes to settings.alert_channels.
    pipeline = None if args.dry_run else app.pipeline()

    def record(ev) -> int:
        assert pipeline is not None
        title = f"[critical] {ev.resource} ({ev.host}): failover stopped"
        return pipeline.publish(ev, Report(title, alert_body(ev)))

    fo = Failover(app.settings, app.cfg.resources, app.hastctl, app.log,
                  record=None if pipeline is None else record, host=app.cfg.hostname,
                  wait=args.wait, out=print,
                  err=lambda line: print(line, file=sys.stderr, flush=True))
    try:
        return fo.run(args.action, args.resources, dry_run=args.dry_run)
    finally:
        if pipeline is not None:
            pipeline.deliver()
