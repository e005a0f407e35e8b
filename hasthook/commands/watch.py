"""Look for what hastd never announces: a dying disk, a stalled sync, hastd gone, ...

One pass (cron, every minute: etc/cron.d/hasthook), or with --loop SECONDS a pass
every SECONDS under daemon(8) (etc/rc.d/hasthook_watch). Each pass reads `hastctl
list` and hast.conf, raises or resolves conditions through the rules (see
hasthook/watch.py), does what `hasthook flush` does, rewrites
settings.metrics_textfile and pings settings.watch.heartbeat. It never changes a
resource. Exit 0 when the pass completed (whatever it found: conditions are
alerted, not exit statuses), 75 (EX_TEMPFAIL) when messages failed and wait for
a retry.
"""

from __future__ import annotations

import argparse
import time

from .. import sysexits
from ..errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loop", metavar="SECONDS", type=float,
                   help="a pass every SECONDS until stopped (for daemon(8)), not just one")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing (for cron; syslog still gets every line)")


def run(args: argparse.Namespace, app) -> int:
    from ..config import load_for_hook
    from ..log import Log

    if args.loop is not None and args.loop < 1:
        raise UsageError(f"--loop {args.loop:g}: at least 1 second between passes")
    # As the hook does: the cached config (no jsonschema on an unchanged file), and a
    # broken file costs the rules' latest edit, never the watching.
    cfg, config_error = load_for_hook(app.config_path)
    app._cfg = cfg
    log = Log.from_settings(cfg.settings, echo=not args.quiet)
    if config_error:
        log.crit(f"config: {config_error}; watch runs on "
                 + ("the last good copy" if cfg.origin == "last-good" else "the defaults"))
    if args.loop is None:
        return one(app, log, args.quiet)
    log.notice(f"watch: a pass every {args.loop:g}s")
    while True:
        started = time.monotonic()
        try:
            one(app, log, args.quiet)
        except Exception as e:  # noqa: BLE001 - the next pass tries again
            log.error(f"watch: pass failed: {type(e).__name__}: {e}; no heartbeat sent")
            app.store.close()
        time.sleep(max(0.0, args.loop - (time.monotonic() - started)))


def one(app, log, quiet: bool) -> int:
    """One pass; prints what it found unless quiet."""
    from ..watch import run_pass
    from .flush import report

    done = run_pass(app.cfg, app.store, log, app.hastctl)
    if not quiet:
        for ev in done.events:
            print(f"{ev.severity:<8}  {ev.event}  {ev.summary}")
        print(f"watch: {done.active} condition(s) active"
              + ("" if done.up else "; hastd does not answer"))
        report(done.upkeep, app.store)
        for what, outcome in (("metrics", done.metrics), ("heartbeat", done.heartbeat)):
            if outcome is not None and outcome != "ok":
                print(f"{what}: {outcome}")
    return sysexits.EX_TEMPFAIL if done.upkeep.failed else sysexits.EX_OK
