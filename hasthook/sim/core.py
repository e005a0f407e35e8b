"""On-disk state of one simulated HAST node, shared by the fake hastctl and the test driver.

Everything lives in one directory so that separate processes (the fake hastctl run by
the tool under test, hooks, the pytest process) see one truth. state.json is rewritten
atomically under an fcntl lock; calls, events and hastd.log are append-only files.
What hastd does on a role change (worker process, /dev/hast node, metadata, the `role`
hook) is here so that the fake hastctl and the driver take the same path.

A resource's `meta` is what its running worker holds in memory (the on-disk metadata when
no worker runs). `hastctl create` under a running worker writes `disk_meta` instead: the
worker keeps its old resource ID and counters until it stops or writes its own metadata
back (primary.c metadata_write()), and the next worker reads what create wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

TYPE_CHECKING = False  # typing costs a fifth of the startup of a hastctl call
if TYPE_CHECKING:
    from typing import Any

ROLES = ("init", "primary", "secondary")
METADATA_SIZE = 4096  # sbin/hastd/metadata.h
SECTORSIZE = 512
HAST_EXTENTSIZE = 2097152  # hast.h defaults, used by `hastctl create`
HAST_KEEPDIRTY = 64
CONTROLADDR = "uds:///var/run/hastctl"
IDLE_QUEUE = 255  # HAST_HIO_MAX (256) less the request the ggate/recv thread holds
REAPER = Path(__file__).with_name("reaper.py")
SHELL = "/bin/sh"

STAT_KEYS = ("reads", "writes", "deletes", "flushes", "activemap updates")
ERROR_KEYS = ("read", "write", "delete", "flush")
QUEUE_KEYS = ("local", "send", "recv", "done", "idle")


class SimError(RuntimeError):
    """The simulation was asked for something hastd could not do."""


def c_basename(path: str) -> str:
    """basename(3): what FreeBSD 10's hastd put in argv[0] of a hook."""
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"


def mapsize(mediasize: int, extentsize: int, sectorsize: int = SECTORSIZE) -> int:
    """activemap_calc_ondisk_size(): one bit per extent, rounded up to whole sectors."""
    nextents = (mediasize - 1) // extentsize + 1
    nbytes = (nextents + 7) // 8
    return -(-nbytes // sectorsize) * sectorsize


def fresh_meta(mediasize: int, extentsize: int, keepdirty: int) -> dict[str, Any]:
    """Metadata as `hastctl create` writes it (create_one() + metadata_write())."""
    ms = mapsize(mediasize - METADATA_SIZE, extentsize)
    return {
        "mediasize": mediasize, "datasize": mediasize - METADATA_SIZE - ms,
        "extentsize": extentsize, "keepdirty": keepdirty, "localoff": METADATA_SIZE + ms,
        "resuid": 0, "localcnt": 0, "remotecnt": 0, "prevrole": "init", "generation": 0,
    }


def nextents(meta: dict[str, Any]) -> int:
    """Extents of the data area: what a full synchronization marks dirty."""
    return (meta["datasize"] - 1) // meta["extentsize"] + 1


def new_resource(spec: dict[str, Any]) -> dict[str, Any]:
    """Dynamic state of one resource as hastd starts it: role init, nothing running.

    conn numbers connections (a timer for a later disconnect checks it is still the same
    one); peer_counts is the secondary's [localcnt, remotecnt] as the primary's worker
    last heard them (hr_secondary_*); syncsrc is who a synchronization copies from and
    copying whether one has dirty extents to copy; data names the last writes this
    node's copy holds ("host1:3"), None when untouched.
    """
    meta = fresh_meta(spec["mediasize"], spec["extentsize"], spec["keepdirty"])
    return {
        "role": "init", "connected": False, "status": None, "syncing": False,
        "workerpid": 0, "workerrole": None, "dirty_extents": 0,
        "stats": dict.fromkeys(STAT_KEYS, 0), "errors": dict.fromkeys(ERROR_KEYS, 0),
        "queues": fresh_queues(), "meta": meta, "disk_meta": None, "conn": 0,
        "peer_counts": [0, 0], "syncsrc": "primary", "copying": False, "data": None,
    }


def fresh_queues() -> dict[str, int]:
    """A new worker's queues: every request on the idle list."""
    return {**dict.fromkeys(QUEUE_KEYS, 0), "idle": IDLE_QUEUE}


def worker_gone(rs: dict[str, Any]) -> None:
    """The worker stopped: what is on disk is the truth again (a create's metadata,
    with its zeroed activemap, takes effect)."""
    if rs.get("disk_meta"):
        rs["meta"] = rs["disk_meta"]
        rs["disk_meta"] = None
        rs["dirty_extents"] = 0


# --------------------------------------------------------------------------- processes

# Sleepers started by this (long-lived) process; polled so they do not stay zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


def reap_children() -> None:
    """Collect exited children of this process (no-op for other processes' children)."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def alive(pid: int) -> bool:
    """True while pid runs; a zombie counts as gone (pgrep no longer sees its title)."""
    if pid <= 0:
        return False
    reap_children()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return True
    return data.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str] | None:
    """argv of a process as ps shows it; None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def stop_pid(pid: int, title: str | None = None, timeout: float = 5.0,
             sig: int = signal.SIGTERM) -> None:
    """Kill one process we started and wait until it is gone.

    `title` guards against pid reuse: a process whose argv[0] differs is left alone.
    """
    if not alive(pid):
        return
    if title is not None:
        argv = cmdline(pid)
        if argv is not None and (not argv or argv[0] != title):
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.002)


def worker_title(name: str, role: str) -> str:
    """setproctitle("%s (%s)") in a hastd worker, as ps and `pgrep -f` see it."""
    return f"hastd: {name} ({role})"


# --------------------------------------------------------------------------- the store


class NodeStore:
    """One node's directory: state, logs, /dev/hast stand-in, wrapper scripts."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).resolve()
        self.state_file = self.path / "state.json"
        self.lock_file = self.path / "state.lock"
        self.calls_file = self.path / "calls.jsonl"
        self.events_file = self.path / "events.jsonl"
        self.log_file = self.path / "hastd.log"
        self.hooks_dir = self.path / "hooks"
        self.dev_dir = self.path / "dev" / "hast"
        self.bin_dir = self.path / "bin"
        self.pidfile = self.path / "hastd.pid"
        self.hastd_exe = self.path / "libexec" / "hastd"  # symlink to /bin/sh: comm hastd
        self.owner_fifo = self.path / "owner.fifo"  # see spawn_sleeper()

    def exists(self) -> bool:
        return self.state_file.exists()

    def create(self, state: dict[str, Any]) -> None:
        for d in (self.path, self.hooks_dir, self.dev_dir, self.bin_dir, self.hastd_exe.parent):
            d.mkdir(parents=True, exist_ok=True)
        for f in (self.calls_file, self.events_file, self.log_file):
            f.touch()
        with contextlib.suppress(FileNotFoundError):
            self.hastd_exe.unlink()
        self.hastd_exe.symlink_to(SHELL)
        if not self.owner_fifo.exists():
            os.mkfifo(self.owner_fifo)
        with open(self.lock_file, "a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            self._save(state)

    @contextlib.contextmanager
    def locked(self, write: bool = True) -> Iterator[dict[str, Any]]:
        """The state under the node lock; saved on normal exit when write is true."""
        with open(self.lock_file, "a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            st = json.loads(self.state_file.read_text())
            yield st
            if write:
                self._save(st)

    def read(self) -> dict[str, Any]:
        with self.locked(write=False) as st:
            return st

    def _save(self, st: dict[str, Any]) -> None:
        tmp = self.state_file.with_name(f".state.{os.getpid()}.tmp")
        # No indent: json then uses its C encoder, 10x faster on a 20-resource state
        # rewritten several times per fired event (a burst is CPU-bound on the driver).
        tmp.write_text(json.dumps(st, sort_keys=True))
        os.replace(tmp, self.state_file)

    # append-only logs --------------------------------------------------------------

    @staticmethod
    def _append(path: Path, line: str) -> None:
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(line + "\n")

    def record_call(self, argv: list[str]) -> None:
        self._append(self.calls_file, json.dumps({"argv": argv, "time": time.time(),
                                                  "pid": os.getpid()}))

    def log(self, line: str) -> None:
        """A hastd log line, worded as pjdlog prints it (`hastd -F`): `[LEVEL] msg`."""
        self._append(self.log_file, line)

    def jsonl(self, path: Path) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]

    # the hastd side ----------------------------------------------------------------

    def hastd_up(self, st: dict[str, Any]) -> bool:
        h = st["hastd"]
        return bool(h["running"]) and alive(h["pid"])

    def spawn_sleeper(self, title: str) -> int:
        """A do-nothing process whose ps line is exactly `title` and whose comm is hastd.

        It is /bin/sh (started through a symlink named hastd) reading commands from
        the node's owner FIFO, which only the driving process holds open for writing
        and never writes: the shell waits until that process closes it or dies, so a
        test that ends without close() leaves nothing behind. SIGTERM ends it at once.
        """
        fd = os.open(self.owner_fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        try:
            proc = subprocess.Popen(
                [title], executable=str(self.hastd_exe), stdin=fd, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True, cwd="/",
                env={"PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
                     "HASTHOOK_SIM_PROC": str(self.path)},  # see pgrep.py
            )
        finally:
            os.close(fd)
        _children[proc.pid] = proc
        # Popen returns once exec is under way; ps/pgrep see the title a moment later.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and proc.poll() is None:
            argv = cmdline(proc.pid)
            if argv is None or argv == [title]:
                break
            time.sleep(0.001)
        return proc.pid

    def make_dev(self, provname: str) -> Path:
        """/dev/hast/PROVNAME: a character device like /dev/null, else a plain file."""
        path = self.dev_dir / provname
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)
        except (OSError, AttributeError):
            path.touch()
        return path

    def remove_dev(self, provname: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dev_dir / provname).unlink()

    def reconcile(self, st: dict[str, Any], name: str) -> None:
        """Start/stop the worker and the /dev/hast node to match role and connection.

        A worker exists for a primary, or for a secondary with a connected primary. A new
        worker reads the metadata from disk and starts its statistics from zero.
        """
        rs, spec = st["resources"][name], st["config"]["resources"][name]
        want = rs["role"] if rs["role"] == "primary" or (
            rs["role"] == "secondary" and rs["connected"]) else None
        if not self.hastd_up(st):
            want = None
        have = rs["workerrole"] if rs["workerpid"] and alive(rs["workerpid"]) else None
        if have != want:
            if rs["workerpid"]:
                stop_pid(rs["workerpid"], worker_title(name, rs["workerrole"] or ""))
            rs["workerpid"], rs["workerrole"] = 0, None
            worker_gone(rs)
            if want:
                rs["workerpid"] = self.spawn_sleeper(worker_title(name, want))
                rs["workerrole"] = want
                rs.update(stats=dict.fromkeys(STAT_KEYS, 0), peer_counts=[0, 0],
                          errors=dict.fromkeys(ERROR_KEYS, 0), queues=fresh_queues())
        if rs["role"] == "primary" and want:
            if not (self.dev_dir / spec["provname"]).exists():
                self.make_dev(spec["provname"])
        else:
            self.remove_dev(spec["provname"])

    def change_role(self, st: dict[str, Any], name: str, new: str,
                    exec_path: str | None = None) -> str:
        """control_set_role_common(): stop the worker, start a primary one, fire `role`.

        The resource ID is not assigned here: a primary gets it at its first connection
        (primary.c init_remote()). exec_path: the program to run instead of the running
        config's, "" for none (a reload fires the first half of a restart with the old).
        """
        rs = st["resources"][name]
        old = rs["role"]
        if old == new:
            return old
        self.log(f"[INFO] [{name}] ({old}) Role changed to {new}.")
        rs["role"] = new
        if rs["workerpid"]:
            stop_pid(rs["workerpid"], worker_title(name, rs["workerrole"] or ""))
            self.log(f"[DEBUG][1] [{name}] ({new}) Worker process {rs['workerpid']} stopped.")
            rs["workerpid"], rs["workerrole"] = 0, None
            worker_gone(rs)
        rs["connected"] = False
        rs["syncing"] = False
        rs["status"] = None
        if new == "primary":
            rs["meta"]["prevrole"] = "primary"
        self.reconcile(st, name)
        self.fire(st, ["role", name, old, new], exec_path=exec_path)
        return old

    def stop_all(self, st: dict[str, Any]) -> None:
        """hastd exits: workers are terminated, providers vanish, roles restart as init."""
        for name, rs in st["resources"].items():
            if rs["workerpid"]:
                stop_pid(rs["workerpid"], worker_title(name, rs["workerrole"] or ""))
            rs.update(role="init", connected=False, syncing=False, status=None,
                      workerpid=0, workerrole=None)
            worker_gone(rs)
            self.remove_dev(st["config"]["resources"][name]["provname"])

    # hooks -------------------------------------------------------------------------

    def exec_for(self, st: dict[str, Any], resource: str | None) -> str | None:
        cfg = st["config"]
        res = cfg["resources"].get(resource or "")
        path = (res or {}).get("exec") or cfg.get("exec")
        return path or None

    def fire(self, st: dict[str, Any], words: list[str],
             exec_path: str | None = None) -> int | None:
        """hook_exec(): run the exec program detached, reaped and logged by a reaper.

        `st` must be held under the write lock (the hook sequence number lives there).
        Returns the hook's sequence number, or None when no exec is configured.
        The call returns once the hook process exists, so hooks start in firing order.
        argv[0] is the full path (hooks.c since FreeBSD 11), or its basename when the
        node plays FreeBSD 10 (config argv0 "basename"). exec_path: see change_role().
        """
        if not st["hastd"]["running"]:
            raise SimError(f"hastd is not running: nothing would fire {' '.join(words)!r}")
        self._append(self.events_file, json.dumps({"words": words, "time": time.time(),
                                                   "sim": st.get("clock", 0.0)}))
        resource = words[1] if len(words) > 1 else None
        path = self.exec_for(st, resource) if exec_path is None else (exec_path or None)
        if path is None:
            return None
        st["seq"] += 1
        seq = st["seq"]
        comm = " ".join([path, *words])  # hooks.c hook_alloc(): path, then " %s" each
        prefix = ""
        if resource in st["resources"] and words[0] != "role":
            prefix = f"[{resource}] ({st['resources'][resource]['role']}) "
        self.log(f"[DEBUG][1] {prefix}Executing hook: {comm}")
        record = self.hooks_dir / f"{seq:06d}.json"
        argv0 = c_basename(path) if st["config"].get("argv0") == "basename" else path
        spec = {
            "seq": seq, "path": path, "argv0": argv0, "words": words, "comm": comm,
            "prefix": prefix,
            "env": st["hastd"]["env"], "log": str(self.log_file),
            "report_interval": st["config"]["report_interval"], "state": "pending",
            "pid": None, "exitcode": None, "signal": None, "fired": time.time(),
        }
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec))
        os.replace(tmp, record)
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(REAPER), str(record)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, cwd="/",
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        proc.wait()
        if not line.strip().isdigit():
            raise SimError(f"hook reaper for {comm!r} did not start")
        return seq

    def hook_records(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.hooks_dir.glob("*.json")):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                out.append(json.loads(p.read_text()))
        return out
