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

import errno
import fcntl
import glob
import json
import os
import signal
import stat
import sys
import time

from . import sysexits
from .event import Event, UsageError, classify

SPOOL_NAME = "spool.jsonl"
REJECTED_NAME = "spool.rejected.jsonl"
FALLBACK_DIR = "/var/tmp"
SPOOL_MARGIN = 5.0  # seconds of the time box kept for spooling when the database is locked
_log = None  # the run's Log, so last words go where the settings say


class TimeBox(BaseException):
    """The hook ran past settings.hook_timeout; what is left stays queued.

    A BaseException, so an action's `except Exception` cannot swallow it and run on.
    """


def _on_alarm(signum, frame):  # noqa: ARG001
    raise TimeBox()


def enrich(ev: Event, settings: dict, limit: float) -> str | None:
    """Add the local resource's state from `hastctl list`, waiting at most `limit`
    seconds however long hastctl_timeout is: the time box must leave room to record
    the event. Returns why the state is unknown."""
    from .hast import Hastctl

    ctl = Hastctl.from_settings(settings)
    ctl.timeout = min(ctl.timeout, limit)
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


def spool_paths(state_dir: str) -> list[str]:
    """Where an event the database cannot take is written: the state dir, else a
    private directory in /var/tmp named after the state dir (another file system):
    /var/db/hasthook gives /var/tmp/hasthook.%2Fvar%2Fdb%2Fhasthook, one name per
    state dir, hashed only when too long for a file name (hashlib loads OpenSSL:
    not on every hook's path)."""
    full = os.path.abspath(state_dir)
    tag = full.replace("%", "%25").replace("/", "%2F")
    if len(tag) > 200:
        import hashlib

        tag = hashlib.sha256(full.encode("utf-8", "surrogateescape")).hexdigest()
    return [os.path.join(state_dir, SPOOL_NAME),
            os.path.join(FALLBACK_DIR, f"hasthook.{tag}", SPOOL_NAME)]


def _private_dir(d: str) -> bool:
    """A directory only we can enter (not a link someone else planted in /var/tmp)."""
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def spool(ev: Event, state_dir: str) -> str | None:
    """Append the event to a spool file when the database cannot take it; the file used."""
    data = (json.dumps(ev.to_dict(), sort_keys=True) + "\n").encode()
    for i, path in enumerate(spool_paths(state_dir)):
        d = os.path.dirname(path)
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            if (i == 0 or _private_dir(d)) and _append(path, data):
                return path
        except OSError:
            continue
    return None


def _append(path: str, data: bytes) -> bool:
    """Append one whole line, under an flock, to the file that is still at `path`:
    take_spool renames the file away, and a line written after that would be lost."""
    for _ in range(10):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                if not os.path.samestat(st, os.stat(path)):
                    continue  # taken in since we opened it: open the new one
            except FileNotFoundError:
                continue
            try:
                if os.write(fd, data) == len(data):
                    return True
            except OSError:
                pass
            os.ftruncate(fd, st.st_size)  # no half line for the next one to join
            raise OSError(errno.ENOSPC, "short write")
        finally:
            os.close(fd)
    return False


def take_spool(store, cfg, log=None) -> int:
    """Move spooled events into the database; returns how many.

    Each spool file is renamed to a work file, locked, recorded in one
    transaction and removed. A work file whose run was killed is taken by the
    next (its lock died with it); an event already recorded is not recorded
    again; a line that cannot be recorded goes to spool.rejected.jsonl, logged.
    Rules never act on a late event; one alert for all the files taken says so
    to the admin (_tell_late).
    """
    state_dir = cfg.settings["state_dir"]
    taken: list[tuple[int, Event]] = []
    try:
        for i, path in enumerate(spool_paths(state_dir)):
            if i and not _private_dir(os.path.dirname(path)):
                continue
            if os.path.isfile(path):
                try:  # a name no earlier run left behind (pids come round again)
                    os.rename(path, f"{path}.{os.getpid()}.{time.time_ns()}")
                except OSError:
                    pass
            for work in sorted(glob.glob(glob.escape(path) + ".*")):
                taken += _take(store, state_dir, work, log)
            if i:
                try:
                    os.rmdir(os.path.dirname(path))  # leave no empty directory in /var/tmp
                except OSError:
                    pass
    except Exception:
        _tell_late(store, cfg, taken, log)  # the files taken before the failure
        raise
    _tell_late(store, cfg, taken, log)
    return len(taken)


def _tell_late(store, cfg, taken: list[tuple[int, Event]], log) -> None:
    """One hasthook alert naming the events that went in late.

    Their rules did not act (a late recovery or command could do harm; a late
    message could mislead), so the admin is told what happened meanwhile.
    """
    if not taken:
        return
    from . import actions
    from .event import SEVERITY_RANK
    from .store import iso

    event_id, worst = max(taken, key=lambda t: SEVERITY_RANK.get(t[1].severity, 0))
    lines = [f"  {iso(ev.time)}  {ev.event} {ev.resource} on {ev.host} ({ev.severity})"
             for _, ev in taken]
    try:
        with store.transaction() as db:
            ctx = actions.Context(worst, event_id, "(late-events)", cfg, store, log,
                                  actions.no_hastctl, time.time())
            actions.alert(ctx, db, f"hasthook on {worst.host}: {len(taken)} event(s) recorded "
                          "late, rules not applied",
                          "The database could not take these events when they happened "
                          "(locked, unwritable or damaged); they were spooled and are in the "
                          "history now:\n" + "\n".join(lines) + "\n"
                          "No rule acted on them: nothing was notified, recovered or run for "
                          "them. Check `hasthook status` and `hasthook history`.")
    except Exception as e:  # noqa: BLE001 - the events are in; only the alert is not
        if log:
            log.crit(f"{len(taken)} spooled events are in the history, but the alert "
                     f"saying so cannot be queued: {type(e).__name__}: {e}")


def _take(store, state_dir: str, work: str, log) -> list[tuple[int, Event]]:
    import sqlite3

    try:
        fd = os.open(work, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not os.path.samestat(os.fstat(fd), os.stat(work)):
                return []
        except OSError:  # another run holds it, or took it in already
            return []
        fields = set(Event._fields)
        rejected: list[bytes] = []
        taken: list[tuple[int, Event]] = []
        with store.transaction() as db:
            for line in f.read().splitlines():
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    ev = Event(**{k: v for k, v in d.items() if k in fields})
                    if not store.recorded(ev, db):
                        taken.append((store.record(ev, db), ev))
                except (ValueError, TypeError, AttributeError, sqlite3.IntegrityError,
                        sqlite3.InterfaceError, sqlite3.ProgrammingError):
                    rejected.append(line + b"\n")
        n = len(taken)
        if rejected:
            bad = os.path.join(state_dir, REJECTED_NAME)
            try:
                with open(bad, "ab") as out:
                    out.writelines(rejected)
            except OSError as e:
                if log:
                    log.crit(f"{len(rejected)} spooled lines in {work} cannot be recorded "
                             f"nor moved to {bad}: {e.strerror}; left in place")
                return taken
            if log:
                log.crit(f"{len(rejected)} spooled lines cannot be recorded; kept in {bad}")
        os.unlink(work)
    if n and log:
        log.notice(f"{n} spooled events taken into {store.path}")
    return taken


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


def run(argv: list[str], config_path: str | None = None) -> int:
    """Handle one event; returns the exit status. Raises nothing but TimeBox."""
    from .config import HASTCTL_SHARE, load_for_hook
    from .log import Log

    argv = argv_text(argv)
    cfg, config_error = load_for_hook(config_path)
    settings = cfg.settings
    global _log
    log = _log = Log.from_settings(settings)
    if config_error:
        log.crit(f"config: {config_error}; " + (
            "running on the last good copy" if cfg.origin == "last-good"
            else "no good copy yet: running on the built-in defaults"))
    try:
        ev = classify(argv, cfg.hostname)
    except UsageError as e:
        log.error(f"malformed call {json.dumps(argv)}: {e}")
        return sysexits.EX_USAGE
    if not ev.known:
        log.warning(f"[{ev.resource}] unknown event {ev.event!r} from hastd, argv "
                    f"{json.dumps(argv)}; recorded as-is")

    from .units import parse_duration

    box = parse_duration(settings["hook_timeout"])
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, box)

    why = enrich(ev, settings, limit=box / HASTCTL_SHARE)
    if why:
        log.warning(f"[{ev.resource}] local state unknown: {why}")
    log("crit" if ev.severity == "critical" else
        "warning" if ev.severity == "warning" else "notice", ev.summary)

    from .store import Store, damaged

    # A locked database is waited for as long as the time box allows, less the time to
    # spool: a spooled event is recorded later, but no rule ever acts on it.
    store = Store(settings["state_dir"],
                  busy_timeout=max(1.0, box - SPOOL_MARGIN))
    # What evaluate() uses, imported before the write lock is taken: importing inside
    # the transaction held the lock ten times longer (35 ms, not 3), and in a burst of
    # 200 hooks some waited past the busy timeout and were spooled, not acted on.
    from . import actions, rules, silences  # noqa: F401
    from .actions import notify  # noqa: F401

    notice = None
    for attempt in (1, 2):
        try:
            if ev.event == "role" and attempt == 1:  # caused by our own recovery? (cause recover)
                from .tools.recover import mark_cause

                mark_cause(ev, store)  # inside: the time box may strike while it waits
            try:
                take_spool(store, cfg, log)
            except Exception as e:  # noqa: BLE001 - the spool waits; this event must not
                log.error(f"cannot take the spool in yet: {type(e).__name__}: {e}")
            with store.transaction() as db:
                event_id = store.record(ev, db)
                jobs, matched, held = evaluate(ev, event_id, cfg, store, db, log, config_error,
                                               notice)
            break
        except (Exception, TimeBox) as e:  # the database is gone, locked, damaged, or slow
            if attempt == 1 and damaged(e):
                notice = _set_aside(store, e, log)
                continue  # a new database (this run's or another's), or spool below
            saved = spool(ev, settings["state_dir"])
            log.crit(f"[{ev.resource}] cannot record {ev.event} in {store.path}: "
                     f"{type(e).__name__}: {e}; "
                     + (f"spooled for later in {saved}" if saved else "EVENT NOT SAVED"))
            return sysexits.EX_OK if saved else sysexits.EX_CANTCREAT
    outcomes = [job.run() for job in jobs]
    if matched or held or outcomes:
        try:
            store.set_outcome(event_id, matched, {"actions": outcomes, "suppressed": held})
        except Exception as e:  # noqa: BLE001 - the event and the actions are done already
            log.error(f"[{ev.resource}] cannot record the outcome of event {event_id}: {e}")
    deliver(store, cfg, log)
    store.close()
    return sysexits.EX_OK


def deliver(store, cfg, log) -> None:
    """Send what is due, this run's messages and any left by other runs, within the
    time box; what cannot go now stays queued for the next run or `hasthook flush`."""
    try:
        if store.outbox_due() == (None, None, None):
            return  # nothing queued: most events; skip importing the deliverer (logging...)
        from .deliver import drain

        drain(store, cfg, log)
    except TimeBox:
        raise
    except Exception as e:  # noqa: BLE001 - the messages wait in the outbox
        log.error(f"delivery stopped: {type(e).__name__}: {e}; messages stay queued")


def _set_aside(store, error: Exception, log) -> str | None:
    """A damaged database would send every event to the spool and silence every rule:
    move it aside (kept for the admin) and start a new one. Returns the alert text."""
    try:
        aside = store.set_aside()
    except Exception as e:  # noqa: BLE001 - then the event is spooled
        log.error(f"cannot move the damaged database {store.path} aside: {e}")
        return None
    if aside is None:
        return None  # another hook has replaced it already
    text = (f"The database {store.path} was damaged ({error}). It was moved to {aside} and a "
            f"new one started, so events are recorded and rules act again. Its history and "
            f"any messages still queued in it stay there: `sqlite3 {aside} .recover` may "
            "save them.")
    log.crit(text)
    return text


CONFIG_ERROR_RULE = {"name": "(config-error)", "repeat_interval": "1h"}


def counts_toward_state(m, silence: dict | None) -> bool:
    """Does this event count toward the rule's throttle and repeat_interval? Not when a
    silence leaves the rule only actions with guards of their own (recover): the first
    event after the silence is then told at once."""
    from . import actions, silences

    if not m.stateful:
        return False
    acts = silences.unmuted(m.actions) if silence else m.actions
    return not (silence and all(getattr(actions.get(n), "OWN_GUARDS", False)
                                for n, _ in acts))


def evaluate(ev: Event, event_id: int, cfg, store, db, log, config_error: str | None = None,
             db_notice: str | None = None):
    """Inside the event's transaction: match the rules, apply throttle and
    repeat state, and let each action prepare. Returns (jobs to run after the
    commit, names of the rules that matched, what was suppressed and by which rule).

    A bug here costs the rules, never the event: it is logged and the event
    is committed without actions.
    """
    from . import actions, rules, silences
    from .hast import Hastctl

    after: list[actions.Job] = []

    def ctx(m: rules.Match | None = None, suppressed: int = 0) -> actions.Context:
        return actions.Context(
            ev, event_id, m.name if m else None, cfg, store, log,
            lambda: Hastctl.from_settings(cfg.settings), ev.time,
            rule_config=m.rule if m else {}, suppressed=suppressed, after=after)

    jobs: list[actions.Job] = []
    matched: list[str] = []
    held: list[dict] = []
    db.execute("SAVEPOINT rules")
    try:
        _config_alert(ev, cfg, store, db, ctx(), config_error)
        if db_notice:  # this run moved a damaged database aside: tell the admin
            actions.alert(ctx(), db, f"hasthook on {ev.host}: database damaged", db_notice)
        store.resolve(db, ev)
        from .actions.notify import prepare_resolved

        prepare_resolved(ctx(), db)  # "resolved" messages this event owes (send_resolved)
        # A silence mutes notify only; a silenced rule with nothing else to do leaves
        # its throttle and repeat state alone, so the first event after it is told.
        silence = silences.silencing(ev, store.active_silences(ev.time, db))
        if silence:
            held.append(silences.held(silence))
            log.info(f"[{ev.resource}] {ev.event} silenced by silence {silence['id']}: "
                     "recorded, not notified")
        for m in rules.match(ev, cfg.rules):
            matched.append(m.name)
            acts = silences.unmuted(m.actions) if silence else m.actions
            suppressed = 0
            if counts_toward_state(m, silence):
                key = rules.key_of(m.rule, ev)
                d = rules.decide(m.rule, store.rule_state(db, m.name, key), ev.time)
                store.save_rule_state(db, m.name, key, d.state, ev)
                if not d.fire:
                    held.append({"rule": m.name, "by": d.reason, "count": d.state.suppressed})
                    log.info(f"[{ev.resource}] {ev.event} suppressed by rule {m.name!r} "
                             f"({d.reason}; {d.state.suppressed} since it last acted)")
                    # The throttle holds back messages; an action with guards of its
                    # own (recover: cooldown, max_attempts) still gets every event.
                    jobs += [actions.prepare(name, params, ctx(m), db)
                             for name, params in m.actions
                             if getattr(actions.get(name), "OWN_GUARDS", False)]
                    continue
                suppressed = d.suppressed
            for name, params in acts:
                jobs.append(actions.prepare(name, params, ctx(m, suppressed), db))
    except Exception as e:  # noqa: BLE001
        db.execute("ROLLBACK TO rules")
        log.crit(f"[{ev.resource}] rules failed on {ev.event}: {type(e).__name__}: {e}; "
                 "event recorded, no action taken")
        jobs, after[:], held = [], [], []
    db.execute("RELEASE rules")
    return after + jobs, matched, held


def _config_alert(ev: Event, cfg, store, db, ctx, config_error: str | None) -> None:
    """A broken config is alerted through the config in use, at most hourly per error."""
    from . import actions, rules

    if not config_error:
        if cfg.origin == "file":  # just validated after a change: a new breakage alerts at once
            store.resolve_rule(db, CONFIG_ERROR_RULE["name"])
        return
    key = config_error.split(" (and ")[0]
    d = rules.decide(CONFIG_ERROR_RULE, store.rule_state(db, CONFIG_ERROR_RULE["name"], key),
                     ev.time)
    store.save_rule_state(db, CONFIG_ERROR_RULE["name"], key, d.state, ev)
    if d.fire:
        using = ("the last good copy" if cfg.origin == "last-good"
                 else "the built-in defaults (no good copy yet)")
        actions.alert(ctx, db, f"hasthook on {ev.host}: config error in {cfg.path}",
                      f"{config_error}\nhasthook-exec runs on {using}; every event is still "
                      f"recorded. Fix the file and run `hasthook check`.")


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
