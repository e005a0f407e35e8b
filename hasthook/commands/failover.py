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

from ..cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("promote", "demote"),
                   help="promote: become primary and start; demote: stop and become secondary")
    p.add_argument("resources", nargs="*", metavar="RESOURCE",
                   help="HAST resources (default: every resource from `hastctl dump`)")
    p.add_argument("--dry-run", "-n", action="store_true",
                   help="print the steps in order and change nothing")
    p.add_argument("--wait", type=float, default=60, metavar="SECONDS",
                   help="how long the role change waits for hastd (default 60)")


def run(args: argparse.Namespace, app) -> int:
    from ..tools.failover import Failover, FailoverError, Router

    # Each step is recorded and routed through the rules, like an event from hastd.
    router = None if args.dry_run else Router(app.cfg, app.store, app.log)
    fo = Failover(app.settings, app.cfg.data.get("resources"), app.hastctl, app.log,
                  record=router, host=app.cfg.hostname, wait=args.wait)
    try:
        return fo.run(args.action, args.resources, dry_run=args.dry_run)
    except FailoverError as e:
        raise CommandError(str(e), e.code) from None
    finally:
        if router is not None:
            router.deliver()
