"""Hooks of one resource record their events in the order hastd started them.

hastd forks one hook per event and does not wait, so several run at once. Two events
of a resource a moment apart (the disconnect a dying worker leaves and the connect
of its restarted one, the two role hooks of a restart) race, and the later one could
reach the database first: its resolved message would find nothing yet to resolve,
and the alert recorded after it would stay open. So each hook takes a turn as soon
as it knows where the state dir is: a file in STATE_DIR/turns named by when its
process started, locked (flock) until its event is recorded. Before recording, a
hook waits for the turns of its resource that started before it. A hook that dies
drops its lock with it (the kernel closes its files); a stuck one is waited for at
most the time given, then the hook records anyway: late, not lost.
"""

from __future__ import annotations

import fcntl
import os
import time

DIR = "turns"
_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


class Turn:
    """One hook's place in its resource's line; release() once its event is recorded."""

    def __init__(self, folder: str, name: str, key: str, fd: int) -> None:
        self.folder, self.name, self.key, self.fd = folder, name, key, fd

    def ahead(self) -> list[str]:
        """The turns of this resource taken by hooks that started before this one and
        have not recorded yet (or died)."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return sorted(n for n in names
                      if n < self.name and n.endswith(self.key) and not n.startswith("."))

    def wait(self, ahead: list[str], deadline: float) -> list[str]:
        """Wait (until time.monotonic() reaches deadline) for these turns to be
        released. Returns those still held at the deadline."""
        return [n for n in ahead if not _wait_one(os.path.join(self.folder, n), deadline)]

    def release(self) -> None:
        """Let the next hook of this resource record (idempotent)."""
        if self.fd < 0:
            return
        try:
            os.unlink(os.path.join(self.folder, self.name))
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def take(state_dir: str, resource: str, started: float) -> Turn | None:
    """This hook's turn (held until released); None when the state dir cannot keep
    turns, and the hook then records in whatever order it reaches the database."""
    from . import trust

    key = f".{_fnv1a(resource.encode('utf-8', 'surrogateescape')):08x}"
    name = f"{round(started * 1e9):020d}.{os.getpid()}{key}"
    folder = os.path.join(state_dir, DIR)
    try:
        trust.state_dir(state_dir)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        # Made under a hidden name and locked before it can be seen: a turn that shows
        # is a turn held (or one whose hook died).
        hidden = os.path.join(folder, "." + name)
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(hidden, os.path.join(folder, name))
    except (OSError, trust.Untrusted):
        return None
    return Turn(folder, name, key, fd)


def _fnv1a(data: bytes) -> int:
    """A short, stable key for any resource name (zlib's crc32 costs 0.5 ms of import
    on the hook's path; two names sharing a key only wait for each other)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _wait_one(path: str, deadline: float) -> bool:
    """Wait for one earlier turn to be released; True once it is (or never was)."""
    try:
        fd = os.open(path, os.O_RDONLY | _FLAGS)
    except OSError:
        return True  # released already
    try:
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
                pause = min(pause * 2, 0.02)
        try:
            os.unlink(path)  # its hook died holding it: nobody else will remove it
        except OSError:
            pass
        return True
    finally:
        os.close(fd)
