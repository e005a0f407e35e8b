"""Events the database could not take, kept in a file and taken in later.

A hook that cannot record its event (the database locked past the time box,
unwritable, damaged beyond setting aside) appends it as one JSON line to
`spool.jsonl` in the state dir, else to a private directory in /var/tmp
(another file system). The next hook or `hasthook flush` takes the spool in.
Rules never act on a late event (a late recovery could do harm); the pipeline
tells the admin once for all of them (pipeline.Pipeline.take_spool).
"""

from __future__ import annotations

import errno
import glob
import json
import os
import stat
import time

from . import trust
from .event import Event
from .proc import FileLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .log import Levels
    from .store import Store

SPOOL_NAME = "spool.jsonl"
REJECTED_NAME = "spool.rejected.jsonl"
FALLBACK_DIR = "/var/tmp"
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def paths(state_dir: str) -> list[str]:
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


def private_dir(d: str) -> bool:
    """A directory only we can enter (not a link someone else planted in /var/tmp)."""
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def write(ev: Event, state_dir: str) -> str | None:
    """Append the event to a spool file when the database cannot take it; the file used."""
    data = (json.dumps(ev.to_dict(), sort_keys=True) + "\n").encode()
    for i, path in enumerate(paths(state_dir)):
        d = os.path.dirname(path)
        try:
            if i == 0:
                trust.state_dir(d)
            else:
                os.makedirs(d, mode=0o700, exist_ok=True)
            if (i == 0 or private_dir(d)) and _append(path, data):
                return path
        except (OSError, trust.Untrusted):
            continue
    return None


def _append(path: str, data: bytes) -> bool:
    """Append one whole line, under the file's lock, to the file that is still at
    `path`: take() renames the file away, and a line written after that would be lost."""
    for _ in range(10):
        lock = FileLock(path, _APPEND)
        try:
            lock.acquire()
            st = os.fstat(lock.fd)
            try:
                if not os.path.samestat(st, os.stat(path)):
                    continue  # taken in since we opened it: open the new one
            except FileNotFoundError:
                continue
            try:
                if os.write(lock.fd, data) == len(data):
                    return True
            except OSError:
                pass
            os.ftruncate(lock.fd, st.st_size)  # no half line for the next one to join
            raise OSError(errno.ENOSPC, "short write")
        finally:
            lock.close()
    return False


def take(store: Store, state_dir: str, log: Levels | None,
         taken: list[tuple[int, Event]]) -> None:
    """Move spooled events into the database, appending (id, event) to `taken`.

    Each spool file is renamed to a work file, locked, recorded in one
    transaction and removed. A work file whose run was killed is taken by the
    next (its lock died with it); an event already recorded is not recorded
    again; a line that cannot be recorded goes to spool.rejected.jsonl, logged.
    `taken` holds what went in even when a later file fails (the exception goes on).
    """
    for i, path in enumerate(paths(state_dir)):
        if i and not private_dir(os.path.dirname(path)):
            continue
        if not i:
            try:
                trust.state_dir(state_dir, create=False)
            except trust.Untrusted:
                continue  # another user's directory: touch nothing there
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


def waiting(state_dir: str) -> int:
    """Events spooled and not taken in yet, read only (`hasthook flush --dry-run`)."""
    n = 0
    for i, path in enumerate(paths(state_dir)):
        if i and not private_dir(os.path.dirname(path)):
            continue
        for name in [path, *glob.glob(glob.escape(path) + ".*")]:
            try:
                with open(name, "rb") as f:
                    n += sum(1 for line in f if line.strip())
            except OSError:
                continue
    return n


def _take(store: Store, state_dir: str, work: str, log: Levels | None
          ) -> list[tuple[int, Event]]:
    import sqlite3

    lock = FileLock(work, os.O_RDONLY)
    try:
        if not lock.acquire(wait=False) or not os.path.samestat(os.fstat(lock.fd),
                                                                 os.stat(work)):
            return []
    except OSError:  # another run took it in already
        lock.close()
        return []
    try:
        with os.fdopen(os.dup(lock.fd), "rb") as f:
            lines = f.read().splitlines()
        fields = set(Event._fields)
        rejected: list[bytes] = []
        taken: list[tuple[int, Event]] = []
        with store.transaction() as db:
            for line in lines:
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
        if rejected:
            bad = os.path.join(state_dir, REJECTED_NAME)
            try:
                trust.state_dir(state_dir)
                fd = os.open(bad, _APPEND | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "ab") as out:
                    out.writelines(rejected)
            except (OSError, trust.Untrusted) as e:
                if log:
                    log.crit(f"{len(rejected)} spooled lines in {work} cannot be recorded "
                             f"nor moved to {bad}: {getattr(e, 'strerror', None) or e}; "
                             "left in place")
                return taken
            if log:
                log.crit(f"{len(rejected)} spooled lines cannot be recorded; kept in {bad}")
        os.unlink(work)
    finally:
        lock.close()
    if taken and log:
        log.notice(f"{len(taken)} spooled events taken into {store.path}")
    return taken
