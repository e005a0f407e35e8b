"""Print the rules file's JSON Schema (for editors: yaml-language-server, IDEs)."""

from __future__ import annotations

import argparse
import sys

from .. import sysexits

USES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: ARG001 - no options
    pass


def run(args: argparse.Namespace, app) -> int:  # noqa: ARG001
    from ..config.schema import schema_text

    sys.stdout.write(schema_text())
    return sysexits.EX_OK
