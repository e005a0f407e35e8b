"""Test driver for simulated HAST nodes: state set-up, hastd's events, failure injection.

A SimNode is one host: a directory holding its state, a `hastctl` wrapper to point tools
at, a hastd pid file and stand-in processes whose titles match hastd's. A SimCluster
pairs two nodes and plays the scenarios hastd goes through (connect, link loss, sync,
switch-over, split-brain), firing on each node the events hastd would fire, in order.
Hooks run the way hastd runs them (see reaper.py) and are waited for by polling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hasthook
from hasthook.sim.core import (
    ERROR_KEYS,
    QUEUE_KEYS,
    ROLES,
    STAT_KEYS,
    NodeStore,
    SimError,
    alive,
    cmdline,
    new_resource,
    nextents,
    reap_children,
    stop_pid,
    worker_title,
)

__all__ = ["ResourceSpec", "SimCluster", "SimError", "SimNode", "SplitBrainResult", "is_alive",
           "wait_for"]

RETRY_SLEEP = 10.0  # primary.c: seconds between reconnection attempts
_META_KEYS = ("datasize", "extentsize", "keepdirty", "localoff", "resuid", "localcnt",
              "remotecnt", "prevrole")


@dataclass(frozen=True)
class ResourceSpec:
    """One `resource` section of hast.conf as this node sees it.

    extentsize and keepdirty are the values in the resource's metadata (set by
    `hastctl create`); mediasize is the size of the local component.
    """

    name: str
    localpath: str
    remoteaddr: str = ""
    provname: str | None = None
    sourceaddr: str | None = None
    replication: str = "memsync"
    extentsize: int = 2097152
    keepdirty: int = 64
    mediasize: int = 10 * 1024 ** 3
    exec: str | None = None

    @classmethod
    def of(cls, value: ResourceSpec | Mapping[str, Any]) -> ResourceSpec:
        return value if isinstance(value, ResourceSpec) else cls(**dict(value))

    def as_config(self) -> dict[str, Any]:
        d = asdict(self)
        d["provname"] = self.provname or self.name
        return d


@dataclass
class SplitBrainResult:
    """What split_brain() did: attempts that met the split-brain, and how it ended."""

    rounds: int
    resolved: bool
    events: list[tuple[str, list[str]]] = field(default_factory=list)


class SimNode:
    """One simulated host running hastd, driven from tests.

    root: the node's directory (created); resources: ResourceSpec or dicts of its
    fields; exec: hast.conf's global `exec` (None: no hooks); env: variables added to
    the hooks' environment; report_interval: seconds between "Hook is running"
    reports (hastd: 60); start: start hastd now (resources in role init).
    Nothing here sleeps to synchronise: waits poll a condition with a deadline.
    """

    def __init__(self, root: str | os.PathLike[str], name: str = "host1",
                 resources: Iterable[ResourceSpec | Mapping[str, Any]] = (),
                 exec: str | None = None, env: Mapping[str, str] | None = None, *,
                 report_interval: float = 60.0, start: bool = True):
        self.name = name
        self.env = dict(env or {})
        self.store = NodeStore(root)
        self.root = self.store.path
        specs = [ResourceSpec.of(r) for r in resources]
        if len({s.name for s in specs}) != len(specs):
            raise SimError("duplicate resource names")
        config: dict[str, Any] = {
            "name": name, "exec": exec, "report_interval": report_interval,
            "order": [s.name for s in specs],
            "resources": {s.name: s.as_config() for s in specs},
        }
        state = {
            "config": config, "seq": 0, "lingering": [],
            "hastd": {"running": False, "pid": 0, "env": {}, "down_error": ""},
            "faults": {"hang": {}, "garbage": {}, "create": {}, "role": {}},
            "resources": {s.name: new_resource(config["resources"][s.name]) for s in specs},
        }
        self.store.create(state)
        # Held open (never written) for as long as this process drives the node: the
        # stand-in processes exit when it is closed (close(), or this process dies).
        self._owner_fd: int | None = os.open(self.store.owner_fifo, os.O_RDWR)
        self._write_wrapper()
        if start:
            self.start_hastd()

    def __repr__(self) -> str:
        return f"SimNode({self.name!r}, {str(self.root)!r})"

    def __enter__(self) -> SimNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paths -------------------------------------------------------------------------

    @property
    def hastctl_path(self) -> str:
        """An executable standing in for /sbin/hastctl on this node."""
        return str(self.store.bin_dir / "hastctl")

    @property
    def dev_dir(self) -> Path:
        """The /dev/hast of this node: PROVNAME exists here only while primary."""
        return self.store.dev_dir

    @property
    def pidfile(self) -> Path:
        """hastd's pid file; like the real one it is left behind when hastd stops."""
        return self.store.pidfile

    @property
    def log_path(self) -> Path:
        return self.store.log_file

    @property
    def resources(self) -> list[str]:
        return list(self._read()["config"]["order"])

    @property
    def pgrep_path(self) -> str:
        """A pgrep that hides the other simulated nodes' hastd processes (see pgrep.py).

        It comes first in the hooks' PATH, next to this node's hastctl."""
        return str(self.store.bin_dir / "pgrep")

    def _write_wrapper(self) -> None:
        """bin/hastctl and bin/pgrep: executables with this node's directory baked in."""
        pkg_root = str(Path(hasthook.__file__).resolve().parent.parent)
        for prog in ("hastctl", "pgrep"):
            text = (
                f"#!{sys.executable} -IS\n"
                f'"""{prog} of simulated node {self.name}: see hasthook.sim."""\n'
                "import sys\n"
                f"sys.path.insert(0, {pkg_root!r})\n"
                f"from hasthook.sim.{prog} import main\n"
                f"sys.exit(main(sys.argv[1:], node_dir={str(self.root)!r}))\n"
            )
            path = self.store.bin_dir / prog
            path.write_text(text)
            path.chmod(0o755)

    # state -------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        return self.store.read()

    def _check(self, st: dict[str, Any], res: str) -> dict[str, Any]:
        if res not in st["resources"]:
            raise SimError(f"{self.name}: no resource {res!r}")
        return st["resources"][res]

    def state(self, res: str) -> dict[str, Any]:
        """The resource's dynamic state (role, connected, workerpid, dirty_extents, meta...)."""
        st = self._read()
        return self._check(st, res)

    def role(self, res: str) -> str:
        return str(self.state(res)["role"])

    def worker_pid(self, res: str) -> int:
        """The pid of the `hastd: RES (ROLE)` worker, 0 when none runs."""
        return int(self.state(res)["workerpid"])

    def set_state(self, res: str, *, role: str | None = None, status: str | None = None,
                  dirty_extents: int | None = None, connected: bool | None = None,
                  stats: Mapping[str, int] | None = None,
                  errors: Mapping[str, int] | None = None,
                  queues: Mapping[str, int] | None = None, **meta: Any) -> None:
        """Put a resource in a state directly, as set-up: no hook runs, nothing is logged.

        Workers and /dev/hast nodes follow the role. status overrides what `list` says
        (default: complete when connected, degraded otherwise; only shown with a
        worker). Other keywords set metadata: resuid, localcnt, remotecnt, prevrole,
        datasize, extentsize, keepdirty, localoff.
        """
        bad = set(meta) - set(_META_KEYS)
        if bad:
            raise SimError(f"unknown state keys: {sorted(bad)}")
        if role is not None and role not in ROLES:
            raise SimError(f"bad role {role!r}")
        with self.store.locked() as st:
            rs = self._check(st, res)
            if role is not None:
                if role == "primary" and rs["meta"]["resuid"] == 0 and "resuid" not in meta:
                    rs["meta"]["resuid"] = int.from_bytes(os.urandom(8), "big") or 1
                rs["role"] = role
            if connected is not None:
                rs["connected"] = bool(connected)
            if status is not None:
                rs["status"] = status or None
            if dirty_extents is not None:
                rs["dirty_extents"] = int(dirty_extents)
            for key, value, keys in (("stats", stats, STAT_KEYS), ("errors", errors, ERROR_KEYS),
                                     ("queues", queues, QUEUE_KEYS)):
                if value:
                    if set(value) - set(keys):
                        raise SimError(f"{key}: unknown keys {sorted(set(value) - set(keys))}")
                    rs[key].update(value)
            rs["meta"].update(meta)
            self.store.reconcile(st, res)

    def set_role(self, res: str, role: str) -> str:
        """Change the role as `hastctl role` would (the `role` hook fires), without
        recording a hastctl call. Returns the old role."""
        if role not in ROLES:
            raise SimError(f"bad role {role!r}")
        with self.store.locked() as st:
            self._check(st, res)
            if not self.store.hastd_up(st):
                raise SimError(f"{self.name}: hastd is not running")
            return self.store.change_role(st, res, role)

    def set_exec(self, path: str | None, res: str | None = None) -> None:
        """Set the `exec` of hast.conf, globally or for one resource."""
        with self.store.locked() as st:
            if res is None:
                st["config"]["exec"] = path
            else:
                self._check(st, res)
                st["config"]["resources"][res]["exec"] = path

    # failure injection -------------------------------------------------------------

    def hang(self, command: str, seconds: float) -> None:
        """Make `hastctl COMMAND` ("*" for all) sleep this long before answering."""
        self._fault("hang", command, seconds)

    def garbage(self, command: str, text: str) -> None:
        """Make `hastctl COMMAND` print this text instead of its output, exit 0."""
        self._fault("garbage", command, text)

    def fail_create(self, res: str = "*", error: str = "Input/output error") -> None:
        """Make `hastctl create RES` fail to open the provider with this strerror."""
        self._fault("create", res, error)

    def fail_role(self, res: str, error: int | str = 1) -> None:
        """Make `hastctl role ... RES` fail.

        An int is an error hastd returns for the resource (the role stays);
        "worker-exit" lets a change to primary succeed and then the worker exits for
        good, so hastd puts the role back to init (no hook runs for that).
        """
        self._fault("role", res, error)

    def clear_faults(self) -> None:
        with self.store.locked() as st:
            st["faults"] = {"hang": {}, "garbage": {}, "create": {}, "role": {}}

    def _fault(self, kind: str, key: str, value: Any) -> None:
        with self.store.locked() as st:
            if value is None:
                st["faults"][kind].pop(key, None)
            else:
                st["faults"][kind][key] = value

    # hastd -------------------------------------------------------------------------

    @property
    def hastd_running(self) -> bool:
        st = self._read()
        return self.store.hastd_up(st)

    def start_hastd(self) -> int:
        """Start the stand-in main hastd (title /sbin/hastd) and write the pid file.

        Every resource starts in role init, as hastd does. Hooks get this process's
        environment, with the node's bin directory (its `hastctl` and `pgrep`) first
        in PATH and HASTHOOK_SIM_NODE set, then the node's env overrides on top.
        """
        with self.store.locked() as st:
            if self.store.hastd_up(st):
                return int(st["hastd"]["pid"])
            pid = self.store.spawn_sleeper("/sbin/hastd")
            env = {**os.environ, "HASTHOOK_SIM_NODE": str(self.root),
                   "PATH": f"{self.store.bin_dir}:{os.environ.get('PATH', '/bin:/usr/bin')}",
                   **self.env}
            st["hastd"].update(running=True, pid=pid, down_error="", env=env)
            self.pidfile.write_text(f"{pid}\n")
            self.store.log("[INFO] Started successfully, running protocol version 2.")
            return pid

    def stop_hastd(self, clean: bool = False) -> None:
        """Stop hastd: workers end, /dev/hast nodes vanish, roles reset to init.

        hastctl then fails with "Connection refused" (the socket file is left, as
        after a crash); with clean=True hastd removed its socket, so the error is
        "No such file or directory". The pid file stays, as FreeBSD's does.
        """
        with self.store.locked() as st:
            if self.store.hastd_up(st):
                self.store.log("[INFO] Termination signal received, exiting.")
            self.store.stop_all(st)
            if st["hastd"]["pid"]:
                stop_pid(st["hastd"]["pid"], "/sbin/hastd")
            st["hastd"].update(
                running=False,
                down_error="No such file or directory" if clean else "Connection refused")

    # processes ---------------------------------------------------------------------

    def spawn_lingering_worker(self, res: str, role: str = "secondary") -> int:
        """Start a process titled `hastd: RES (ROLE)` that hastd does not track and that
        does not go away on role changes (a stuck worker). close() ends it."""
        title = worker_title(res, role)
        with self.store.locked() as st:
            pid = self.store.spawn_sleeper(title)
            st["lingering"].append({"pid": pid, "title": title})
        return pid

    def processes(self) -> dict[int, str]:
        """This node's live stand-in processes (hastd, workers, lingerers): pid -> title."""
        st = self._read()
        cand = [(st["hastd"]["pid"], "/sbin/hastd")]
        cand += [(rs["workerpid"], worker_title(name, rs["workerrole"] or ""))
                 for name, rs in st["resources"].items()]
        cand += [(p["pid"], p["title"]) for p in st["lingering"]]
        return {pid: title for pid, title in cand
                if pid and alive(pid) and cmdline(pid) in (None, [title])}

    def stop_lingering_workers(self) -> None:
        with self.store.locked() as st:
            for p in st["lingering"]:
                stop_pid(p["pid"], p["title"])
            st["lingering"] = []

    # hooks -------------------------------------------------------------------------

    def fire(self, *words: str) -> int | None:
        """Run the exec program for an event as hastd does (not waited for here).

        Returns the hook's sequence number (None when no exec is configured).
        """
        if not words:
            raise SimError("fire() needs the event words")
        with self.store.locked() as st:
            return self.store.fire(st, [str(w) for w in words])

    def hooks(self) -> list[dict[str, Any]]:
        """Hook runs in firing order: words, pid, state (pending/running/done), exitcode,
        signal."""
        keep = ("seq", "path", "words", "pid", "state", "exitcode", "signal", "comm")
        return [{k: r.get(k) for k in keep} for r in self.store.hook_records()]

    def wait_hooks(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until every hook fired so far has been reaped; returns hooks()."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.hooks()
            pending = [r for r in runs if r["state"] != "done"]
            if not pending:
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: hooks still running: "
                                   f"{[r['comm'] for r in pending]}")
            time.sleep(0.01)

    def events(self) -> list[list[str]]:
        """Every event hastd fired on this node (exec set or not), in order."""
        return [e["words"] for e in self.store.jsonl(self.store.events_file)]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    # hastctl -----------------------------------------------------------------------

    def calls(self) -> list[list[str]]:
        """The argv (without the program) of every hastctl call, in order."""
        return [c["argv"] for c in self.store.jsonl(self.store.calls_file)]

    def clear_calls(self) -> None:
        with open(self.store.calls_file, "w"):
            pass

    def run(self, *args: str, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run this node's hastctl wrapper (the call is recorded like any other)."""
        return subprocess.run([self.hastctl_path, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})},
                              stdin=subprocess.DEVNULL)

    # teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """End every process this node started: hooks, workers, hastd, lingerers."""
        for r in self.store.hook_records():
            if r.get("state") == "running" and r.get("pid"):
                stop_pid(r["pid"], sig=signal.SIGKILL)  # still unreaped: still the hook
        with contextlib.suppress(TimeoutError):
            self.wait_hooks(timeout=5.0)
        with self.store.locked() as st:
            for name, rs in st["resources"].items():
                if rs["workerpid"]:
                    stop_pid(rs["workerpid"], worker_title(name, rs["workerrole"] or ""))
                    rs.update(workerpid=0, workerrole=None)
            for p in st["lingering"]:
                stop_pid(p["pid"], p["title"])
            st["lingering"] = []
            if st["hastd"]["pid"]:
                stop_pid(st["hastd"]["pid"], "/sbin/hastd")
            st["hastd"]["running"] = False
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None
        reap_children()


class SimCluster:
    """Two nodes (host1, host2) sharing resources, each one's remoteaddr the other's.

    Scenario methods change both nodes and fire the events hastd fires on each, in
    order. Roles changed behind the cluster's back (a tool calling hastctl) are taken
    into account by settle(), which every scenario method calls first.
    """

    def __init__(self, root: str | os.PathLike[str],
                 resources: Iterable[ResourceSpec | Mapping[str, Any]],
                 exec: str | None = None, env: Mapping[str, str] | None = None, *,
                 names: tuple[str, str] = ("host1", "host2"),
                 addresses: tuple[str, str] = ("192.168.1.129", "192.168.1.130"),
                 report_interval: float = 60.0):
        root = Path(root)
        specs = [ResourceSpec.of(r) for r in resources]
        self.addresses = dict(zip(names, addresses, strict=True))
        self.nodes: dict[str, SimNode] = {}
        for i, name in enumerate(names):
            peer = addresses[1 - i]
            self.nodes[name] = SimNode(root / name, name,
                                       [replace(s, remoteaddr=peer) for s in specs],
                                       exec, env, report_interval=report_interval)
        self.host1, self.host2 = (self.nodes[n] for n in names)
        self.resources = [s.name for s in specs]
        self.link_up = True
        # res -> the secondary's metadata generation when the split-brain began
        self._split: dict[str, int] = {}

    def __enter__(self) -> SimCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node(self, which: SimNode | str) -> SimNode:
        return which if isinstance(which, SimNode) else self.nodes[which]

    def peer(self, which: SimNode | str) -> SimNode:
        node = self.node(which)
        return self.host2 if node is self.host1 else self.host1

    def primary(self, res: str) -> SimNode | None:
        found = [n for n in self.nodes.values() if n.role(res) == "primary"]
        return found[0] if len(found) == 1 else None

    def _pair(self, res: str) -> tuple[SimNode, SimNode] | None:
        """(primary, secondary) when one node is primary and the other secondary."""
        p = self.primary(res)
        if p is None:
            return None
        s = self.peer(p)
        return (p, s) if s.role(res) == "secondary" else None

    def _fire(self, node: SimNode, *words: str) -> None:
        if node.hastd_running:
            node.fire(*words)

    # set-up --------------------------------------------------------------------------

    def steady(self, primary: SimNode | str = "host1",
               resources: Iterable[str] | None = None) -> None:
        """Quietly put resources in the usual state: primary here, secondary there,
        connected, in sync. No hook runs (set-up, not a scenario)."""
        p = self.node(primary)
        for res in resources or self.resources:
            self.peer(p).set_state(res, role="secondary", connected=True)
            p.set_state(res, role="primary", connected=True, dirty_extents=0)
            rs = p.state(res)["meta"]
            self.peer(p).set_state(res, resuid=rs["resuid"], prevrole="secondary")

    def settle(self, res: str | None = None) -> None:
        """Apply what a connection loss follows from: a node whose peer's worker went
        away (role changed by hastctl) loses its connection and fires disconnect (and
        syncintr when a sync was running)."""
        for name in [res] if res else self.resources:
            states = {n: n.state(name) for n in self.nodes.values()}
            for node, rs in states.items():
                other = states[self.peer(node)]
                if rs["connected"] and not other["connected"]:
                    self._drop(node, name, rs)

    def _drop(self, node: SimNode, res: str, rs: dict[str, Any]) -> None:
        syncing = rs["syncing"] and rs["role"] == "primary"
        node.set_state(res, connected=False)
        with node.store.locked() as st:
            st["resources"][res]["syncing"] = False
        self._fire(node, "disconnect", res)
        if syncing:
            self._fire(node, "syncintr", res)

    # scenarios -----------------------------------------------------------------------

    def connect(self, res: str) -> bool:
        """The primary's connection to the secondary is established.

        Fires connect on the primary, then on the secondary (whose worker starts), then
        syncstart on the primary when it has dirty extents. A secondary that was
        recreated (resuid 0) gets the primary's resuid and a full synchronization.
        During an unresolved split-brain the attempt fires split-brain on both nodes
        instead and nothing connects (returns False).
        """
        self.settle(res)
        if not self.link_up:
            raise SimError("the link is down")
        pair = self._pair(res)
        if pair is None:
            raise SimError(f"{res}: needs a primary and a secondary to connect")
        p, s = pair
        if res in self._split:
            if not self._split_resolved(res, s):
                self._split_round(res, p, s)
                return False
            del self._split[res]
        pmeta, smeta = p.state(res)["meta"], s.state(res)["meta"]
        if smeta["resuid"] == 0:  # initial synchronization of a fresh secondary
            p.set_state(res, dirty_extents=nextents(pmeta))
        s.set_state(res, connected=True, resuid=pmeta["resuid"], prevrole="secondary")
        p.set_state(res, connected=True)
        self._fire(p, "connect", res)
        self._fire(s, "connect", res)
        if p.state(res)["dirty_extents"] > 0:
            self._start_sync(p, res)
        return True

    def _start_sync(self, p: SimNode, res: str) -> None:
        with p.store.locked() as st:
            st["resources"][res]["syncing"] = True
        self._fire(p, "syncstart", res)

    def disconnect(self, res: str) -> bool:
        """The connection for res is lost: disconnect on the primary and the secondary
        (whose worker exits), then syncintr on the primary if it was synchronizing.
        Returns False when it was not connected."""
        self.settle(res)
        pair = self._pair(res)
        if pair is None or not pair[0].state(res)["connected"]:
            return False
        p, s = pair
        syncing = p.state(res)["syncing"]
        p.set_state(res, connected=False)
        s.set_state(res, connected=False)
        with p.store.locked() as st:
            st["resources"][res]["syncing"] = False
        self._fire(p, "disconnect", res)
        self._fire(s, "disconnect", res)
        if syncing:
            self._fire(p, "syncintr", res)
        return True

    def link_loss(self, dirty_extents: int = 1) -> None:
        """The cable is pulled: every connected resource disconnects at once.

        The primary keeps writing, so each primary ends with at least dirty_extents
        dirty extents, which the reconnection then synchronizes (0: an idle primary).
        """
        self.settle()
        self.link_up = False
        for res in self.resources:
            pair = self._pair(res)
            if self.disconnect(res) and pair:
                p = pair[0]
                p.set_state(res, dirty_extents=max(p.state(res)["dirty_extents"],
                                                   dirty_extents))

    def link_return(self) -> None:
        """The link is back: every primary/secondary pair connects (and syncs)."""
        self.link_up = True
        self.settle()
        for res in self.resources:
            pair = self._pair(res)
            if pair and not pair[0].state(res)["connected"]:
                self.connect(res)

    def sync(self, res: str, dirty_extents: int) -> None:
        """The primary has dirty extents; if connected, synchronization starts now."""
        self.settle(res)
        p = self.primary(res)
        if p is None:
            raise SimError(f"{res}: no primary")
        p.set_state(res, dirty_extents=dirty_extents)
        rs = p.state(res)
        if rs["connected"] and dirty_extents > 0 and not rs["syncing"]:
            self._start_sync(p, res)

    def sync_done(self, res: str) -> None:
        """Synchronization completed: dirty 0, syncdone on the primary."""
        self.settle(res)
        p = self.primary(res)
        if p is None:
            raise SimError(f"{res}: no primary")
        syncing = p.state(res)["syncing"]
        p.set_state(res, dirty_extents=0)
        with p.store.locked() as st:
            st["resources"][res]["syncing"] = False
        if syncing:
            self._fire(p, "syncdone", res)

    def switch(self, res: str, new_primary: SimNode | str, connect: bool = True) -> None:
        """Switch-over the safe way: both secondary first, then one primary.

        The role hooks fire from the role changes themselves; the old primary's worker
        ends, so its peer fires disconnect. With the link up the new primary then
        connects (connect on both, syncstart if it has dirty extents).
        """
        self.settle(res)
        new = self.node(new_primary)
        old = self.peer(new)
        for node in (old, new):
            if node.role(res) != "secondary":
                node.set_role(res, "secondary")
                self.settle(res)
        new.set_role(res, "primary")
        if connect and self.link_up:
            self.connect(res)

    def split_brain(self, res: str, repeats: int = 3, interval: float = RETRY_SLEEP,
                    reconnect: bool = True) -> SplitBrainResult:
        """Both nodes wrote independently: every reconnection attempt of the primary
        (one per interval) meets the split-brain, and both nodes fire `split-brain`
        (the secondary first, its worker exits at once). While the secondary is not in
        role secondary an attempt fires nothing. Attempts stop, resolved, once the
        secondary has been recreated (`hastctl create`) and set back to secondary; the
        attempt after the last repeat only checks for that. If resolved and reconnect,
        the nodes then connect (full synchronization). Unresolved, the split-brain
        stays: later connect() calls meet it again.
        """
        self.settle(res)
        p = self.primary(res)
        if p is None:
            raise SimError(f"{res}: split-brain needs a primary")
        s = self.peer(p)
        if p.state(res)["connected"]:
            self.disconnect(res)
        self._split.setdefault(res, s.state(res)["meta"]["generation"])
        result = SplitBrainResult(rounds=0, resolved=False)
        for attempt in range(repeats + 1):
            if attempt:
                time.sleep(interval)  # simulated time between attempts (RETRY_SLEEP)
            if p.role(res) != "primary":
                break
            if self._split_resolved(res, s):
                result.resolved = True
                del self._split[res]
                if reconnect and self.link_up:
                    self.connect(res)
                break
            if attempt < repeats and self._split_round(res, p, s):
                result.rounds += 1
                result.events += [(s.name, ["split-brain", res]), (p.name, ["split-brain", res])]
        return result

    def _split_resolved(self, res: str, s: SimNode) -> bool:
        srs = s.state(res)
        return srs["role"] == "secondary" and srs["meta"]["generation"] != self._split[res]

    def _split_round(self, res: str, p: SimNode, s: SimNode) -> bool:
        """One attempt meeting the split-brain; False when nothing could be attempted."""
        if s.role(res) != "secondary" or not self.link_up:
            return False
        self._fire(s, "split-brain", res)
        self._fire(p, "split-brain", res)
        return True

    def wait_hooks(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            node.wait_hooks(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll predicate() until it returns something truthy; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def is_alive(pid: int) -> bool:
    """True while the process runs (zombies count as gone)."""
    return alive(pid)
