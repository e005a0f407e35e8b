"""Stand-in for hastd's hook bookkeeping (sbin/hastd/hooks.c): run one hook, reap, log.

Run as `python -I -S reaper.py RECORD`: standard library only, so it starts fast and is
not influenced by the caller's Python environment. It detaches (double fork, new
session), forks the hook as hook_execv() does (argv[0] as the record says: the full path
since FreeBSD 11, basename(path) before; stdio on /dev/null, other descriptors closed,
empty signal mask), prints the hook's pid to the spawner, then waits for it like hastd's
SIGCHLD handling and logs with hastd's wording.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import time

EX_SOFTWARE = 70


def _log(path: str, line: str) -> None:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")


def _update(record: str, data: dict, **changes: object) -> None:
    data.update(changes)
    tmp = f"{record}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, record)


def _child(spec: dict) -> None:
    """The forked hook: descriptors() then execv(), or log and exit(EX_SOFTWARE)."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        rd = os.open(os.devnull, os.O_RDONLY)
        wr = os.open(os.devnull, os.O_WRONLY)
        os.dup2(rd, 0)
        os.dup2(wr, 1)
        os.dup2(wr, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        path = spec["path"]
        try:
            os.execve(path, [spec.get("argv0") or path, *spec["words"]], spec["env"])
        except OSError as e:
            _log(spec["log"], f"[ERROR] {spec['prefix']}Unable to execute {path}: "
                              f"{os.strerror(e.errno or 0)}.")
    finally:
        os._exit(EX_SOFTWARE)


def main(record: str) -> int:
    with open(record) as f:
        spec = json.load(f)
    if os.fork() > 0:  # the spawner reaps this one at once
        os._exit(0)
    os.setsid()
    os.chdir("/")
    comm = spec["comm"]
    pid = os.fork()
    if pid == 0:
        _child(spec)
    born = time.time()
    _update(record, spec, state="running", pid=pid, started=born)
    os.write(1, f"{pid}\n".encode())
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    interval = float(spec.get("report_interval") or 60)
    last = born
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            break
        now = time.time()
        if now - last >= interval:
            # hook_check(): a hook still running is reported every REPORT_INTERVAL.
            _log(spec["log"], f"[WARNING] Hook is running for {int(now - born)} seconds "
                              f"(pid={pid}, cmd=[{comm}]).")
            last = now
            continue
        wait = last + interval - now
        if pidfd is not None:
            select.select([pidfd], [], [], wait)
        else:
            time.sleep(min(wait, 0.02))

    # hook_check_one()
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        _log(spec["log"], f"[DEBUG][1] Hook exited gracefully (pid={pid}, cmd=[{comm}]).")
    elif os.WIFSIGNALED(status):
        _log(spec["log"], f"[ERROR] Hook was killed (pid={pid}, "
                          f"signal={os.WTERMSIG(status)}, cmd=[{comm}]).")
    else:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        _log(spec["log"], f"[ERROR] Hook exited ungracefully (pid={pid}, "
                          f"exitcode={code}, cmd=[{comm}]).")
    _update(record, spec, state="done", ended=time.time(),
            exitcode=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
