"""Show dirty (not yet replicated) bytes per primary resource, exactly as hastdirty.sh did.

Exit status: the number of dirty primary resources (capped at 255), as the
article's hastdirty.sh; with --nagios, 0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN.
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import sysexits
from ..errors import HasthookError
from ..tools import dirty
from ..units import parse_size

RAW_OUTPUT = True  # the article's hastdirty.sh printed names as they are; scripts compare


def add_arguments(p: argparse.ArgumentParser) -> None:
    # hastdirty.sh's flags: -h is "human", so help is --help only; and the
    # Nagios convention takes -c for the critical threshold (use --config here).
    # A group made after this inherits "resolve", which takes -h/-c over.
    p.conflict_handler = "resolve"
    g = p.add_argument_group("hastdirty.sh options")
    g.add_argument("-a", dest="all", action="store_true",
                   help="also show resources with nothing dirty")
    g.add_argument("-q", dest="quiet", action="store_true",
                   help="print nothing; only the exit status counts")
    g.add_argument("-h", dest="human", action="store_true",
                   help="sizes as K/M/G/T (hastdirty.sh's arithmetic)")
    out = p.add_argument_group("other output")
    fmt = out.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON object")
    fmt.add_argument("--nagios", action="store_true",
                     help="print one Nagios/Icinga plugin line; exit 0/1/2/3")
    out.add_argument("-w", "--warning", metavar="SIZE",
                     help="--nagios: WARNING when dirty is above SIZE (default 0)")
    out.add_argument("-c", "--critical", metavar="SIZE",
                     help="--nagios: CRITICAL when dirty is above SIZE (default: never)")
    p.add_argument("resources", nargs="*", metavar="RESOURCE",
                   help="resources to check (default: every resource in hastctl dump)")


def _size(option: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as e:
        raise HasthookError(f"{option}: {e}", sysexits.EX_USAGE) from None


def _relay(r) -> None:
    """hastctl's own complaints still reach the admin, as they did under the script."""
    if r is not None and r.stderr.strip():
        sys.stderr.write(r.stderr if r.stderr.endswith("\n") else r.stderr + "\n")


def run(args: argparse.Namespace, app) -> int:
    if (args.warning or args.critical) and not args.nagios:
        raise HasthookError("-w and -c are thresholds for --nagios "
                           "(the config file is --config FILE here)", sysexits.EX_USAGE)
    warn = _size("-w", args.warning)
    crit = _size("-c", args.critical)
    names, dump = dirty.resource_names(args.resources, app.hastctl)
    states = dirty.read_states(names, app.hastctl)
    if args.nagios:
        line, code = dirty.nagios(states, 0 if warn is None else warn, crit, dump)
        print(line)
        return code
    _relay(dump)
    for s in states:
        _relay(s.listed)
    count = dirty.dirty_count(states)
    code, note = dirty.exit_status(count)
    if args.json:
        print(json.dumps(dirty.to_json(states), indent=2))
    else:
        sys.stdout.write(dirty.script_output(states, args.all, args.quiet, args.human))
    if note:
        print(f"hasthook: {note}", file=sys.stderr)
    return code
