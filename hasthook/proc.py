"""The one way hasthook runs a program, and the one way it takes a file lock.

run(): an argv list (never a shell), a time limit, stdin on /dev/null, a
minimal environment unless the caller gives one, its own process group (so a
time limit or the hook's time box kills whatever it started), and a Result
whose why() says in one line how it failed. hastctl, pgrep, the recovery's
pre-steps, failover's steps and the `command` action all come through here.

FileLock: flock(2) on a file opened without following a symlink; released
when closed or when the process dies, so a killed holder never leaves it held.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import subprocess
import time

from .record import Record

# What programs hasthook runs see of the environment: the base system's PATH (as
# hastd's rc.d script sets it), plus whatever documented HASTHOOK_* values the caller adds.
PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
OUTPUT_LIMIT = 4 * 1024 * 1024  # bytes kept of each stream: any hastctl list, long names too


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The minimal environment: PATH, and the HASTHOOK_* values given."""
    return {"PATH": PATH, **(extra or {})}


class Result(Record):
    """What one run gave back. rc None: it could not start, timed out or was killed."""

    argv: list[str]
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None      # no exit status tells why: it could not start, or its
                                  # output was unusable (a parser's verdict)
    timeout: float | None = None  # set when the time limit killed it
    signal: int | None = None     # set when a signal ended it

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.error is None

    def last_line(self) -> str:
        """The last line it printed, stderr first: usually the reason."""
        for text in (self.stderr, self.stdout):
            lines = text.strip().splitlines()
            if lines:
                return lines[-1].strip()
        return ""

    def why(self) -> str:
        """One line: `exit status N: last line`, timed out, killed, or could not run."""
        prog = self.argv[0] if self.argv else "?"
        if self.error is not None:
            return f"{prog}: {self.error}"
        if self.timeout is not None:
            return f"{prog}: timed out after {self.timeout:g}s"
        if self.signal is not None:
            return f"{prog}: killed by signal {self.signal}"
        last = self.last_line()
        status = f"exit status {self.rc}"
        return f"{status}: {last}" if last and self.rc != 0 else status


def run(argv: list[str], timeout: float | None, *, env: dict[str, str] | None = None,
        merge_stderr: bool = False) -> Result:
    """Run argv to completion or until `timeout` seconds; never raises for the program.

    `env` None gives the minimal environment. With `merge_stderr` both streams
    land in stdout, in the order written (the `command` action's output).
    """
    argv = [str(a) for a in argv]
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                             env=environment() if env is None else env,
                             start_new_session=True, close_fds=True)
    except OSError as e:
        return Result(argv, None, error=e.strerror or str(e))
    killed_at = None
    out: bytes | None
    err: bytes | None
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed_at = timeout
        out, err = _kill(p)
    finally:
        if p.poll() is None:  # the hook's time box (an exception) interrupted the wait
            _kill(p)
    rc = p.returncode
    text = [(b or b"")[-OUTPUT_LIMIT:].decode("utf-8", "replace") for b in (out, err)]
    if killed_at is not None:
        return Result(argv, None, text[0], text[1], timeout=killed_at)
    if rc is not None and rc < 0:
        return Result(argv, None, text[0], text[1], signal=-rc)
    return Result(argv, rc, text[0], text[1])


def _kill(p: subprocess.Popen[bytes]) -> tuple[bytes | None, bytes | None]:
    """SIGKILL the program's whole process group; what it printed so far."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        return p.communicate(timeout=1)
    except subprocess.TimeoutExpired:  # a descendant left the group holding a pipe
        p.kill()
        p.wait()
        return None, None


class FileLock:
    """flock(2) on `path`, opened with O_NOFOLLOW; `held` says whether we have it.

    acquire(wait): True waits as long as it takes, a number waits at most that
    many seconds, False or 0 tries once. The file is created 0600 if missing;
    `flags` lets a caller lock the file it appends to (the spool).
    """

    POLL = 0.05

    def __init__(self, path: str, flags: int = os.O_RDWR | os.O_CREAT):
        self.path = path
        self.flags = flags
        self.fd = -1
        self.held = False

    def open(self) -> int:
        """The descriptor; refuses anything but a plain file of ours with one name (a
        hard link planted to another file would have its content truncated)."""
        if self.fd < 0:
            fd = os.open(self.path, self.flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            st = os.fstat(fd)
            if (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1
                    or st.st_uid not in (0, os.geteuid())):
                os.close(fd)
                raise PermissionError(errno.EPERM, "not a private plain file", self.path)
            self.fd = fd
        return self.fd

    def acquire(self, wait: bool | float = True) -> bool:
        fd = self.open()
        if wait is True:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.held = True
            return True
        deadline = time.monotonic() + float(wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.held = True
                return True
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.POLL, left))

    def mark_owner(self) -> None:
        """Write our pid into the lock file, for holder() in other processes."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def holder(self) -> str:
        """The pid the holder wrote, or `?`."""
        try:
            return os.pread(self.open(), 32, 0).decode(errors="replace").strip() or "?"
        except OSError:
            return "?"

    def close(self) -> None:
        """Release the lock (closing the descriptor drops it)."""
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
        self.held = False

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
