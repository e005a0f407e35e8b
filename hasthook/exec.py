"""`hasthook-exec`: the program hastd runs on every event (hast.conf `exec`).

hastd forks it with the event's words as argv, stdio on /dev/null, and does
not wait. So it never prints (but for --help and --version, which hastd never
passes), never raises, and says everything to syslog. This module is only
that entry point: the words, the time box, the local state from hastctl and
last words; the event's path is hasthook/pipeline.py.

Exit status: 0 handled (also for an event word from a newer hastd),
64 (EX_USAGE) for a call hastd would not make, 70 (EX_SOFTWARE) for a bug,
73 (EX_CANTCREAT) when the event could be neither recorded nor spooled.
"""

from __future__ import annotations

import json
import signal
import sys
import time

from . import sysexits
from .errors import TimeBox, UsageError
from .event import classify

STARTED = time.time()  # when hastd started this hook: the event's time and its turn
TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from .log import Log
    from .turns import Turn

USAGE = """\
usage: hasthook-exec EVENT RESOURCE [OLDROLE NEWROLE]

The program hastd(8) runs on every HAST event (hast.conf: exec). It records
the event and acts on it as the rules file says; see hasthook-exec(8).
Events: role RESOURCE OLDROLE NEWROLE, connect, disconnect, syncstart,
syncdone, syncintr, split-brain RESOURCE.
"""
_log: Log | None = None  # the run's Log, so last words go where the settings say


def _on_alarm(signum: int, frame: object) -> None:  # noqa: ARG001
    raise TimeBox()


def argv_text(argv: list[str]) -> list[str]:
    """The words as text SQLite and JSON can hold: bytes that are not UTF-8 (which
    Python keeps as lone surrogates) become `\\xNN`, so one odd name cannot make
    every later write to the database fail."""
    out = []
    for word in argv:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            try:
                word = word.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:  # a surrogate no argv decoding makes
                word = word.encode("utf-8", "backslashreplace").decode("utf-8")
        out.append(word)
    return out


def run(argv: list[str], config_path: str | None = None, fired: float | None = None
        ) -> int:
    """Handle one event; returns the exit status. Raises nothing but TimeBox."""
    from . import turns
    from .config import state_dir_hint
    from .config.settings import Settings

    fired = time.time() if fired is None else fired
    # Reading the config counts inside the time box: until it says otherwise, the
    # default box; a hook waiting for another to validate an edit waits a third of it.
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, Settings.hook_timeout)
    argv = argv_text(argv)
    # The turn first, before anything that may wait (the config lock, hastctl), so a
    # later hook of this resource finds it. The resource is argv[1] in every call hastd
    # makes; a malformed call is refused below and its turn released.
    turn = turns.take(state_dir_hint(config_path), argv[1], fired) if len(argv) > 1 else None
    try:
        return _handle(argv, config_path, fired, started, turn)
    finally:
        if turn is not None:
            turn.release()


def _handle(argv: list[str], config_path: str | None, fired: float, started: float,
            turn: Turn | None) -> int:
    from .config import load_for_hook
    from .config.settings import HASTCTL_SHARE, Settings
    from .log import Log

    cfg, config_error = load_for_hook(config_path, wait=Settings.hook_timeout / HASTCTL_SHARE)
    settings = cfg.settings
    box = max(0.001, settings.hook_timeout - (time.monotonic() - started))
    signal.setitimer(signal.ITIMER_REAL, box)
    global _log
    log = _log = Log.from_settings(settings)
    if cfg.origin == "file":
        log.info(f"config {cfg.path} changed: validated, and cached for the next events")
    for refused in cfg.untrusted:
        log.crit(f"config {cfg.path}: programs refused: {refused}")
    if config_error:
        log.crit(f"config: {config_error}; " + (
            "running on the last good copy" if cfg.origin == "last-good"
            else "no good copy yet: running on the built-in defaults"))
    try:
        ev = classify(argv, cfg.hostname, now=fired)
    except UsageError as e:
        log.error(f"malformed call {json.dumps(argv)}: {e}")
        return sysexits.EX_USAGE
    if not ev.known:
        log.warning(f"[{ev.resource}] unknown event {ev.event!r} from hastd, argv "
                    f"{json.dumps(argv)}; recorded as-is")

    from .hast import Hastctl, enrich

    ctl = Hastctl.from_settings(settings)
    # The time box must leave room to record the event, however long hastctl_timeout is.
    ctl.timeout = min(ctl.timeout, box / HASTCTL_SHARE)
    why = enrich(ev, ctl)
    if why:
        log.warning(f"[{ev.resource}] local state unknown: {why}")
    log("crit" if ev.severity == "critical" else
        "warning" if ev.severity == "warning" else "notice", ev.summary)

    from .pipeline import hook

    return hook(ev, cfg, log, started + settings.hook_timeout, config_error, turn=turn)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: exit status only, never output or a traceback."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["--help"], ["-h"], ["--version"]):
        return _self_description(args[0], argv is None)
    try:
        code = run(args, fired=STARTED if argv is None else None)
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


def _self_description(flag: str, console: bool) -> int:
    """--help and --version, for a person at a terminal: hastd never passes them."""
    from . import __version__

    try:
        print(f"hasthook-exec {__version__}" if flag == "--version" else USAGE, end="\n"
              if flag == "--version" else "")
    except OSError:
        pass
    if console:
        sys.exit(sysexits.EX_OK)
    return sysexits.EX_OK


def _last_words(msg: str, level: str) -> None:
    try:
        from .log import Log

        (_log or Log())(level, msg)
    except BaseException:  # noqa: BLE001
        pass
