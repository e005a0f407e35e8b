"""Check the rules file: schema, channels, templates, URLs and file permissions.

Exit 0 with a one-line summary when the file is usable (warnings may be
printed), 78 (EX_CONFIG) with one `FILE:LINE:COL: path: message` line per
error (a file that is not UTF-8 too), 66 (EX_NOINPUT) when a file named with -c or
$HASTHOOK_CONFIG is missing or cannot be read.
"""

from __future__ import annotations

import argparse
import sys

from .. import sysexits
from ..config import ConfigError, find
from ..config.loader import last_good_for, parse_and_validate, read_text
from ..units import iso, plural


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace, app) -> int:
    from ..config.schema import file_warnings

    path, named = find(app.config_path)
    text = read_text(path, named)
    if text is None:
        if not args.quiet:
            print(f"{path}: no such file; the built-in defaults apply "
                  "(record every event, act on none)")
        return sysexits.EX_OK
    try:
        data, problems = parse_and_validate(text, path, deep=True)
        problems += file_warnings(path, data, text)
    except ConfigError as e:
        data, problems = {}, e.problems
    for p in sorted(problems, key=lambda p: (p.line, p.col, p.warning)):
        print(p, file=sys.stderr)
    errors = sum(not p.warning for p in problems)
    if errors:
        print(f"{path}: {plural(errors, 'error')}; {_until_fixed(text)}", file=sys.stderr)
        return sysexits.EX_CONFIG
    if not args.quiet:
        warnings = len(problems)
        print(f"{path}: OK: {_count(data.get('rules'), 'rule')}, "
              f"{_count(data.get('channels'), 'channel')}, "
              f"{_count(data.get('templates'), 'template')}"
              + (f"; {plural(warnings, 'warning')}" if warnings else ""))
    return sysexits.EX_OK


def _until_fixed(text: str) -> str:
    """What the hook runs on meanwhile: its last good copy, if there is one."""
    saved, why = last_good_for(text)
    if saved is not None:
        return (f"the hook keeps running on the last good copy (validated "
                f"{iso(saved['saved'])}) until this is fixed")
    if why is not None:
        return f"whether the hook has a good copy to run on cannot be read here ({why})"
    return ("the hook has no good copy of this file: it records every event and acts on "
            "none until this is fixed")


def _count(items: object, noun: str) -> str:
    return plural(len(items) if isinstance(items, list | dict) else 0, noun)
