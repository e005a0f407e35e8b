"""`hasthook-exec`: the program hastd runs on every event (hast.conf `exec`).

hastd forks it with the event's words as argv, stdio on /dev/null, and does
not wait. So it never prints, never raises, and says everything to syslog.
The event is committed to the history before any action runs; a hook that
cannot reach the database writes the event to a spool file instead, and the
next run that can reach it takes the spool in.

Exit status: 0 handled (also for an event word from a newer hastd),
64 (EX_USAGE) for a call hastd would not make, 70 (EX_SOFTWARE) for a bug.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from . import sysexits
from .event import Event, UsageError, classify

SPOOL_NAME = "spool.jsonl"
_log = None  # the run's Log, so last words go where the settings say


class TimeBox(Exception):
    """The hook ran past settings.hook_timeout; what is left stays queued."""


def _on_alarm(signum, frame):  # noqa: ARG001
    raise TimeBox()


def enrich(ev: Event, settings: dict) -> str | None:
    """Add the local resource's state from `hastctl list`; returns why it is unknown."""
    from .hast import Hastctl
    from .units import parse_duration

    ctl = Hastctl(settings["hastctl"], parse_duration(settings["hastctl_timeout"]))
    resources, result = ctl.list(ev.resource)
    res = resources.get(ev.resource)
    if res is None or res.error is not None:
        why = result.stderr.strip() or f"exit status {result.rc}"
        if res is not None and res.error is not None:
            why = f"hastctl: error {res.error} for {ev.resource}"
        return why.splitlines()[-1] if why else "no output"
    ev.role, ev.status, ev.dirty = res.role, res.status, res.dirty
    ev.provname, ev.remoteaddr, ev.replication = res.provname, res.remoteaddr, res.replication
    ev.errors = res.errors or None
    return None


def spool(ev: Event, state_dir: str) -> bool:
    """Append the event to the spool file when the database cannot take it."""
    line = json.dumps(ev.to_dict(), sort_keys=True) + "\n"
    for d in (state_dir, "/var/tmp"):
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(d, SPOOL_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                         0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            return True
        except OSError:
            continue
    return False


def take_spool(store, state_dir: str) -> int:
    """Move spooled events into the database; returns how many."""
    path = os.path.join(state_dir, SPOOL_NAME)
    if not os.path.exists(path):
        return 0
    work = path + f".{os.getpid()}"
    try:
        os.rename(path, work)
    except OSError:
        return 0
    fields = set(Event.__dataclass_fields__)
    n = 0
    with open(work, encoding="utf-8") as f, store.transaction() as db:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            store.record(Event(**{k: v for k, v in d.items() if k in fields}), db)
            n += 1
    os.unlink(work)
    return n


def run(argv: list[str], config_path: str | None = None) -> int:
    """Handle one event; returns the exit status. Raises nothing but TimeBox."""
    from . import config as cfgmod
    from .log import Log

    try:
        cfg = cfgmod.load(config_path)
        config_error = None
    except cfgmod.ConfigError as e:
        cfg, config_error = cfgmod.from_data({}), str(e)
    settings = cfg.settings
    global _log
    log = _log = Log.from_settings(settings)
    if config_error:
        log.error(f"config: {config_error}; using the built-in defaults")
    try:
        ev = classify(argv, cfg.hostname)
    except UsageError as e:
        log.error(f"malformed call {json.dumps(argv)}: {e}")
        return sysexits.EX_USAGE
    if not ev.known:
        log.warning(f"[{ev.resource}] unknown event {ev.event!r} from hastd, argv "
                    f"{json.dumps(argv)}; recorded as-is")

    from .units import parse_duration

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, parse_duration(settings["hook_timeout"]))

    why = enrich(ev, settings)
    if why:
        log.warning(f"[{ev.resource}] local state unknown: {why}")
    log("crit" if ev.severity == "critical" else
        "warning" if ev.severity == "warning" else "notice", ev.summary)

    from .store import Store

    store = Store(settings["state_dir"])
    try:
        take_spool(store, settings["state_dir"])
        store.record(ev)
    except Exception as e:  # the database is gone, locked past the timeout, or corrupt
        saved = spool(ev, settings["state_dir"])
        log.crit(f"[{ev.resource}] cannot record {ev.event} in {store.path}: {e}; "
                 + ("spooled for later" if saved else "EVENT NOT SAVED"))
        return sysexits.EX_OK if saved else sysexits.EX_CANTCREAT
    store.close()
    return sysexits.EX_OK


def main(argv: list[str] | None = None) -> int:
    """Console entry point: exit status only, never output or a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = run(args)
    except TimeBox:
        code = sysexits.EX_OK
        _last_words("hook time box reached; pending work stays queued", "warning")
    except BaseException as e:  # noqa: BLE001 - the one place that must catch all
        code = sysexits.EX_SOFTWARE
        _last_words(f"internal error on {json.dumps(args)}: {type(e).__name__}: {e}", "crit")
    signal.setitimer(signal.ITIMER_REAL, 0)
    if argv is None:
        sys.exit(code)
    return code


def _last_words(msg: str, level: str) -> None:
    try:
        from .log import Log

        (_log or Log())(level, msg)
    except BaseException:  # noqa: BLE001
        pass
