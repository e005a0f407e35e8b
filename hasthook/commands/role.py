"""Change the HAST role of resources safely (hastrole.sh, fixed).

For primary: wait for each old `hastd: NAME (secondary)` worker to exit (no
role is changed while one lingers), set primary, then wait for
/dev/hast/PROVNAME. init and secondary are set directly.
"""

from __future__ import annotations

import argparse
import sys

from ..tools import role as tool
from . import duration


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("role", choices=tool.ROLES, help="the new role")
    p.add_argument("resources", nargs="*", metavar="RESOURCE",
                   help="resources to change (default: every resource in hastctl dump)")
    p.add_argument("--wait", metavar="SECONDS", default=str(int(tool.DEFAULT_WAIT)),
                   help="primary: how long to wait for the old secondary worker to exit, "
                        "and then for the device (default 60)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say what would be done; change nothing")


def run(args: argparse.Namespace, app) -> int:
    wait = duration("--wait", args.wait)
    return tool.set_role(args.role, args.resources, app.hastctl, app.settings, app.log,
                         wait, args.dry_run, say=lambda msg: print(msg, file=sys.stderr,
                                                                   flush=True))
