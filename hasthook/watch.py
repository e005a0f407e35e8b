"""`hasthook watch`: what hastd never announces, found by looking once a pass.

hastd fires hooks for seven events. A dying disk (local error counters
rising), a sync that makes no progress, a primary degraded for hours, hastd
itself gone, a resource left in init, a role that is not the one intended
and a hast.conf that does not run hasthook-exec fire nothing. A pass reads
`hastctl list` once (and `dump` for resources in init) and hast.conf, compares
with what the last passes saw (kept in the store) and raises or resolves
**conditions**.

A condition is an event like hastd's (cause `watch`, the condition's name as
the event word, hasthook.event.CONDITIONS) and takes THE event path
(Pipeline): history, rules, silences, throttle and repeat, outbox, Alertmanager.
Its end is the event `NAME-resolved` (event.RESOLVES), so send_resolved,
Alertmanager's resolution and `status`'s unresolved alerts need nothing new.
Hysteresis: a condition fires after settings.watch.fall consecutive bad passes
and resolves after `rise` good ones; one event per onset and one per end,
however many passes in between.

step() is the pure core: (what this pass saw, what the last passes left) ->
(what to keep, the events). look() reads hastctl, hast.conf, the file system
and the store; run_pass() puts them together, then does what `hasthook flush`
does (Pipeline.upkeep), writes the metrics textfile and pings the heartbeat.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import hastconf, redact
from .event import CONDITIONS, RESOLVED, Event
from .record import Record, fresh
from .units import format_duration, humanize, iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Config
    from .config.settings import Watch
    from .hast import Hastctl, Resource
    from .log import Levels
    from .store import Store

HOOK = "hasthook-exec"
ALL = "all"  # hastctl's word for every resource: hastd-down when no resource is known
ERROR_OPS = ("read", "write", "delete")
FLUSH = "flush"  # counted only off plain files: metaflush on a file fails with ENOTTY


class Observation(Record):
    """What one pass read; the edges fill it, step() only compares."""

    host: str
    now: float
    up: bool                                   # hastctl list answered
    why_down: str | None = None                # its one line when it did not
    resources: dict[str, Resource] = fresh(dict)
    file_backed: list[str] = fresh(list)       # localpath is a regular file
    syncing: list[str] = fresh(list)           # the history says a sync is running
    execs: dict[str, str | None] | None = None  # hast.conf: resource -> exec; None: unread
    expect: dict[str, str] = fresh(dict)       # resources.NAME.expect_role
    init_notes: dict[str, str] = fresh(dict)   # why a resource may be in init
    known: list[str] = fresh(list)             # hast.conf's resources (hastd-down)


class Verdict(Record, frozen=True):
    """One condition on one resource this pass: bad (with why) or good."""

    bad: bool
    detail: str = ""


class Step(Record):
    """What a pass keeps for the next, and the events it raises."""

    seen: dict[str, dict[str, Any]]
    conditions: dict[tuple[str, str], dict[str, Any]]
    events: list[Event] = fresh(list)


# -- the pure core ---------------------------------------------------------------------


def judge(obs: Observation, prev: dict[str, dict[str, Any]], settings: Watch
          ) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], Verdict]]:
    """Each condition's verdict on each resource this pass, and what to remember.

    A condition not judged (hastd down: nothing but hastd-down can be told; hast.conf
    unread: exec-not-wired) keeps its count as it was.
    """
    verdicts: dict[tuple[str, str], Verdict] = {}
    if not obs.up:
        why = obs.why_down or "hastctl list failed"
        for res in obs.known or sorted(prev) or [ALL]:
            verdicts[(res, "hastd-down")] = Verdict(True, f"hastd does not answer: {why}")
        return prev, verdicts
    seen: dict[str, dict[str, Any]] = {}
    for name, r in obs.resources.items():
        if r.error is not None:
            continue
        before = prev.get(name, {})
        mine: dict[str, Any] = {"role": r.role, "status": r.status, "dirty": r.dirty,
                                "errors": dict(r.errors)}
        seen[name] = mine
        verdicts[(name, "hastd-down")] = Verdict(False)
        verdicts[(name, "io-errors")] = _io_errors(name, r, before.get("errors"),
                                                   name in obs.file_backed)
        verdicts[(name, "degraded")] = _degraded(r, before, mine, obs.now, settings)
        verdicts[(name, "sync-stalled")] = _stalled(r, before, mine, obs.now,
                                                    name in obs.syncing)
        expect = obs.expect.get(name)
        verdicts[(name, "stuck-init")] = _init(r, before, mine, obs.now, settings,
                                               expect, obs.init_notes.get(name))
        verdicts[(name, "role-unexpected")] = Verdict(
            bool(expect and r.role != expect),
            f"role {r.role}, but resources.{name}.expect_role is {expect}")
        if obs.execs is not None and name in obs.execs:
            verdicts[(name, "exec-not-wired")] = _wired(name, obs.execs[name])
    return seen, verdicts


def _io_errors(name: str, r: Resource, before: dict[str, int] | None,
               file_backed: bool) -> Verdict:
    ops = ERROR_OPS if file_backed else (*ERROR_OPS, FLUSH)
    if before is None:
        return Verdict(False)  # no baseline yet
    rose = {op: r.errors.get(op, 0) - before.get(op, 0) for op in ops}
    rose = {op: n for op, n in rose.items() if n > 0}
    if not rose:
        return Verdict(False)  # also a restarted worker, whose counters start at zero
    what = ", ".join(f"{op} +{n}" for op, n in rose.items())
    now = ", ".join(f"{op} {r.errors.get(op, 0)}" for op in ops)
    return Verdict(True, f"local I/O errors on {r.provname or name} ({r.localpath or '?'}) "
                         f"rose since the last pass: {what} (now {now})")


def _degraded(r: Resource, before: dict[str, Any], mine: dict[str, Any], now: float,
              settings: Watch) -> Verdict:
    if r.role != "primary" or r.status == "complete":
        return Verdict(False)
    since = before.get("degraded_since")
    since, dirty0 = (since, before.get("degraded_dirty")) if since is not None else (now, r.dirty)
    mine.update(degraded_since=since, degraded_dirty=dirty0)
    lasted = now - since
    if lasted < settings.degraded_after:
        return Verdict(False)
    dirty = r.dirty or 0
    growth = ""
    if lasted > 0 and dirty0 is not None:
        per_min = (dirty - dirty0) / lasted * 60
        growth = (f", growing by {humanize(int(per_min))}/min" if per_min > 0
                  else ", not growing")
    return Verdict(True, f"primary without its secondary for {format_duration(lasted)}: "
                         f"{humanize(dirty)} dirty, not replicated{growth}")


def _stalled(r: Resource, before: dict[str, Any], mine: dict[str, Any], now: float,
             syncing: bool) -> Verdict:
    """Connected, dirty above zero and not going down. A busy healthy primary keeps up
    to keepdirty extents dirty, so it counts only while a sync runs (syncstart not yet
    ended in the history) or the backlog is beyond that."""
    dirty = r.dirty or 0
    window = (r.keepdirty or 0) * (r.extentsize or 0)
    if r.status != "complete" or dirty <= 0 or not (syncing or dirty > window):
        return Verdict(False)
    last = before.get("dirty")
    if last is None or dirty < last:
        return Verdict(False)
    since = before.get("stalled_since")
    mine["stalled_since"] = since if since is not None else now
    return Verdict(True, f"synchronization makes no progress: {humanize(dirty)} dirty, "
                         f"not going down for {format_duration(now - mine['stalled_since'])}")


def _init(r: Resource, before: dict[str, Any], mine: dict[str, Any], now: float,
          settings: Watch, expect: str | None, note: str | None) -> Verdict:
    if r.role != "init" or expect == "init":
        return Verdict(False)
    since = before.get("init_since")
    since = since if since is not None and before.get("role") == "init" else now
    mine["init_since"] = since
    if now - since < settings.init_after:
        return Verdict(False)
    return Verdict(True, f"in role init for {format_duration(now - since)} while hastd "
                         f"runs: it neither serves nor replicates"
                         + (f"; {note}" if note else ""))


def _wired(name: str, exec_path: str | None) -> Verdict:
    if not exec_path:
        return Verdict(True, f"hast.conf sets no exec for {name} (nor a global one): hastd "
                             "runs no hook, so no rule ever acts on its events")
    if os.path.basename(exec_path) != HOOK:
        return Verdict(True, f"hast.conf's exec for {name} is {exec_path}, not {HOOK}: "
                             "no rule acts on its events")
    return Verdict(False)


def step(obs: Observation, seen: dict[str, dict[str, Any]],
         conditions: dict[tuple[str, str], dict[str, Any]], settings: Watch) -> Step:
    """One pass: verdicts through the hysteresis; the onset and end events. Pure."""
    new_seen, verdicts = judge(obs, seen, settings)
    out = Step(new_seen, {})
    for key in sorted(set(conditions) | set(verdicts)):
        res, cond = key
        c = dict(conditions.get(key) or {"active": False, "bad": 0, "good": 0, "since": None})
        v = verdicts.get(key)
        if v is None and obs.up and res not in obs.resources:
            v = Verdict(False)  # the resource is gone from hastd: what was wrong went too
        if v is None:
            out.conditions[key] = c
            continue
        if v.bad:
            c.update(bad=c["bad"] + 1, good=0, detail=v.detail, severity=CONDITIONS[cond])
            c["since"] = c["since"] if c["since"] is not None else obs.now
            if not c["active"] and c["bad"] >= settings.fall:
                c["active"] = True
                out.events.append(_event(obs, res, cond, CONDITIONS[cond], v.detail))
        else:
            c.update(good=c["good"] + 1, bad=0)
            if c["active"] and c["good"] >= settings.rise:
                lasted = format_duration(max(0.0, obs.now - (c["since"] or obs.now)))
                out.events.append(_event(
                    obs, res, cond + RESOLVED, "info",
                    f"{cond} is over: {c['good']} good passes in a row, after {lasted}"))
                c["active"] = False
            if not c["active"]:
                continue  # nothing to remember
        out.conditions[key] = c
    return out


def _event(obs: Observation, res: str, word: str, severity: str, what: str) -> Event:
    """The condition as an event, with the resource's state as a hook would record it."""
    ev = Event(word, res, obs.host, obs.now, severity=severity, cause="watch",
               extra={"what": what})
    r = obs.resources.get(res)
    if r is not None and r.error is None:
        ev.role, ev.status, ev.dirty = r.role, r.status, r.dirty
        ev.provname, ev.remoteaddr, ev.replication = r.provname, r.remoteaddr, r.replication
        ev.errors = r.errors or None
    return ev


# -- the edges -------------------------------------------------------------------------


def look(cfg: Config, store: Store, hastctl: Hastctl, log: Levels,
         now: float | None = None) -> Observation:
    """Read what a pass compares: `hastctl list` once, `dump` of the resources in init,
    hast.conf, which providers are plain files, and the history's running syncs."""
    from .event import enders

    now = time.time() if now is None else now
    listed, r = hastctl.list()
    obs = Observation(cfg.hostname, now, r.ok, resources=listed)
    conf = _conf(cfg.settings.hast_conf, log)
    if conf is not None:
        obs.execs = {n: res.exec for n, res in conf.resources.items()}
        obs.known = sorted(conf.resources)
    obs.expect = {n: spec["expect_role"] for n, spec in cfg.resources.items()
                  if isinstance(spec, dict) and spec.get("expect_role")}
    if not r.ok:
        obs.why_down = r.last_line() if r.rc is not None and r.last_line() else r.why()
        return obs
    for name, res in listed.items():
        if res.localpath and os.path.isfile(res.localpath):
            obs.file_backed.append(name)
        if res.role == "primary" and res.status == "complete" and res.dirty:
            last = store.last_event(name, ("syncstart", *enders("syncstart"), "disconnect"),
                                    host=cfg.hostname)
            if last is not None and last["event"] == "syncstart":
                obs.syncing.append(name)
    in_init = [n for n, res in listed.items() if res.role == "init" and res.error is None]
    if in_init:
        obs.init_notes = _init_notes(in_init, store, hastctl)
    return obs


def _conf(path: str, log: Levels) -> hastconf.HastConf | None:
    try:
        return hastconf.load(path)
    except OSError as e:
        log.warning(f"watch: cannot read {path}: {e.strerror or e}; exec-not-wired is not "
                    "checked until it can be")
    except hastconf.HastConfError as e:
        log.warning(f"watch: {e}; exec-not-wired is not checked until it parses")
    return None


def _init_notes(names: list[str], store: Store, hastctl: Hastctl) -> dict[str, str]:
    """What may have left each resource in init: an interrupted recovery, its last role."""
    notes: dict[str, list[str]] = {n: [] for n in names}
    for name in names:
        rows = store.recoveries(name)
        if rows and rows[0]["state"] in ("interrupted", "running"):
            notes[name].append(f"recovery #{rows[0]['id']} (started {iso(rows[0]['started'])}) "
                               "was interrupted; set the role by hand, e.g. `hasthook role "
                               f"secondary {name}`")
    meta, _ = hastctl.dump(*names)
    for name in names:
        prev = meta[name].prevrole if name in meta else None
        if prev in ("primary", "secondary"):
            notes[name].append(f"it was {prev} before")
    return {n: "; ".join(v) for n, v in notes.items() if v}


class Pass(Record):
    """What one pass did: the events it raised, what the flush part did, the heartbeat."""

    events: list[Event] = fresh(list)
    active: int = 0
    up: bool = True
    upkeep: Any = None
    heartbeat: str | None = None   # None: not configured; "ok" or why it failed
    metrics: str | None = None     # None: not configured; "ok" or why it failed


def run_pass(cfg: Config, store: Store, log: Levels, hastctl: Hastctl | None = None,
             now: float | None = None) -> Pass:
    """One pass: look, compare, hand the conditions to the pipeline (in one transaction
    with the state that found them), then what `hasthook flush` does, the metrics
    textfile and the heartbeat. The heartbeat goes only when all of that completed."""
    from .hast import Hastctl
    from .pipeline import Pipeline

    ctl = hastctl or Hastctl.from_settings(cfg.settings)
    settings = cfg.settings.watch
    pipeline = Pipeline(cfg, store, log)
    obs = look(cfg, store, ctl, log, now)
    seen, conds = store.watch_state(obs.host)
    out = step(obs, seen, conds, settings)
    for ev in out.events:
        level = ("crit" if ev.severity == "critical" else
                 "warning" if ev.severity == "warning" else "notice")
        log(level, f"watch: {ev.summary}")
    handled = pipeline.record_all(out.events, then=lambda db: store.save_watch_state(
        db, obs.host, obs.now, out.seen, out.conditions))
    for h in handled:
        pipeline.run(h)
    result = Pass(out.events, sum(1 for c in out.conditions.values() if c["active"]), obs.up)
    result.upkeep = pipeline.upkeep()
    if cfg.settings.metrics_textfile:
        result.metrics = write_metrics(cfg, store, ctl, log, obs)
    if settings.heartbeat:
        result.heartbeat = heartbeat(settings.heartbeat, settings.heartbeat_timeout, log)
    return result


def write_metrics(cfg: Config, store: Store, hastctl: Hastctl, log: Levels,
                  obs: Observation) -> str:
    """settings.metrics_textfile from this pass's `hastctl list` (not a second one)."""
    from . import trust
    from .tools import metrics

    path = cfg.settings.metrics_textfile
    assert path
    conf = metrics.read_hast_conf(cfg.settings, log)
    listed = (obs.resources, obs.up)
    try:
        metrics.write_textfile(path, metrics.render(metrics.gather(
            hastctl, store, cfg, conf, listed=listed)))
    except OSError as e:
        why = f"cannot write {path}: {e.strerror or e}"
        log.error(f"watch: {why}")
        return why
    except trust.Untrusted as e:  # the pass, and its heartbeat, go on
        log.error(f"watch: {e}")
        return str(e)
    return "ok"


def shown(url: str) -> str:
    """The heartbeat URL as logs show it: scheme and host only. A ping URL's path is
    usually its secret (a check's UUID), its user:password too."""
    from urllib.parse import urlsplit

    p = urlsplit(redact.url(url))
    host = p.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{p.scheme}://{host}" + (f":{p.port}" if p.port else "") + "/…"


def heartbeat(url: str, timeout: float, log: Levels) -> str:
    """GET the heartbeat URL once, within `timeout`; "ok" or why not (logged, secrets
    removed). Never retried: the next pass pings again, and a monitor that misses
    pings is what tells the admin."""
    import threading
    import urllib.error
    import urllib.request

    from .delivery.http import failure, request

    answer: list[str] = []

    def ping() -> None:
        req = request(url, headers={"User-Agent": "hasthook-watch"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read(1024)
            answer.append("ok")
        except (urllib.error.URLError, OSError, ValueError) as e:
            answer.append(failure(e))

    # urlopen's timeout bounds each socket operation, not a name lookup or a server
    # that trickles bytes: the pass waits for the thread at most `timeout`.
    t = threading.Thread(target=ping, name="heartbeat", daemon=True)
    t.start()
    t.join(timeout)
    why = answer[0] if answer else f"no answer within {timeout:g}s"
    if why == "ok":
        return why
    why = redact.text(f"heartbeat to {shown(url)} failed: {why}", [(url, shown(url))])[:300]
    log.warning(f"watch: {why}")
    return why
