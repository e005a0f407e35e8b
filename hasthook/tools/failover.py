"""Failover: what must happen around a role change, in order, idempotently.

The article's steps, as a plan of argv lists (nothing reaches a shell):

promote: role primary (the careful `hasthook role` logic), then per resource
  ufs  `fsck -y -t ufs /dev/hast/PROV`, `mount -o noatime /dev/hast/PROV MOUNTPOINT`
  zfs  `zpool import -f -d /dev/hast POOL` (-f: after a crash the pool was never exported)
then `service NAME onestart` for every service (not enabled in rc.conf).

demote: `service NAME onestop` (reverse order), `umount MOUNTPOINT` or
`zpool export POOL` (or shutdown hangs), then role secondary.

Every filesystem step of every resource comes before the first service, so a
service that uses two resources starts once both are mounted; a pool or a
service named by several resources appears once. Before each step the runner
asks whether it is already done (`mount -p`, `zpool list -H -o name POOL`,
`service NAME onestatus`, the role in `hastctl list`), so a second run, or a
run after a half-finished one, is harmless. The first step that fails stops
the chain: a critical event naming it is recorded (rules route it like any
other event) and syslog gets a crit line.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from .. import proc, sysexits, trust
from ..config.settings import Settings
from ..errors import HasthookError
from ..event import Event
from ..proc import Result
from ..record import Record, fresh
from ..units import plural

FILESYSTEMS = ("ufs", "zfs", "none")
ACTIONS = ("promote", "demote")
QUERY_TIMEOUT = 30.0
LOCK_NAME = "failover.lock"
_SERVICE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")   # as in schema.json


class FailoverError(HasthookError):
    """Failover cannot start (bad resource settings, unknown resource)."""

    status = sysexits.EX_CONFIG


class ResourceSpec(Record):
    """What sits on one HAST resource, from the config's `resources:` mapping."""

    name: str
    filesystem: str = "none"
    mountpoint: str | None = None
    pool: str | None = None
    services: list[str] = fresh(list)
    fsck: bool = True


def resource_spec(name: str, data: dict[str, Any] | None) -> ResourceSpec:
    """One resource's settings, checked enough that a plan cannot be half-formed."""
    d = dict(data or {})
    fs = d.get("filesystem", "none")
    if fs not in FILESYSTEMS:
        raise FailoverError(f"resources.{name}.filesystem: {fs!r} is not one of "
                            f"{', '.join(FILESYSTEMS)}")
    spec = ResourceSpec(name, fs, d.get("mountpoint"), d.get("pool"),
                        [str(s) for s in d.get("services") or []], bool(d.get("fsck", True)))
    if fs == "ufs" and not spec.mountpoint:
        raise FailoverError(f"resources.{name}: filesystem ufs needs a mountpoint")
    if spec.mountpoint is not None and not str(spec.mountpoint).startswith("/"):
        raise FailoverError(f"resources.{name}.mountpoint: {spec.mountpoint!r} is not absolute")
    if fs == "zfs" and not spec.pool:
        raise FailoverError(f"resources.{name}: filesystem zfs needs a pool")
    for s in spec.services:
        if not _SERVICE.match(s):
            raise FailoverError(f"resources.{name}.services: {s!r} is not an rc.d script name")
    return spec


class Step(Record):
    """One step of the chain: what it does, to what, and the argv that does it."""

    action: str            # promote | demote
    kind: str              # role fsck mount import start stop umount export (plan: cannot start)
    resource: str          # the HAST resource it is for (the first, when shared)
    target: str            # what it acts on: resources, device, mountpoint, pool, service
    argv: list[str]
    device: str | None = None
    mountpoint: str | None = None
    resources: list[str] = fresh(list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.target}"

    def describe(self) -> str:
        return f"[{self.resource}] {self.label}: {' '.join(self.argv)}"


def plan(action: str, specs: list[ResourceSpec], provnames: dict[str, str],
         settings: Settings) -> list[Step]:
    """The ordered steps for promote or demote of these resources. Pure."""
    if action not in ACTIONS:
        raise ValueError(f"unknown failover action {action!r}")
    cmd = settings.commands.as_dict()
    dev_dir = settings.dev_dir
    names = [s.name for s in specs]
    role = "primary" if action == "promote" else "secondary"
    role_step = Step(action, "role", names[0] if names else "-", f"{role} {' '.join(names)}",
                     ["hasthook", "role", role, *names], resources=names)
    fs_steps: list[Step] = []
    pools: set[str] = set()
    for s in specs:
        dev = os.path.join(dev_dir, provnames.get(s.name) or s.name)
        mp = s.mountpoint or ""
        if s.filesystem == "ufs":
            if action == "promote":
                if s.fsck:
                    fs_steps.append(Step(action, "fsck", s.name, dev,
                                         [cmd["fsck"], "-y", "-t", "ufs", dev], dev, mp))
                fs_steps.append(Step(action, "mount", s.name, mp,
                                     [cmd["mount"], "-o", "noatime", dev, mp], dev, mp))
            else:
                fs_steps.append(Step(action, "umount", s.name, mp,
                                     [cmd["umount"], mp], dev, mp))
        elif s.filesystem == "zfs" and s.pool is not None and s.pool not in pools:
            pools.add(s.pool)
            if action == "promote":
                fs_steps.append(Step(action, "import", s.name, s.pool,
                                     [cmd["zpool"], "import", "-f", "-d", dev_dir, s.pool]))
            else:
                fs_steps.append(Step(action, "export", s.name, s.pool,
                                     [cmd["zpool"], "export", s.pool]))
    svc_steps: list[Step] = []
    seen: set[str] = set()
    verb = "onestart" if action == "promote" else "onestop"
    for s in specs:
        for svc in s.services:
            if svc not in seen:
                seen.add(svc)
                svc_steps.append(Step(action, "start" if action == "promote" else "stop",
                                      s.name, svc, [cmd["service"], svc, verb]))
    if action == "promote":
        return [role_step, *fs_steps, *svc_steps]
    # Leave in the reverse order: services, then filesystems, then the role.
    return [*reversed(svc_steps), *reversed(fs_steps), role_step]


def parse_mounts(text: str) -> set[tuple[str, str]]:
    """(device, mountpoint) pairs from `mount -p` (fstab lines) or plain `mount` output."""
    out = set()
    for line in text.splitlines():
        if " on " in line and not line.startswith("#"):
            dev, _, rest = line.partition(" on ")
            # FreeBSD: `dev on mp (ufs, local)`; Linux: `dev on mp type ext4 (rw)`.
            mp = rest.split(" (")[0].split(" type ")[0]
            out.add((dev.strip(), os.path.normpath(mp.strip())))
            continue
        f = line.split()
        if len(f) >= 2 and not f[0].startswith("#"):
            out.add((_unoctal(f[0]), os.path.normpath(_unoctal(f[1]))))
    return out


def _unoctal(s: str) -> str:
    """fstab escapes a space as \\040."""
    if "\\" not in s:
        return s
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


class StepFailed(HasthookError):
    """A step (or the query before it) failed; the message says what the admin sees."""

    status = sysexits.EX_UNAVAILABLE


class Failover:
    """Runs a plan: check, act, log, record; the first failure stops the chain."""

    def __init__(self, settings: Settings, resources: dict[str, Any] | None, hastctl,
                 log, record: Callable[[Event], int | None] | None = None,
                 host: str = "localhost", wait: float = 60,
                 out: Callable[[str], None] = lambda _line: None,
                 err: Callable[[str], None] = lambda _line: None):
        """`record(event)` keeps each step in the history and routes it (the command
        gives it the pipeline's publish, with alert_body for a stopped failover). `out`
        gets a line per step, `err` the role change's complaints (the command prints
        them on stdout and stderr)."""
        self.settings = settings
        self.resources = resources or {}
        self.hastctl = hastctl
        self.log = log
        self.record = record
        self.host = host
        self.wait = wait
        self.out = out
        self.err = err
        self.cmd = settings.commands
        self.step_timeout = settings.failover_step_timeout

    # -- planning -------------------------------------------------------

    def plan(self, action: str, given: list[str]) -> list[Step]:
        """Resolve names and provider names as `hasthook role` does, then plan."""
        from . import role

        try:
            names = role.resolve(given, self.hastctl)
            specs = [resource_spec(n, self.resources.get(n)) for n in names]
            prov = role.provider_names(names, self.hastctl)
        except role.RoleError as e:
            raise FailoverError(str(e), e.status) from None
        return plan(action, specs, prov, self.settings)

    def roles(self) -> dict[str, str | None]:
        """Each resource's current role (`hastctl list`, no names on its argv)."""
        listed, _ = self.hastctl.list()
        return {n: r.role for n, r in listed.items()}

    # -- running --------------------------------------------------------

    def run(self, action: str, given: list[str], dry_run: bool = False) -> int:
        """Plan and run; returns a sysexits code. A dry run prints the plan and touches nothing."""
        try:
            steps = self.plan(action, given)
        except FailoverError as e:
            # Under devd nobody reads stderr: a failover that cannot start must alert.
            if not dry_run:
                step = Step(action, "plan", given[0] if given else "all",
                            " ".join(given) or "all resources",
                            ["hasthook", "failover", action, *given])
                self._report(step, "failed", f"failover {action} cannot start: {e}",
                             detail=str(e), code=e.status)
            raise
        if dry_run:
            self.out(f"{action} plan ({plural(len(steps), 'step')}, dry run: nothing is "
                     "changed):")
            for i, s in enumerate(steps, 1):
                self.out(f"{i:3d}. {s.describe()}")
            return sysexits.EX_OK
        with self._lock():
            return self._run(action, steps)

    def _run(self, action: str, steps: list[Step]) -> int:
        started = time.monotonic()
        names = next((s.resources for s in steps if s.kind == "role"), [])
        self.log.notice(f"failover {action} of {' '.join(names)} on {self.host}: "
                        f"{plural(len(steps), 'step')}")
        for i, step in enumerate(steps, 1):
            head = f"{i}/{len(steps)} [{step.resource}] {step.label}"
            try:
                skip = self._done(step)
                if skip:
                    self._report(step, "skipped", f"{head}: skipped, {skip}", detail=skip)
                    continue
                self._act(step)
            except StepFailed as e:
                msg = (f"failover {action} STOPPED at step {i}/{len(steps)} "
                       f"[{step.resource}] {step.label}: {e}")
                self._report(step, "failed", msg, detail=str(e), code=e.status)
                remaining = [s.label for s in steps[i:]]
                if remaining:
                    self.out(f"not run: {', '.join(remaining)}")
                return e.status
            self._report(step, "ok", f"{head}: done ({' '.join(step.argv)})")
        self.log.notice(f"failover {action} of {' '.join(names)} complete in "
                        f"{time.monotonic() - started:.1f}s")
        self.out(f"{action} complete")
        return sysexits.EX_OK

    def _done(self, step: Step) -> str | None:
        """Why the step needs no doing (already in that state), or None."""
        if step.kind == "role":
            want = "primary" if step.action == "promote" else "secondary"
            roles = self.roles()
            todo = [n for n in step.resources if roles.get(n) != want]
            if not todo:
                return f"already {want}"
            step.resources = todo
            return None
        if step.kind in ("fsck", "mount", "umount"):
            mp = os.path.normpath(step.mountpoint or "")
            mounted = (step.device, mp) in self._mounts()
            if step.kind == "umount":
                return None if mounted else f"{step.device} is not mounted on {mp}"
            return f"{step.device} already mounted on {mp}" if mounted else None
        if step.kind in ("import", "export"):
            imported = self._imported(step.target)
            if step.kind == "import":
                return f"pool {step.target} already imported" if imported else None
            return None if imported else f"pool {step.target} is not imported"
        if step.kind in ("start", "stop"):
            r = self._query([self.cmd.service, step.target, "onestatus"])
            running = r.rc == 0
            if step.kind == "start":
                return f"{step.target} already running" if running else None
            return None if running else f"{step.target} is not running"
        return None

    def _mounts(self) -> set[tuple[str, str]]:
        r = self._query([self.cmd.mount, "-p"])
        if not r.ok:
            raise StepFailed(f"cannot tell what is mounted: {r.why()}")
        return parse_mounts(r.stdout)

    def _imported(self, pool: str) -> bool:
        r = self._query([self.cmd.zpool, "list", "-H", "-o", "name", pool])
        if r.rc is None:
            raise StepFailed(f"cannot tell whether pool {pool} is imported: {r.why()}")
        return r.rc == 0 and pool in r.stdout.split()

    def _query(self, argv: list[str]) -> Result:
        return proc.run(argv, QUERY_TIMEOUT)

    def _act(self, step: Step) -> None:
        if step.kind == "role":
            self._role(step)
            return
        r = proc.run(step.argv, self.step_timeout)
        if not r.ok:
            raise StepFailed(f"{' '.join(step.argv)}: {r.why()}")

    def _role(self, step: Step) -> None:
        """The `hasthook role` code itself: waits for the old worker, then for the device."""
        from .role import set_role

        want = "primary" if step.action == "promote" else "secondary"
        code = set_role(want, step.resources, self.hastctl, self.settings, self.log,
                        self.wait, False, say=self.err)
        if code != 0:
            raise StepFailed(f"hasthook role {want} {' '.join(step.resources)} exited {code}",
                             code)

    # -- reporting ------------------------------------------------------

    def _report(self, step: Step, result: str, message: str, detail: str | None = None,
                code: int | None = None) -> None:
        failed = result == "failed"
        if failed:
            self.log.crit(message)
        else:
            self.log.notice(f"failover {step.action}: {message}")
        self.out(message)
        ev = Event("failover", step.resource, self.host, time.time(),
                   severity="critical" if failed else "info", cause="failover",
                   extra={"action": step.action, "step": step.kind, "target": step.target,
                          "argv": step.argv, "result": result,
                          "what": f"failover {step.action} {step.label}: {result}"
                                  + (f" ({detail})" if failed and detail else ""),
                          **({"detail": detail} if detail else {}),
                          **({"exit": code} if code is not None else {})})
        if self.record is not None:
            try:
                ev.extra["id"] = self.record(ev)
            except Exception as e:  # noqa: BLE001 - the failover goes on; syslog has it
                self.log.error(f"[{step.resource}] cannot record failover step "
                               f"{step.label}: {type(e).__name__}: {e}")

    def _lock(self) -> proc.FileLock:
        """One failover at a time on a node: a CARP flap queues demote behind promote."""
        trust.state_dir(self.settings.state_dir)
        return proc.FileLock(os.path.join(self.settings.state_dir, LOCK_NAME))


def alert_body(ev: Event) -> str:
    """What the admin needs to act on a stopped failover: where, which step, why."""
    x = ev.extra
    return "\n".join([
        ev.summary, "",
        f"host: {ev.host}", f"resource: {ev.resource}", f"action: {x.get('action')}",
        f"step: {x.get('step')} {x.get('target')}",
        f"command: {' '.join(map(str, x.get('argv') or []))}",
        f"error: {x.get('detail')}", "",
        "Nothing after this step ran. Fix the cause, then run "
        f"`hasthook failover {x.get('action')}` again: steps already done are skipped."])
