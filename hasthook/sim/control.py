"""The calling side of `hasthook sim`: start a pair's daemon, send it a request, stop it.

A pair lives in a directory (DIR): its daemon (pair.py) holds the simulated nodes
and listens on DIR/control.sock; DIR/pair.json says what it runs. Every later
`hasthook sim ...` is one request on that socket, answered when what it played
(and the hooks it fired) is done. The daemon is the one owner of the pair, so
nothing here imports the driver: this side stays quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hasthook
from hasthook import sysexits
from hasthook.errors import HasthookError, Unavailable, UsageError

ENV_VAR = "HASTHOOK_SIM_DIR"
CONTROL = "control.sock"
PAIR_FILE = "pair.json"
DAEMON_LOG = "daemon.log"
NODES = ("host1", "host2")
DEFAULT_RESOURCE = "shared1"
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:-]*\Z")  # a resource name hast.conf takes
ADDRESSES = ("192.168.1.129", "192.168.1.130")
# The longest socket path the pair binds (DIR/host1/syslog.sock) must fit sun_path,
# 104 bytes on FreeBSD (108 on Linux).
SUN_PATH = 104
LONGEST = len(f"/{NODES[0]}/syslog.sock")
START_TIMEOUT = 120.0  # a loaded CI machine is slow, not broken
STOP_TIMEOUT = 60.0


def where(given: str | None) -> Path:
    """The pair's directory: -d DIR, else $HASTHOOK_SIM_DIR."""
    path = given or os.environ.get(ENV_VAR)
    if not path:
        raise UsageError(f"which pair? give -d DIR or set {ENV_VAR} "
                         "(`hasthook sim start DIR` prints it)")
    return Path(path).absolute()


def start(root: Path, resources: list[str], timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start the daemon of a new pair in root (new or empty); its ready report."""
    bad = [r for r in resources if not NAME.match(r)]
    if bad or len(set(resources)) != len(resources):
        raise UsageError(f"bad resource names: {', '.join(map(repr, bad)) or 'a duplicate'} "
                         "(letters, digits and ._:- , each once)")
    if root.exists() and not root.is_dir():
        raise HasthookError(f"{root}: not a directory", sysexits.EX_CANTCREAT)
    if (root / CONTROL).exists() and running(root):
        raise HasthookError(f"{root}: a pair is running there already (hasthook sim stop "
                            f"-d {root})", sysexits.EX_CANTCREAT)
    if root.is_dir() and any(root.iterdir()):
        raise HasthookError(f"{root}: not empty; a new pair needs a new or empty directory",
                            sysexits.EX_CANTCREAT)
    if len(os.fsencode(root)) + LONGEST >= SUN_PATH:
        raise UsageError(f"{root}: path too long for the pair's sockets (at most "
                         f"{SUN_PATH - LONGEST - 1} bytes)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        log = open(root / DAEMON_LOG, "ab")  # the daemon's stderr
    except OSError as e:
        raise HasthookError(f"{root}: {e.strerror}", sysexits.EX_CANTCREAT) from None
    pkg_root = str(Path(hasthook.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": pkg_root + (f":{path}" if path else "")}
    with log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hasthook.sim.pair", str(root), *resources],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd="/",
            env=env, close_fds=True, start_new_session=True)
    assert proc.stdout is not None
    try:
        line = _read_line(proc.stdout.fileno(), timeout)
    finally:
        proc.stdout.close()
        proc.wait()  # the daemon forked away at once: this is its first half
    try:
        report = json.loads(line) if line else None
    except ValueError:
        report = None
    if not isinstance(report, dict) or not report.get("ok"):
        why = report.get("error") if isinstance(report, dict) else _last_line(root / DAEMON_LOG)
        raise Unavailable(f"{root}: the pair did not start: {why or 'no reason given'} "
                          f"(see {root / DAEMON_LOG})")
    return report


def _read_line(fd: int, timeout: float) -> str:
    """The daemon's one-line report, or what came before EOF or the deadline."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _connect(root: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(root / CONTROL))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise Unavailable(f"{root}: no simulated pair runs there (hasthook sim start "
                          f"{root})") from None
    except OSError as e:
        sock.close()
        raise Unavailable(f"{root / CONTROL}: {e.strerror or e}") from None
    return sock


def running(root: Path) -> bool:
    """Whether a daemon answers on root's control socket."""
    try:
        _connect(root, 5.0).close()
    except Unavailable:
        return False
    return True


def call(root: Path, action: str, timeout: float, **args: Any) -> dict[str, Any]:
    """One request to the pair's daemon; its reply {status, out, err, data}.

    A reply with a status other than 0 is raised as a HasthookError with it."""
    sock = _connect(root, timeout)
    chunks = []
    try:
        sock.sendall(json.dumps({"action": action, "args": args}).encode() + b"\n")
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        raise HasthookError(f"{root}: the pair's daemon did not answer {action!r} within "
                            f"{timeout:g}s; it goes on (see `hasthook sim status`)",
                            sysexits.EX_TEMPFAIL) from None
    except OSError as e:
        raise Unavailable(f"{root / CONTROL}: {e.strerror or e}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise Unavailable(f"{root}: the pair's daemon ended without answering {action!r} "
                          f"(see {root / DAEMON_LOG})") from None
    if reply.get("status"):
        raise HasthookError(reply.get("error") or f"{action} failed", int(reply["status"]))
    return dict(reply)


def stop(root: Path, wait: float) -> dict[str, Any]:
    """Stop the pair: its hooks are waited for (at most `wait`), then every process it
    started ends; returns once none of them is left (Linux: /proc tells)."""
    reply = call(root, "stop", wait + STOP_TIMEOUT, wait=wait)
    pid = int(reply["data"]["pid"])
    deadline = time.monotonic() + STOP_TIMEOUT
    left = leftovers(root)
    while (_alive(pid) or left) and time.monotonic() < deadline:
        time.sleep(0.01)
        left = leftovers(root)
    if _alive(pid) or left:
        names = ", ".join(f"{p} ({title})" for p, title in sorted(left.items()))
        raise HasthookError(f"{root}: still running after stop: "
                            f"{names or f'the daemon, pid {pid}'}", sysexits.EX_SOFTWARE)
    return reply


def _alive(pid: int) -> bool:
    from hasthook.sim.core import alive

    return alive(pid)


def leftovers(root: Path) -> dict[int, str]:
    """Live processes of the pair in root, pid -> command line: its daemon, the
    stand-ins and hooks (their environment names one of its nodes) and the hooks'
    reapers. Another program that merely names a file in root is not one."""
    mine = os.fsencode(root)
    marks = (b"HASTHOOK_SIM_PROC=" + mine + b"/", b"HASTHOOK_SIM_NODE=" + mine + b"/")
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X"):
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                env = b""
                with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            inside = any(a.startswith(mine + b"/") for a in argv)
            ours = (b"hasthook.sim.pair" in argv and mine in argv) or (
                inside and any(a.endswith(b"/reaper.py") for a in argv))
            if ours or any(b"\0" + m in b"\0" + env for m in marks):
                found[int(entry)] = " ".join(a.decode(errors="replace") for a in argv if a)
    return found
