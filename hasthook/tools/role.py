"""`hasthook role`: the article's hastrole.sh, with its bugs fixed.

hastrole.sh waits for the old secondary worker to exit before asking for
primary (hastd refuses, or worse, while `hastd: NAME (secondary)` still
holds the local component), then waits for /dev/hast/NAME. Fixed here:

- the primary change went to the undefined `$resources` (so: to nothing);
  here it goes to exactly the named resources;
- "hastd not running" went to the undefined `$logger` and exited 0; here it
  is a one-line error and EX_UNAVAILABLE, judged by the pid file, not by any
  process whose name contains "hastd";
- the device was assumed to be /dev/hast/NAME; it is /dev/hast/PROVNAME
  (hast.conf `name`), read from `hastctl list`;
- names went unquoted into a pgrep regex; here they are escaped and anchored,
  and nothing reaches a shell;
- each resource could take 60 s of waiting; here --wait bounds each phase
  as a whole, and nothing is changed unless every secondary worker is gone
  and every name is one hastd knows.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from .. import proc, sysexits
from ..config.settings import Settings
from ..errors import HasthookError
from ..hast import Hastctl, Result

ROLES = ("init", "secondary", "primary")
DEFAULT_WAIT = 60.0
POLL = 0.1
# Characters with a meaning in a POSIX extended regular expression (pgrep's).
_ERE_SPECIAL = set("\\.[]()*+?{}|^$")


class RoleError(HasthookError):
    """The role change cannot go ahead; carries the sysexits status to leave with."""


def ere_escape(text: str) -> str:
    """Quote text for a POSIX ERE; re.escape would also escape `-`, undefined in an ERE."""
    return "".join("\\" + c if c in _ERE_SPECIAL else c for c in text)


def secondary_pattern(name: str) -> str:
    """The pgrep -f regex for the worker hastd titles `hastd: NAME (secondary)`."""
    return rf"^hastd: {ere_escape(name)} \(secondary\)"


def hastd_pid(pidfile: str) -> tuple[int | None, str]:
    """hastd's pid when the pid file names a live process; else None and why not."""
    try:
        with open(pidfile, encoding="ascii", errors="replace") as f:
            text = f.read(64).strip()
    except FileNotFoundError:
        return None, f"no pid file {pidfile}"
    except OSError as e:
        return None, f"cannot read {pidfile}: {e.strerror}"
    try:
        pid = int(text)
    except ValueError:
        return None, f"{pidfile} holds no pid"
    if pid <= 0:
        return None, f"{pidfile} holds no pid"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None, f"pid {pid} from {pidfile} is not running"
    except PermissionError:
        pass  # alive, just not ours to signal
    return pid, ""


def secondary_running(name: str, pgrep: str) -> bool:
    """Whether a `hastd: NAME (secondary)` worker exists; pgrep trouble raises RoleError."""
    r = proc.run([pgrep, "-f", secondary_pattern(name)], 10)
    if r.rc is None:
        raise RoleError(f"cannot run {r.why()}", sysexits.EX_UNAVAILABLE)
    if r.rc in (0, 1):
        return r.rc == 0
    raise RoleError(f"{pgrep} failed for resource {name}: {r.why()}", sysexits.EX_SOFTWARE)


def wait_for(done: Callable[[], bool], timeout: float, poll: float = POLL) -> bool:
    """Poll until done() or timeout seconds pass; done() is always asked at least once."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(poll, left))


def _code(r: Result) -> int:
    """A sysexits code for a failed hastctl: its own when it gave one, else EX_SOFTWARE."""
    if r.rc is None:
        return sysexits.EX_UNAVAILABLE
    if sysexits.EX_USAGE <= r.rc <= sysexits.EX_CONFIG:
        return r.rc
    return sysexits.EX_SOFTWARE


def _fmt_wait(seconds: float) -> str:
    return f"{seconds:g}"


def resolve(resources: list[str], hastctl: Hastctl) -> list[str]:
    """The named resources (deduplicated; `all` or none: every resource in `hastctl dump`)."""
    names = list(dict.fromkeys(resources))
    if names and names != ["all"]:
        return names
    meta, r = hastctl.dump()
    if not r.ok:
        # Even a partial answer: acting on "all but the one it could not read" silently
        # is not what the admin asked for.
        raise RoleError(f"cannot list resources with hastctl dump ({r.why()}); "
                        "name the resources", _code(r))
    if not meta:
        raise RoleError("hastctl dump lists no resources", sysexits.EX_CONFIG)
    return list(meta)


def provider_names(names: list[str], hastctl: Hastctl) -> dict[str, str]:
    """PROVNAME for each name, from `hastctl list` of every resource (no names on its argv,
    so a name like `-c/tmp/x` is never read as an option); unknown names raise."""
    listed, r = hastctl.list()
    if not listed:
        raise RoleError(f"cannot read resources from hastd: {r.why()}", sysexits.EX_UNAVAILABLE)
    unknown = [n for n in names if n not in listed or listed[n].error is not None]
    if unknown:
        raise RoleError(f"hastd does not know resource {', '.join(unknown)}",
                        sysexits.EX_DATAERR)
    return {n: listed[n].provname or n for n in names}


def set_role(role: str, resources: list[str], hastctl: Hastctl, settings: Settings,
             log, wait: float = DEFAULT_WAIT, dry_run: bool = False,
             say: Callable[[str], None] = lambda _msg: None) -> int:
    """Change the role of resources (none: all) safely; returns a sysexits code.

    Messages for the admin go to `say` (the command prints them on stderr), every
    step to syslog. `hasthook failover` calls this with the same arguments.
    """
    try:
        if role not in ROLES:
            raise RoleError(f"role must be one of {', '.join(ROLES)}, not {role!r}",
                            sysexits.EX_USAGE)
        if wait < 0:
            raise RoleError("--wait must not be negative", sysexits.EX_USAGE)
        pid, why = hastd_pid(settings.hastd_pidfile)
        if pid is None:
            log.error(f"role {role}: hastd is not running ({why})")
            raise RoleError(f"hastd is not running ({why})", sysexits.EX_UNAVAILABLE)
        names = resolve(resources, hastctl)
        prov = provider_names(names, hastctl)
        with contextlib.ExitStack() as held:
            if not dry_run:
                for name in sorted(names):  # one order: two role changes never deadlock
                    held.enter_context(_locked(name, settings, wait))
                log.notice(f"role {role} requested for {' '.join(names)}")
            if role == "primary":
                return _primary(names, prov, hastctl, settings, log, wait, dry_run, say)
            return _change(role, names, hastctl, log, dry_run, say)[0]
    except RoleError as e:
        say(f"hasthook: {e}")
        return e.status


@contextlib.contextmanager
def _locked(name: str, settings: Settings, wait: float) -> Iterator[None]:
    """The resource's lock, shared with recovery and failover: a role change waits (at
    most `wait` seconds) for a recovery of the resource to finish, and a recovery never
    starts while the role changes."""
    from .recover import resource_lock

    lock = resource_lock(settings.state_dir, name)
    try:
        if not lock.acquire(wait=wait):
            raise RoleError(f"[{name}] a recovery is changing it (pid {lock.holder()}); no "
                            f"role was changed: try again when it is done",
                            sysexits.EX_TEMPFAIL)
        lock.mark_owner()
        yield
    finally:
        lock.close()


def _change(role: str, names: list[str], hastctl: Hastctl, log, dry_run: bool,
            say: Callable[[str], None]) -> tuple[int, list[str]]:
    """`hastctl role ROLE NAME` one resource at a time, so a failure names its resource."""
    code, done = sysexits.EX_OK, []
    for name in names:
        if dry_run:
            say(f"dry run: would run {hastctl.path} role {role} {name}")
            done.append(name)
            continue
        r = hastctl.role(role, name)
        if r.ok:
            log.notice(f"[{name}] role set to {role}")
            done.append(name)
            continue
        msg = f"[{name}] unable to change role to {role}: {r.why()}"
        log.error(msg)
        say(f"hasthook: {msg}")
        if code == sysexits.EX_OK:
            code = _code(r)
    return code, done


def _primary(names: list[str], prov: dict[str, str], hastctl: Hastctl,
             settings: Settings, log, wait: float, dry_run: bool,
             say: Callable[[str], None]) -> int:
    pgrep = settings.commands.pgrep
    # 1. Every old secondary worker must be gone before anything changes.
    pending = [n for n in names if secondary_running(n, pgrep)]
    if dry_run:
        for n in pending:
            say(f"dry run: would wait up to {_fmt_wait(wait)}s for "
                f"'hastd: {n} (secondary)' to exit (running now)")
    elif pending:
        log.info(f"waiting up to {_fmt_wait(wait)}s for the secondary worker of "
                 f"{' '.join(pending)} to exit")

        def gone() -> bool:
            pending[:] = [n for n in pending if secondary_running(n, pgrep)]
            return not pending

        if not wait_for(gone, wait):
            for n in pending:
                msg = (f"FATAL: Secondary process for resource {n} is still running "
                       f"after {_fmt_wait(wait)} seconds.")
                log.crit(msg + " No role was changed.")
                say(msg)
            return 1
    # 2. Exactly the named resources.
    code, done = _change("primary", names, hastctl, log, dry_run, say)
    # 3. Their GEOM providers.
    paths = {n: os.path.join(settings.dev_dir, prov[n]) for n in done}
    if dry_run:
        for n in done:
            say(f"dry run: would wait up to {_fmt_wait(wait)}s for {paths[n]}")
        return code
    missing = list(done)

    def appeared() -> bool:
        missing[:] = [n for n in missing if not os.path.exists(paths[n])]
        return not missing

    if not wait_for(appeared, wait):
        for n in missing:
            msg = f"GEOM provider {paths[n]} did not appear."
            log.error(f"[{n}] {msg}")
            say(msg)
        if code == sysexits.EX_OK:
            code = 1
    for n in done:
        if n not in missing:
            log.info(f"[{n}] {paths[n]} is there")
    return code
