"""Split-brain recovery: the article's hastrecover.sh, with the guards automation needs.

On the node whose divergent writes are to be thrown away (never the primary):

    hastctl role init RES; hastctl create RES; hastctl role ROLE RES

`hasthook recover` (the admin) and the `recover` action (a split-brain rule)
both call Recoverer.run, so that sequence exists once. Around it:

- a per-resource flock in the state dir: split-brain hooks started together
  run it once, the others see `busy` and leave at once;
- the role is read right before the first hastctl call (after `delay`), so a
  node that turned primary meanwhile is left alone;
- for the action, `cooldown` and `max_attempts` within `window`, kept in the
  `recoveries` table so they hold across hook processes. hastd repeats
  split-brain every 10 s: one detected before the last recovery settled is
  `handled`, not a loop; one after it, within the limits, is a loop and raises
  one critical alert per episode;
- `pre` steps (e.g. a zfs snapshot) run before anything changes; any failure aborts;
- a failing step stops the sequence and puts the resource back to its role;
- the role changes the sequence will cause are written down (`expect`) before
  the first hastctl call; the role hooks hastd fires for them claim them and
  are recorded with cause `recover` (see mark_cause);
- SIGALRM (the hook's time box) is held off from the first change until the
  outcome is recorded, so a resource is never left in init by a timeout.

Every outcome worth telling (recovered, dry run, failed, loop) becomes a
synthetic `recover` event with cause `recover`, handed to `publish`, which
records it and routes it like any event (hasthook/actions/recover.py);
syslog always gets a line of its own.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence

from .. import proc, trust
from ..event import Event
from ..hast import Hastctl
from ..log import FACILITIES
from ..record import Record, fresh
from ..units import format_duration, iso, plural

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

    from ..config.settings import Settings

# hastd's RETRY_SLEEP: split-brain detected within one retry of a recovery's
# end may predate it (the hook process started late), so it is not a loop.
SETTLE = 10.0
# How long after a recovery ends the role hooks it caused may still arrive.
CLAIM_GRACE = 60.0
PRE_TIMEOUT = 60.0
MAX_LOCK_NAME = 200  # of NAME_MAX's 255, room for "recover." and ".lock"

DEFAULTS: dict[str, Any] = {"delay": 2.0, "cooldown": 600.0, "max_attempts": 3, "window": 3600.0}
# Rows in these states were real attempts: they count for cooldown and max_attempts.
# (Rows are read for one dry-run mode at a time, so a rehearsal never blocks the real thing.)
ATTEMPTS = ("running", "recovered", "failed", "pre-failed", "interrupted", "dry-run",
            "stopped")
# Outcomes that are not a failure of the recovery machinery.
OK_STATES = ("recovered", "dry-run", "primary", "busy", "handled")
# "stopped": the role changed under the recovery (promoted meanwhile): it did not go on.
ALERT_LOOP = "recovery loop"


class Step(Record):
    """One program run: which step, its argv, exit status (None: did not run or timed out)."""

    name: str
    argv: list[str]
    rc: int | None = None
    stderr: str = ""

    @classmethod
    def of(cls, name: str, r: proc.Result) -> Step:
        """A step from what running it gave: the reason is its last line, or why it
        could not run or finish."""
        return cls(name, r.argv, r.rc, "" if r.ok else (
            r.last_line() if r.rc is not None else r.why()))

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def line(self) -> str:
        status = "not run" if self.rc is None and not self.stderr else (
            f"exit {self.rc}" if self.rc is not None else "could not run")
        err = f": {self.stderr}" if self.stderr and not self.ok else ""
        return f"{' '.join(self.argv)} -> {status}{err}"


class Outcome(Record):
    """What one recovery call did; `alert` names the critical alert it raised, if any."""

    resource: str
    host: str
    state: str
    detail: str = ""
    role_before: str | None = None
    role_after: str | None = None
    steps: list[Step] = fresh(list)
    dry_run: bool = False
    recovery_id: int | None = None
    event_id: int | None = None      # the split-brain event it answered
    alert: str | None = None
    report_id: int | None = None     # the `recover` event recording this outcome

    @property
    def ok(self) -> bool:
        return self.state in OK_STATES

    def to_dict(self) -> dict[str, Any]:
        d = self.as_dict()
        d["ok"] = self.ok
        return d


class Limits(Record, frozen=True):
    """The automatic recovery's guards (the command has none: the admin decided)."""

    cooldown: float = DEFAULTS["cooldown"]
    max_attempts: int = DEFAULTS["max_attempts"]
    window: float = DEFAULTS["window"]


class Decision(Record):
    state: str  # run | handled | cooldown | max-attempts
    detail: str = ""
    alert: bool = False


def decide(rows: list[dict[str, Any]], event_time: float, now: float, limits: Limits) -> Decision:
    """May an automatic recovery run now? Pure.

    `rows` are the resource's recovery rows (same dry-run mode), newest first.
    """
    attempts = [r for r in rows if r["state"] in ATTEMPTS]
    last = attempts[0] if attempts else None
    ended: float = (last["finished"] or last["started"]) if last else 0.0
    if last is not None and event_time < ended + SETTLE:
        return Decision("handled", f"split-brain detected before recovery #{last['id']} "
                                   f"({last['state']}) settled; nothing to do")
    # One alert per episode: a `blocked` row after the last attempt means it was raised.
    alerted = {r["reason"] for r in rows if r["state"] == "blocked"
               and (last is None or r["started"] >= last["started"])}
    recent = [a for a in attempts if a["started"] > now - limits.window]
    if len(recent) >= limits.max_attempts:
        until = (recent[limits.max_attempts - 1]["started"] + limits.window
                 if limits.max_attempts > 0 else None)
        return Decision(
            "max-attempts",
            f"{plural(len(recent), 'recovery', 'recoveries')} within "
            f"{format_duration(limits.window)} "
            f"(max_attempts {limits.max_attempts}); automatic recovery stopped"
            + (f" for {format_duration(until - now)}" if until else ""),
            alert="max-attempts" not in alerted)
    if last is not None and now < ended + limits.cooldown:
        return Decision(
            "cooldown",
            f"split-brain again {format_duration(now - ended)} after recovery #{last['id']} "
            f"({last['state']}); no recovery within cooldown "
            f"{format_duration(limits.cooldown)}, next possible in "
            f"{format_duration(ended + limits.cooldown - now)}",
            # A failed attempt already alerted; a successful one that did not hold is the loop.
            # (A dry run fixed nothing, so split-brain going on after it is no loop.)
            alert=last["state"] == "recovered" and "cooldown" not in alerted)
    return Decision("run")


def read_role(ctl: Hastctl, resource: str) -> tuple[str | None, str]:
    """The resource's role from `hastctl list`, or None and why it is unknown."""
    listed, r = ctl.list(resource)
    res = listed.get(resource)
    if res is not None and res.error is not None:
        return None, f"hastctl: error {res.error} for {resource}"
    if res is None or not res.role:
        return None, r.why() if not r.ok else (r.last_line() or "no output")
    return res.role, ""


def expected_changes(role: str, target: str) -> list[list[str]]:
    """The role hooks the sequence makes hastd fire (none for an unchanged role)."""
    out = []
    if role != "init":
        out.append([role, "init"])
    if target != "init":
        out.append(["init", target])
    return out


def resource_lock(state_dir: str, resource: str) -> proc.FileLock:
    """The resource's lock (not taken yet): held by a recovery, `hasthook role` and
    `hasthook failover` while they change the resource. state_dir/recover.RES.lock, any
    byte of the name made safe for a file name, and a long name (hastd takes any) made
    short."""
    safe = "".join(c if c.isalnum() or c in "._-" else f"%{ord(c):02x}" for c in resource)
    if len(safe) > MAX_LOCK_NAME:
        import hashlib

        safe = "sha256-" + hashlib.sha256(resource.encode("utf-8", "surrogateescape")
                                          ).hexdigest()
    trust.state_dir(state_dir)
    return proc.FileLock(os.path.join(state_dir, f"recover.{safe}.lock"))


class _HoldAlarm:
    """Block SIGALRM (the hook's time box) while HAST is changed; it fires after."""

    def __enter__(self) -> None:
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def run_pre(argv: Sequence[str], timeout: float = PRE_TIMEOUT) -> Step:
    """Run one pre-step argv (no shell); never raises."""
    return Step.of("pre", proc.run(list(argv), timeout))


class Recoverer:
    """Runs recoveries on this node; shared by `hasthook recover` and the `recover` action.

    `publish(event) -> id` records the synthetic `recover` event of each
    outcome worth telling and routes it (default: record only); `out` gets
    one line per step for a human at a terminal. `refuse_pre` is why pre-steps
    must not run (a config others can write): the recovery then aborts.
    """

    def __init__(self, hastctl: Hastctl, log: Any, settings: Settings, host: str,
                 store: Any = None, publish: Callable[[Event], int | None] | None = None,
                 out: Callable[[str], None] | None = None, refuse_pre: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time):
        self.ctl = hastctl
        self.log = log
        self.settings = settings
        self.host = host
        self.store = store
        self.publish = publish
        self.refuse_pre = refuse_pre
        self.out = out or (lambda _line: None)
        self.sleep = sleep
        self.clock = clock
        sl = settings.recover.syslog
        self.restore_role = settings.recover.restore_role
        self._syslog = (FACILITIES[sl.facility], sl.level, sl.tag)

    # -- the one sequence ------------------------------------------------

    def run(self, resource: str, *, delay: float = DEFAULTS["delay"],
            restore_role: str | None = None, dry_run: bool = False,
            pre: Sequence[Sequence[str]] = (), limits: Limits | None = None,
            event_time: float | None = None, event_id: int | None = None,
            origin: str = "command") -> Outcome:
        """Recover one resource; `limits` (the action) adds cooldown and max_attempts."""
        o = Outcome(resource, self.host, "busy", dry_run=dry_run, event_id=event_id)
        lock = resource_lock(self.settings.state_dir, resource)
        try:
            if not lock.acquire(wait=False):
                o.detail = f"a recovery of {resource} is already running (pid {lock.holder()})"
                self.log.info(f"HAST [{resource}] {o.detail}; leaving it to that one")
                return o
            lock.mark_owner()
            self._reap(resource)
            if limits is not None and self.store is not None:
                now = self.clock()
                rows = self.store.recoveries(
                    resource, since=now - max(limits.window, limits.cooldown) - SETTLE,
                    dry_run=dry_run)
                d = decide(rows, now if event_time is None else event_time, now, limits)
                if d.state != "run":
                    o.state, o.detail = d.state, d.detail
                    return self._blocked(o, d, origin)
            if delay > 0:
                self.log.info(f"HAST [{resource}] recovery: waiting {delay:g}s before "
                              f"reading the role")
                self.sleep(delay)
            role, why = read_role(self.ctl, resource)
            o.role_before = o.role_after = role
            if role is None:
                o.state, o.detail = "no-role", f"cannot read the role of {resource}: {why}"
                o.alert = f"recovery failed: {why}"
                self.log.error(f"HAST [{resource}] recover: {o.detail}; nothing done")
                return self._report(o, origin)
            if role == "primary":
                o.state, o.detail = "primary", "role is primary; nothing to recover"
                self.log.notice(f"HAST [{resource}] role primary: not recovering the primary")
                return o
            target = ((restore_role or self.restore_role or "init") if role == "init"
                      else role)
            return self._reset(o, role, target, pre, origin)
        finally:
            lock.close()

    def _reset(self, o: Outcome, role: str, target: str, pre: Sequence[Sequence[str]],
               origin: str) -> Outcome:
        res = o.resource
        fac, level, tag = self._syslog
        self.log(level, f"HAST [{res}] recover role {role}" + (" (dry run)" if o.dry_run else ""),
                 facility=fac, tag=tag)
        plan = [Step("pre", [str(a) for a in argv]) for argv in pre] + [
            Step("init", [self.ctl.path, "role", "init", res]),
            Step("create", [self.ctl.path, "create", res]),
            Step("role", [self.ctl.path, "role", target, res]),
        ]
        if o.dry_run:
            o.state, o.steps = "dry-run", plan
            o.detail = "dry run, nothing changed; would run: " + "; ".join(
                " ".join(s.argv) for s in plan)
            for s in plan:
                self.out(f"would run: {' '.join(s.argv)}")
            if self.store is not None:
                o.recovery_id = self.store.recovery_add(
                    res, self.host, origin, "dry-run", self.clock(), dry_run=True,
                    event_id=o.event_id, role_before=role, steps=[s.as_dict() for s in plan],
                    detail=o.detail, finished=self.clock(), pid=os.getpid())
            return self._report(o, origin)
        with _HoldAlarm():
            if self.store is not None:
                o.recovery_id = self.store.recovery_add(
                    res, self.host, origin, "running", self.clock(), event_id=o.event_id,
                    role_before=role, expect=expected_changes(role, target), pid=os.getpid())
            o.state = "running"
            try:
                self._sequence(o, role, target, plan)
            finally:
                if o.state == "running":  # an exception escaped: never leave the row `running`
                    o.state, o.detail = "interrupted", "recovery interrupted by an error"
                if self.store is not None and o.recovery_id is not None:
                    self.store.recovery_update(
                        o.recovery_id, state=o.state, finished=self.clock(),
                        role_after=o.role_after, steps=[s.as_dict() for s in o.steps],
                        detail=o.detail)
            return self._report(o, origin)

    def _sequence(self, o: Outcome, role: str, target: str, plan: list[Step]) -> None:
        """The steps, each mutating one only after the role is read again and found as
        the sequence left it: a resource promoted meanwhile (CARP, an admin) is never
        reset, and never demoted by a restore."""
        res = o.resource
        expect = role  # the role the sequence has left the resource in, so far
        for step in plan:
            if step.name != "pre":
                now, why = read_role(self.ctl, res)
                if now != expect:
                    self._stopped(o, role, expect, now, why, step)
                    return
            if step.name == "pre":
                done = (Step("pre", step.argv, None, f"refused: {self.refuse_pre}")
                        if self.refuse_pre else run_pre(step.argv))
            else:
                r = (self.ctl.create(res) if step.name == "create"
                     else self.ctl.role(step.argv[-2], res))
                done = Step.of(step.name, r)
            o.steps.append(done)
            self.out(done.line())
            self._progress(o)
            if done.ok:
                if step.name == "init":
                    expect = "init"
                elif step.name == "role":
                    expect = target
                continue
            if done.name == "pre":
                o.state = "pre-failed"
                o.detail = (f"pre-step failed: {done.line()}; recovery aborted, "
                            f"nothing changed")
                o.alert = f"pre-step failed: {done.stderr or f'exit {done.rc}'}"
                self.log.crit(f"HAST [{res}] {o.detail}")
                return
            o.state = "failed"
            o.alert = f"recovery failed: {done.stderr or f'exit status {done.rc}'}"
            o.detail = f"{done.line()}; sequence stopped"
            self._restore(o, role, expect)
            self.log.crit(f"HAST [{res}] recovery FAILED: {o.detail}")
            return
        o.state = "recovered"
        o.role_after, _ = read_role(self.ctl, res)
        o.role_after = o.role_after or target
        o.detail = (f"role {role} -> init -> {target}: local divergent writes discarded, "
                    f"a full resync from the primary follows"
                    if target != "init" else
                    f"role {role} -> init: local divergent writes discarded; the resource "
                    f"stays in init and will not sync until set to secondary")
        self.log.notice(f"HAST [{res}] recovered: {o.detail}")

    def _stopped(self, o: Outcome, role: str, expect: str, now: str | None, why: str,
                 step: Step) -> None:
        """The role is not what the sequence left: someone else changed the resource."""
        res = o.resource
        found = f"role {now}" if now else f"the role unknown ({why})"
        o.steps.append(Step("check", [self.ctl.path, "list", res], None,
                            f"{found}, expected {expect}: {' '.join(step.argv[1:])} not run"))
        self.out(o.steps[-1].line())
        o.state, o.role_after = "stopped", now
        changed = [s for s in o.steps if s.name in ("init", "create", "role") and s.ok]
        o.detail = (f"found {found} before `{' '.join(step.argv[1:])}`, expected {expect}: "
                    "the resource was changed by someone else, so the recovery stopped "
                    + ("after " + ", ".join(' '.join(s.argv[1:]) for s in changed)
                       if changed else "before changing anything")
                    + "; nothing restored")
        o.alert = f"recovery stopped: {found} before {step.name}"
        if role != expect and now != "primary":
            o.detail += f" (it was {role} before the recovery)"
        self.log.crit(f"HAST [{res}] recovery STOPPED: {o.detail}")

    def _restore(self, o: Outcome, role: str, left: str) -> None:
        """After a failed step, put the resource back to its role, but only from the role
        the sequence left it in, read again now: a primary is never demoted."""
        res = o.resource
        now, why = read_role(self.ctl, res)
        if now is not None and now == left and left != role:
            back = self.ctl.role(role, res)
            restore = Step.of("restore", back)
            o.steps.append(restore)
            self.out(restore.line())
            now = role if back.ok else now
            o.detail += (f"; put back to role {role}" if back.ok else
                         f"; could NOT put it back to role {role}: {restore.stderr}")
        elif now is not None and now != left:
            o.detail += f"; found role {now}, not {left}: left as it is"
        o.role_after = now
        if now is None:
            o.detail += f"; role now unknown ({why})"

    def _progress(self, o: Outcome) -> None:
        """The steps so far, kept in the recovery's row: an interrupted one says where."""
        if self.store is not None and o.recovery_id is not None:
            try:
                self.store.recovery_update(o.recovery_id, steps=[s.as_dict() for s in o.steps])
            except Exception as e:  # noqa: BLE001 - the recovery goes on; syslog has it
                self.log.error(f"HAST [{o.resource}] cannot record step progress: {e}")

    # -- guards ------------------------------------------------------------

    def reap(self) -> int:
        """Tell of recoveries a dead process left `running` (killed between `role init`
        and `create`, the resource stays in init and no split-brain fires again to
        notice): once each, critical. The next hook, `hasthook flush` and `status` ask."""
        if self.store is None:
            return 0
        n = 0
        for resource in sorted({r["resource"] for r in self.store.recoveries_running()}):
            lock = resource_lock(self.settings.state_dir, resource)
            try:
                if lock.acquire(wait=False):  # nobody holds it: its recovery's process died
                    n += self._reap(resource)
            finally:
                lock.close()
        return n

    def _reap(self, resource: str) -> int:
        """A `running` row we did not write belongs to a process that died mid-recovery."""
        if self.store is None:
            return 0
        rows = self.store.recovery_reap(resource, self.clock())
        for row in rows:
            done = [Step(**s) for s in row["steps"] if s.get("rc") == 0 and
                    s.get("name") in ("init", "create", "role")]
            after = (f"after {' '.join(done[-1].argv[1:])}" if done
                     else "before it changed anything")
            role, why = read_role(self.ctl, resource)
            o = Outcome(resource, self.host, "interrupted", recovery_id=row["id"],
                        role_before=row["role_before"], role_after=role,
                        steps=[Step(**s) for s in row["steps"]])
            where = f"role {role}" if role else f"a role unknown now ({why})"
            o.detail = (f"recovery of {resource} (#{row['id']}, pid {row['pid']}, started "
                        f"{iso(row['started'])}) was interrupted {after}; the resource is in "
                        f"{where}: finish it with `hasthook recover {resource}` or restore "
                        f"the role (it was {row['role_before']})")
            o.alert = f"recovery interrupted {after}"
            self.log.crit(f"HAST [{resource}] {o.detail}")
            self._report(o, row["origin"])
        return len(rows)

    def _blocked(self, o: Outcome, d: Decision, origin: str) -> Outcome:
        if not d.alert:
            self.log.info(f"HAST [{o.resource}] no recovery: {d.detail}")
            return o
        o.alert = ALERT_LOOP
        self.log.crit(f"HAST [{o.resource}] {ALERT_LOOP}: {d.detail}")
        if self.store is not None:
            o.recovery_id = self.store.recovery_add(
                o.resource, self.host, origin, "blocked", self.clock(), reason=d.state,
                dry_run=o.dry_run, event_id=o.event_id, detail=d.detail, finished=self.clock(),
                pid=os.getpid())
        return self._report(o, origin)

    # -- telling -----------------------------------------------------------

    def _report(self, o: Outcome, origin: str) -> Outcome:
        """Publish the outcome as a synthetic `recover` event; never raises."""
        what = f"{o.alert}: {o.detail}" if o.alert else (
            f"split-brain recovery (dry run): {o.detail}" if o.dry_run
            else f"split-brain recovered: {o.detail}")
        if o.dry_run and o.alert:
            what = f"(dry run) {what}"
        # A rehearsal's alerts are warnings: nothing was at stake.
        severity = ("critical" if o.alert and not o.dry_run else
                    "warning" if o.alert or not o.dry_run else "info")
        ev = Event("recover", o.resource, self.host, self.clock(), severity=severity,
                   role=o.role_after, cause="recover",
                   extra={"what": what, "origin": origin, **o.to_dict()})
        ev.extra.pop("host", None)
        ev.extra.pop("resource", None)
        publish = self.publish or (self.store.record if self.store is not None else None)
        if publish is not None:
            try:
                o.report_id = publish(ev)
            except Exception as e:  # noqa: BLE001 - syslog already has the outcome
                self.log.error(f"HAST [{o.resource}] cannot record or route the recovery "
                               f"outcome: {type(e).__name__}: {e}")
        return o


def report_text(ev: Event) -> str:
    """The per-recovery report body: resource, host, roles, each step and its exit status."""
    x = ev.extra
    lines = [ev.summary, "",
             f"resource: {ev.resource}", f"host: {ev.host}",
             f"outcome: {x.get('state')}",
             f"role before: {x.get('role_before') or 'unknown'}",
             f"role after: {x.get('role_after') or 'unknown'}"]
    steps: list[Any] = list(x.get("steps") or [])
    if steps:
        lines.append("steps:")
        lines += [f"  {Step(**s).line() if isinstance(s, dict) else s}" for s in steps]
    if x.get("state") == "recovered":
        lines += ["", "Local divergent writes on this node were discarded; a full resync "
                      "from the primary follows. The next syncdone resolves the split-brain."]
    return "\n".join(lines)


def mark_cause(ev: Event, store: Any) -> None:
    """Tag a role event our own recovery caused with cause `recover`; never raises.

    Called by hasthook-exec before the event is recorded: it claims one of
    the role changes a recovery of that resource said it would cause.
    """
    if ev.event != "role" or ev.cause is not None or not ev.old_role or not ev.new_role:
        return
    try:
        rec = store.recovery_claim(ev.resource, ev.old_role, ev.new_role, ev.time, CLAIM_GRACE)
    except Exception:  # noqa: BLE001 - an untagged event is still recorded and notified
        return
    if rec is not None:
        ev.cause = "recover"
        ev.extra["recovery_id"] = rec
