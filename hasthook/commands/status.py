"""Every resource at a glance: role, status, dirty, peer, last event, alerts, silences.

Exit status 0 when all is well, 1 when a resource is degraded or split-brained,
69 (EX_UNAVAILABLE) when hastd cannot be asked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..tools import status as tool

READ_ONLY = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON object")


def run(args: argparse.Namespace, app) -> int:
    if os.path.exists(app.store.path) and app.store.recoveries_running():
        _tell_interrupted(app)
    report = tool.gather(app.hastctl, app.store, app.settings)
    if args.json:
        print(json.dumps(tool.to_json(report), indent=2))
    else:
        sys.stdout.write(tool.render(report))
    return report.code


def _tell_interrupted(app) -> None:
    """A recovery a dead process left half done: tell it, which writes to the history
    status otherwise only reads, so through a store of its own."""
    from ..pipeline import Pipeline
    from ..store import Store

    store = Store(app.settings.state_dir)
    try:
        pipeline = Pipeline(app.cfg, store, app.log)
        if pipeline.reap_recoveries():
            pipeline.deliver(wait=False)
    finally:
        store.close()
