"""Check the rules file: schema, channels, templates, URLs and file permissions.

Exit 0 with a one-line summary when the file is usable (warnings may be
printed), 78 (EX_CONFIG) with one `FILE:LINE:COL: path: message` line per
error, 66 (EX_NOINPUT) when a file named with -c or $HASTHOOK_CONFIG is missing.
"""

from __future__ import annotations

import argparse
import sys

from .. import sysexits
from ..config import ConfigError, find
from ..config.loader import parse_and_validate


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace, app) -> int:
    from ..config.schema import file_warnings

    path, named = find(app.config_path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if named:
            print(f"hasthook: {path}: no such file", file=sys.stderr)
            return sysexits.EX_NOINPUT
        if not args.quiet:
            print(f"{path}: no such file; the built-in defaults apply "
                  "(record every event, act on none)")
        return sysexits.EX_OK
    except (OSError, UnicodeDecodeError) as e:
        print(f"hasthook: {path}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return sysexits.EX_NOINPUT
    try:
        data, problems = parse_and_validate(text, path, deep=True)
        problems += file_warnings(path, data, text)
    except ConfigError as e:
        data, problems = {}, e.problems
    for p in sorted(problems, key=lambda p: (p.line, p.col, p.warning)):
        print(p, file=sys.stderr)
    errors = sum(not p.warning for p in problems)
    if errors:
        print(f"{path}: {errors} error{'s' if errors != 1 else ''}; the hook keeps using the "
              "last good copy until this is fixed", file=sys.stderr)
        return sysexits.EX_CONFIG
    if not args.quiet:
        warnings = len(problems)
        print(f"{path}: OK: {_count(data.get('rules'), 'rule')}, "
              f"{_count(data.get('channels'), 'channel')}, "
              f"{_count(data.get('templates'), 'template')}"
              + (f"; {_count(range(warnings), 'warning')}" if warnings else ""))
    return sysexits.EX_OK


def _count(items: object, noun: str) -> str:
    n = len(items) if isinstance(items, list | dict | range) else 0
    return f"{n} {noun}{'s' if n != 1 else ''}"
