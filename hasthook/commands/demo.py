"""See what hasthook does, on a simulated HAST pair: no FreeBSD, no config, loopback only.

Two simulated nodes go through connect, sync, a link loss, a split-brain that
is recovered automatically and a cable pull across many resources, through the
real hasthook-exec and rules like rules.example.yaml; messages go to a local
receiver. Prints the timeline and a summary; exit 0 when everything went as
described, 1 otherwise. Everything lives in a temporary directory, removed after.
"""

from __future__ import annotations

import argparse
import sys

from .. import sysexits

USES_CONFIG = False  # the demo brings its own rules, state and receiver


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resources", type=int, default=20, metavar="N",
                   help="resources in the cable pull (default 20, at least 2)")
    p.add_argument("--rules", action="store_true",
                   help="print the rules the demo uses and exit")


def run(args: argparse.Namespace, app) -> int:  # noqa: ARG001 - the demo brings its own config
    from ..sim import demo

    if args.rules:
        print(demo.RULES, end="")
        return sysexits.EX_OK
    if args.resources < 2:
        print("hasthook demo: --resources must be at least 2", file=sys.stderr)
        return sysexits.EX_USAGE
    return demo.main(resources=args.resources)
