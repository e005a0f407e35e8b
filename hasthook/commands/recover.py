"""Reset a split-brained resource on this node (the article's hastrecover.sh).

Waits --delay seconds, reads the role, and unless it is primary runs
`hastctl role init RES`, `hastctl create RES`, `hastctl role ROLE RES`: this
node's divergent writes are discarded and it resyncs from the primary. A
resource found in init goes back to init unless --restore-role secondary.

Exit status: 0 recovered (or primary: nothing to do), 64 no resource given,
69 the role could not be read or a step failed (the resource is put back to
its role), 75 another recovery of the resource is running.
"""

from __future__ import annotations

import argparse
import sys

from .. import sysexits
from . import duration


def add_arguments(p: argparse.ArgumentParser) -> None:
    # The article's usage line first: `usage: hasthook recover RESOURCE ...`, exit 64.
    p.usage = ("%(prog)s RESOURCE [--delay SECONDS] [-n] [--restore-role {init,secondary}] "
               "[-c FILE]")
    p.add_argument("resource", metavar="RESOURCE", help="the HAST resource")
    p.add_argument("--delay", metavar="SECONDS", default="2",
                   help="wait this long before reading the role (default 2, as the article)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="read the role and print what would run; change nothing")
    p.add_argument("--restore-role", choices=("init", "secondary"), default=None,
                   help="role for a resource found in init (default: init, as the article)")


def run(args: argparse.Namespace, app) -> int:
    delay = duration("--delay", args.delay)
    from ..actions.recover import publisher
    from ..tools.recover import Recoverer

    pipeline = app.pipeline()
    rec = Recoverer(app.hastctl, app.log, app.settings, app.cfg.hostname, store=app.store,
                    publish=publisher(pipeline), out=print)
    o = rec.run(args.resource, delay=delay, restore_role=args.restore_role,
                dry_run=args.dry_run, origin="command")
    pipeline.flush()
    pipeline.deliver()  # what rules naming `cause: recover` queued; the rest waits
    if o.state in ("recovered", "dry-run", "primary"):
        print(f"{args.resource}: {o.detail}")
        return sysexits.EX_OK
    print(f"hasthook recover: {args.resource}: {o.detail}", file=sys.stderr)
    return sysexits.EX_TEMPFAIL if o.state == "busy" else sysexits.EX_UNAVAILABLE

