"""Test driver for simulated HAST nodes: state set-up, hastd's events, failure injection.

A SimNode is one host: a directory holding its state, a `hastctl` wrapper to point tools
at, a hast.conf, a hastd pid file and stand-in processes whose titles match hastd's. A
SimCluster pairs two nodes and plays the scenarios hastd goes through, firing on each
node the events hastd would fire, in order. Hooks run the way hastd runs them (see
reaper.py) and are waited for by polling.

What it follows (FreeBSD 12.1's sbin/hastd):
- A connection attempt (SimCluster.attempt) is primary.c init_remote() against the
  peer's listen_accept() and secondary.c init_remote(): a brand-new pair gets its
  resource ID then and has nothing to copy ("Nodes are in sync.", no syncstart); a
  secondary re-created by `hastctl create` takes the primary's ID and a full copy.
  A resource-ID mismatch, a peer in role init or primary, a peer that does not know
  this node fire nothing; different sizes fire only the secondary's connect and
  disconnect (it reports connect before the primary compares the sizes); the
  resource counters (localcnt/remotecnt) decide split-brain, which ends once either
  side is re-created. The primary retries every 10 s (retry(), split_brain()).
- Simulated time: SimCluster.now, moved by advance(). Nothing sleeps for it: a
  secondary notices a lost link 20 s after it went (SECONDARY_TIMEOUT), a busy primary
  at once, an idle one later still (IDLE_PRIMARY_NOTICE). Events carry the simulated
  time (timeline()).
- Unpaired connects: a primary worker that dies is restarted and connects again with
  no disconnect (kill_worker); a secondary worker killed by a role change or by a new
  incoming connection reports no disconnect.
- A reload (SimNode.reload, SimCluster.reload) reads the node's hast.conf: a removed
  resource fires `role R OLD init`, a changed init/secondary one `role R X init` then
  `role R init X` (the first with the old exec, the second with the new), a primary
  whose remote or source address changed `disconnect`.

Failure injection for tools that watch hastd: SimNode.hang/garbage (hastctl output),
fail_create/fail_role/fail_dump/fail_status (hastctl errors, exit 66/N/255/70),
stop_hastd (exit 71), local_errors and write (counters rising; a file-backed provider
with metaflush on counts a flush error per activemap update), SimCluster.sync without
sync_progress/sync_done (a sync that does not progress), a resource left in init
(start_hastd() starts every resource there; a reload adds new ones there), edit_conf (a
hast.conf that says one thing, e.g. another exec, while hastd runs another until
reload()).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hasthook
from hasthook.hastconf import HastConfError
from hasthook.sim import conf
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
    worker_gone,
    worker_title,
)
from hasthook.units import humanize

__all__ = ["ResourceSpec", "SimCluster", "SimError", "SimNode", "SplitBrainResult", "is_alive",
           "wait_for"]

RETRY_SLEEP = 10.0  # HAST_KEEPALIVE: the primary's guard thread retries this often
SECONDARY_TIMEOUT = 20.0  # 2 * HAST_KEEPALIVE: the secondary's receive timeout
# An idle primary notices a dead link only when a keepalive send fails or a reply times
# out (TCP gives up); this simulated delay stands for that.
IDLE_PRIMARY_NOTICE = 60.0
WORKER_RESTART = 1.0  # hastd.c child_exit(): sleep(1) before restarting a primary worker
EX_TEMPFAIL = 75
EAGAIN = 35  # FreeBSD errno: a worker that did not answer in time
_META_KEYS = ("datasize", "extentsize", "keepdirty", "localoff", "resuid", "localcnt",
              "remotecnt", "prevrole")


@dataclass(frozen=True)
class ResourceSpec:
    """One `resource` section of hast.conf as this node sees it.

    extentsize and keepdirty are the values in the resource's metadata (set by
    `hastctl create`); mediasize is the size of the local component. checksum,
    compression, timeout and metaflush are hast.conf's (hastctl never prints them, a
    reload compares them). A localpath that is a regular file on this machine is a
    file-backed provider.
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
    checksum: str = "none"
    compression: str = "hole"
    timeout: int = 20
    metaflush: bool = True

    @classmethod
    def of(cls, value: ResourceSpec | Mapping[str, Any]) -> ResourceSpec:
        return value if isinstance(value, ResourceSpec) else cls(**dict(value))

    def as_config(self) -> dict[str, Any]:
        d = asdict(self)
        d["provname"] = self.provname or self.name
        return d


@dataclass
class SplitBrainResult:
    """What split_brain() did: attempts that met the split-brain, and how it ended.

    resolved: the storm stopped because a side was re-created; outcome: the last
    attempt's (see SimCluster.attempt), "resuid-mismatch" when the primary was the one.
    """

    rounds: int
    resolved: bool
    events: list[tuple[str, list[str]]] = field(default_factory=list)
    outcome: str | None = None


class SimNode:
    """One simulated host running hastd, driven from tests.

    root: the node's directory (created); resources: ResourceSpec or dicts of its
    fields; exec: hast.conf's global `exec` (None: no hooks); env: variables added to
    the hooks' environment; report_interval: seconds between "Hook is running"
    reports (hastd: 60); start: start hastd now (resources in role init); peer and
    address: the other host's name and this host's address, for hast.conf's `on`
    sections (SimCluster sets them); argv0: "path" (FreeBSD 11 and later: a hook's
    argv[0] is hast.conf's exec path) or "basename" (FreeBSD 10).
    Nothing here sleeps to synchronise: waits poll a condition with a deadline.
    """

    def __init__(self, root: str | os.PathLike[str], name: str = "host1",
                 resources: Iterable[ResourceSpec | Mapping[str, Any]] = (),
                 exec: str | None = None, env: Mapping[str, str] | None = None, *,
                 report_interval: float = 60.0, start: bool = True,
                 peer: str | None = None, address: str | None = None,
                 argv0: str = "path"):
        if argv0 not in ("path", "basename"):
            raise SimError(f"argv0 must be 'path' or 'basename', not {argv0!r}")
        self.name = name
        self.env = dict(env or {})
        self.store = NodeStore(root)
        self.root = self.store.path
        specs = [ResourceSpec.of(r) for r in resources]
        if len({s.name for s in specs}) != len(specs):
            raise SimError("duplicate resource names")
        config: dict[str, Any] = {
            "name": name, "exec": exec, "report_interval": report_interval,
            "peer": peer, "address": address, "argv0": argv0,
            "pidfile": str(self.store.pidfile),
            "order": [s.name for s in specs],
            "resources": {s.name: s.as_config() for s in specs},
        }
        state = {
            "config": config, "seq": 0, "lingering": [], "clock": 0.0, "wseq": 0,
            "hastd": {"running": False, "pid": 0, "env": {}, "down_error": ""},
            "faults": _no_faults(),
            "resources": {s.name: new_resource(config["resources"][s.name]) for s in specs},
        }
        self.store.create(state)
        self.hast_conf.write_text(conf.render(config))
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
    def hast_conf(self) -> Path:
        """This node's hast.conf (settings.hast_conf for `hasthook watch` and the metrics).

        Written at creation and by set_exec() and edit_conf(); hastd reads it on reload().
        """
        return self.root / "hast.conf"

    @property
    def now(self) -> float:
        """Simulated seconds (SimCluster.advance moves them); events record them."""
        return float(self._read().get("clock", 0.0))

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
        """The resource's dynamic state (role, connected, workerpid, dirty_extents, meta
        (the worker's view), disk_meta (a create's, not yet read), data...)."""
        st = self._read()
        return self._check(st, res)

    def data(self, res: str) -> str | None:
        """Whose writes this node's copy holds, e.g. "host1:3" (None: never written)."""
        return self.state(res)["data"]

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

        Workers and /dev/hast nodes follow the role; no resource ID is given (a primary
        gets one at its first connection: pass resuid for a pair already in use, or use
        SimCluster.steady). status overrides what `list` says
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
                rs["role"] = role
            if connected is not None:
                rs["connected"] = bool(connected)
            if status is not None:
                rs["status"] = status or None
            rs["meta"].update(meta)
            self.store.reconcile(st, res)  # a new worker starts its counters at zero
            if dirty_extents is not None:
                rs["dirty_extents"] = int(dirty_extents)
            for key, value, keys in (("stats", stats, STAT_KEYS), ("errors", errors, ERROR_KEYS),
                                     ("queues", queues, QUEUE_KEYS)):
                if value:
                    if set(value) - set(keys):
                        raise SimError(f"{key}: unknown keys {sorted(set(value) - set(keys))}")
                    rs[key].update(value)

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
        """Set the `exec` of hast.conf, globally or for one resource, as set-up: the
        running hastd uses it at once (no reload, no hook) and hast.conf is rewritten
        from the running config."""
        with self.store.locked() as st:
            if res is None:
                st["config"]["exec"] = path
            else:
                self._check(st, res)
                st["config"]["resources"][res]["exec"] = path
            self.hast_conf.write_text(conf.render(st["config"]))

    def set_env(self, env: Mapping[str, str | None]) -> None:
        """Add (None: remove) variables of the hooks' environment, as set-up: the running
        hastd passes them from its next hook on, no restart, no hook. A real host sets
        them in rc.conf's hastd_env and restarts hastd."""
        def update(target: dict[str, str]) -> None:
            for key, value in env.items():
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value

        update(self.env)
        with self.store.locked() as st:
            if st["hastd"]["running"]:
                update(st["hastd"]["env"])

    # hast.conf and reload ------------------------------------------------------------

    def edit_conf(self, res: str | None = None, *, drop: bool = False,
                  **settings: Any) -> None:
        """Edit hast.conf as an admin would; the running hastd sees it on reload().

        res None: the global section (exec=...). Otherwise the resource's section, with
        ResourceSpec fields as hast.conf holds them (localpath, remoteaddr, sourceaddr,
        provname, replication, checksum, compression, timeout, exec, metaflush); a
        resource not in the file is added (localpath needed); drop removes it.
        """
        with self.store.locked(write=False) as st:
            config = st["config"]
        try:
            cur = conf.read(self.hast_conf.read_text(), config)
        except (OSError, HastConfError) as e:
            raise SimError(f"{self.name}: cannot edit {self.hast_conf}: {e}") from None
        bad = set(settings) - set(conf.FILE_FIELDS)
        if bad:
            raise SimError(f"not hast.conf settings: {sorted(bad)}")
        if res is None:
            if drop or set(settings) - {"exec"}:
                raise SimError("the global section takes exec only")
            cur["exec"] = settings.get("exec")
        elif drop:
            if res not in cur["resources"]:
                raise SimError(f"{self.name}: no resource {res!r} in hast.conf")
            cur["order"].remove(res)
            del cur["resources"][res]
        elif res in cur["resources"]:
            cur["resources"][res].update(settings)
        else:
            if "localpath" not in settings:
                raise SimError(f"{res}: a new resource needs a localpath")
            cur["resources"][res] = ResourceSpec(name=res, **settings).as_config()
            cur["order"].append(res)
        self.hast_conf.write_text(conf.render({**config, **cur}))

    def reload(self) -> dict[str, str]:
        """SIGHUP: hastd re-reads hast.conf and applies it (hastd.c hastd_reload()).

        Returns what happened to each resource: "removed" (`role R OLD init` unless it
        was init), "added" (role init, no hook), "restarted" (an init or secondary
        resource whose settings changed, or any whose local path or provider name did:
        `role R X init` with the old exec, `role R init X` with the new one; a
        secondary's worker is stopped and reports no disconnect) or "reloaded" (a
        primary: the worker takes the new settings; a changed remote or source address
        closes its connection: `disconnect`, and `syncintr` if it was synchronizing).
        A file that does not parse changes nothing ("Configuration not reloaded.").
        """
        with self.store.locked() as st:
            if not self.store.hastd_up(st):
                raise SimError(f"{self.name}: hastd is not running")
            return self._reload(st)

    def _reload(self, st: dict[str, Any]) -> dict[str, str]:
        log, store, cfg = self.store.log, self.store, st["config"]
        log("[INFO] Reloading configuration...")
        try:
            new = conf.read(self.hast_conf.read_text(), cfg)
        except (OSError, HastConfError) as e:
            log(f"[ERROR] {e}")
            log("[WARNING] Configuration not reloaded.")
            return {}
        done: dict[str, str] = {}
        old_exec = {n: cfg["resources"][n].get("exec") or cfg.get("exec") or ""
                    for n in cfg["order"]}
        for name in [n for n in cfg["order"] if n not in new["resources"]]:
            store.change_role(st, name, "init", exec_path=old_exec[name])
            cfg["order"].remove(name)
            del cfg["resources"][name], st["resources"][name]
            log(f"[INFO] Resource {name} removed.")
            done[name] = "removed"
        for name in [n for n in new["order"] if n not in cfg["resources"]]:
            cfg["order"].append(name)
            cfg["resources"][name] = new["resources"][name]
            st["resources"][name] = new_resource(new["resources"][name])
            log(f"[INFO] Resource {name} added.")
            done[name] = "added"
        cfg["exec"] = new["exec"]
        for name in list(cfg["order"]):
            if name in done:
                continue
            old, nspec, rs = cfg["resources"][name], new["resources"][name], st["resources"][name]
            changed = {k for k in conf.FILE_FIELDS if old.get(k) != nspec.get(k)}
            if (old.get("exec") or None) == (nspec.get("exec") or None) and \
                    old_exec[name] != (nspec.get("exec") or new["exec"] or ""):
                changed.add("exec")  # the global exec it inherits changed
            if not changed:
                continue
            role = rs["role"]
            if changed & set(conf.RESTART_ALWAYS) or role != "primary":
                log(f"[INFO] Resource {name} configuration was modified, restarting it.")
                store.change_role(st, name, "init", exec_path=old_exec[name])
                cfg["resources"][name] = nspec
                cfg["order"].remove(name)  # hastd puts the new resource at the tail
                cfg["order"].append(name)
                store.change_role(st, name, role)
                done[name] = "restarted"
            else:
                log(f"[INFO] Resource {name} configuration was modified, reloading it.")
                prefix = f"[{name}] (primary) "
                log(f"[INFO] {prefix}Reloading configuration...")
                if changed & {"remoteaddr", "sourceaddr"} and rs["connected"]:
                    _lose(store, st, name, f"Disconnected from {old['remoteaddr']}.")
                cfg["resources"][name] = nspec
                log(f"[INFO] {prefix}Configuration reloaded successfully.")
                done[name] = "reloaded"
        log("[INFO] Configuration reloaded successfully.")
        return done

    # failure injection -------------------------------------------------------------

    def hang(self, command: str, seconds: float) -> None:
        """Make `hastctl COMMAND` ("*" for all) sleep this long before answering."""
        self._fault("hang", command, seconds)

    def hold(self, command: str) -> None:
        """Make the next `hastctl COMMAND` wait, once it has started, until let_go():
        a hook that is slow at a chosen moment, for tests of what runs meanwhile."""
        self._fault("hold", command, "armed")

    def holding(self, command: str) -> bool:
        """True while a `hastctl COMMAND` waits on hold()."""
        return self.store.read()["faults"]["hold"].get(command) == "holding"

    def let_go(self, command: str) -> None:
        """End hold(COMMAND): a call waiting on it goes on."""
        self._fault("hold", command, None)

    def garbage(self, command: str, text: str) -> None:
        """Make `hastctl COMMAND` print this text instead of its output, exit 0."""
        self._fault("garbage", command, text)

    def fail_create(self, res: str = "*", error: str = "Input/output error") -> None:
        """Make `hastctl create RES` fail to open the provider with this strerror."""
        self._fault("create", res, error)

    def fail_dump(self, res: str = "*", error: str = "Input/output error") -> None:
        """Make `hastctl dump RES` fail to read the metadata: `[ERROR] Unable to open
        LOCALPATH: ERROR.` (no [NAME] prefix), exit 255; other resources still print."""
        self._fault("dump", res, error)

    def fail_status(self, res: str = "*", error: int = EAGAIN) -> None:
        """Make the worker of RES unable to answer hastd's status query: `hastctl list`
        and `status` naming it (or all) print nothing, `[ERROR] Error N received from
        hastd.` on stderr, exit 70. A resource without a worker is not asked."""
        self._fault("status", res, error)

    def fail_role(self, res: str, error: int | str = 1) -> None:
        """Make `hastctl role ... RES` fail.

        An int is an error hastd returns for the resource (the role stays);
        "worker-exit" lets a change to primary succeed and then the worker exits for
        good, so hastd puts the role back to init (no hook runs for that).
        """
        self._fault("role", res, error)

    def promote_after(self, call: str, res: str, nth: int = 1) -> None:
        """When the nth `hastctl CALL` (its words after `hastctl`, e.g. "create r1") has
        answered, RES turns primary, as CARP through devd or an admin would promote it
        (its role hook fires): what a recovery must notice between its own calls."""
        self._fault("promote", call, {"res": res, "skip": nth - 1})

    def clear_faults(self) -> None:
        with self.store.locked() as st:
            st["faults"] = _no_faults()

    def _fault(self, kind: str, key: str, value: Any) -> None:
        with self.store.locked() as st:
            if value is None:
                st["faults"][kind].pop(key, None)
            else:
                st["faults"][kind][key] = value

    def local_errors(self, res: str, *, read: int = 0, write: int = 0, delete: int = 0,
                     flush: int = 0) -> dict[str, int]:
        """The local component fails requests: the running worker's error counters rise
        by these (`local errors:` in `hastctl list`). Returns the new counters."""
        with self.store.locked() as st:
            rs = self._check(st, res)
            if not rs["workerpid"]:
                raise SimError(f"{self.name}: {res} has no worker to count errors")
            for key, n in (("read", read), ("write", write), ("delete", delete),
                           ("flush", flush)):
                rs["errors"][key] += n
            return dict(rs["errors"])

    def write(self, res: str, extents: int = 1) -> None:
        """The primary's application writes to `extents` extents not written before.

        Statistics and activemap updates rise; while the peer is not connected the
        extents stay dirty and the first write bumps localcnt (primary.c
        write_complete()). On a file-backed provider (localpath a regular file) with
        metaflush on, every activemap update fails to flush the disk cache (ENOTTY):
        logged, and the `flush` error counter grows; it is no dying disk.
        """
        with self.store.locked() as st:
            rs = self._check(st, res)
            if rs["role"] != "primary" or not rs["workerpid"]:
                raise SimError(f"{self.name}: {res} is not a running primary")
            _write(self.store, st, res, extents)
    # hastd -------------------------------------------------------------------------

    @property
    def hastd_running(self) -> bool:
        st = self._read()
        return self.store.hastd_up(st)

    def start_hastd(self) -> int:
        """Start the stand-in main hastd (title /sbin/hastd) and write the pid file.
        It reads hast.conf: what edit_conf() changed takes effect, with no hook.

        Every resource starts in role init, as hastd does. Hooks get this process's
        environment, with the node's bin directory (its `hastctl` and `pgrep`) first
        in PATH and HASTHOOK_SIM_NODE set, then the node's env overrides on top.
        """
        with self.store.locked() as st:
            if self.store.hastd_up(st):
                return int(st["hastd"]["pid"])
            self._read_conf_at_start(st)
            pid = self.store.spawn_sleeper("/sbin/hastd")
            env = {**os.environ, "HASTHOOK_SIM_NODE": str(self.root),
                   "PATH": f"{self.store.bin_dir}:{os.environ.get('PATH', '/bin:/usr/bin')}",
                   **self.env}
            st["hastd"].update(running=True, pid=pid, down_error="", env=env)
            self.pidfile.write_text(f"{pid}\n")
            self.store.log("[INFO] Started successfully, running protocol version 2.")
            return pid

    def _read_conf_at_start(self, st: dict[str, Any]) -> None:
        cfg = st["config"]
        try:
            new = conf.read(self.hast_conf.read_text(), cfg)
        except (OSError, HastConfError) as e:
            raise SimError(f"{self.name}: hastd cannot start: {e}") from None
        for name in [n for n in cfg["order"] if n not in new["resources"]]:
            del st["resources"][name]
        for name in new["order"]:
            if name not in st["resources"]:
                st["resources"][name] = new_resource(new["resources"][name])
        cfg.update(exec=new["exec"], order=new["order"], resources=new["resources"])

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

    def kill_worker(self, res: str, sig: int = signal.SIGKILL,
                    exitcode: int | None = None) -> str:
        """The resource's worker dies (killed by sig, or exiting with exitcode), as
        hastd.c child_exit() sees it. No hook fires on this node.

        A primary's worker killed by a signal or exiting 75 (EX_TEMPFAIL) is restarted
        a second later with the role unchanged ("restarted": the new worker reads the
        metadata from disk, then connects again); any other exit puts the role back to
        init ("init"). A secondary's is not restarted ("gone"): the primary's next
        connection starts a new one.
        """
        with self.store.locked() as st:
            rs = self._check(st, res)
            pid, role = rs["workerpid"], rs["workerrole"]
            if not pid:
                raise SimError(f"{self.name}: {res} has no worker")
            stop_pid(pid, worker_title(res, role or ""), sig=sig)
            prefix = f"[{res}] ({rs['role']}) "
            if exitcode is None:
                self.store.log(f"[ERROR] {prefix}Worker process killed (pid={pid}, "
                               f"signal={sig}).")
            else:
                self.store.log(f"[ERROR] {prefix}Worker process exited ungracefully "
                               f"(pid={pid}, exitcode={exitcode}).")
            rs.update(workerpid=0, workerrole=None, connected=False, syncing=False,
                      status=None)
            worker_gone(rs)
            outcome = "gone"
            if role == "primary":
                if exitcode is None or exitcode == EX_TEMPFAIL:
                    self.store.log(f"[INFO] {prefix}Restarting worker process.")
                    outcome = "restarted"
                else:
                    rs["role"] = "init"
                    self.store.log(f"[INFO] {prefix}Changing resource role back to init.")
                    outcome = "init"
            self.store.reconcile(st, res)
            return outcome

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


def _no_faults() -> dict[str, dict[str, Any]]:
    return {"hang": {}, "garbage": {}, "create": {}, "role": {}, "status": {}, "dump": {},
            "promote": {}, "hold": {}}


def _fire(store: NodeStore, st: dict[str, Any], *words: str) -> None:
    if store.hastd_up(st):
        store.fire(st, list(words))


def _is_file(path: str) -> bool:
    return os.path.isfile(path)


def _lose(store: NodeStore, st: dict[str, Any], res: str, why: str) -> None:
    """This end's worker sees its connection gone: the primary's remote_close()
    (disconnect, then syncintr if it was synchronizing), or the secondary's
    secondary_exit() (disconnect; its worker exits)."""
    rs = st["resources"][res]
    syncing = rs["syncing"] and rs["role"] == "primary"
    prefix = f"[{res}] ({rs['role']}) "
    store.log(f"[WARNING] {prefix}{why}" if rs["role"] == "primary"
              else f"[ERROR] {prefix}{why}")
    rs.update(connected=False, syncing=False)
    store.reconcile(st, res)
    _fire(store, st, "disconnect", res)
    if syncing:
        _fire(store, st, "syncintr", res)


def _write_meta(rs: dict[str, Any]) -> None:
    """The worker's metadata_write(): its copy replaces whatever a create put on disk."""
    rs["disk_meta"] = None


def _write(store: NodeStore, st: dict[str, Any], res: str, extents: int) -> None:
    """See SimNode.write()."""
    rs, spec = st["resources"][res], st["config"]["resources"][res]
    meta, prefix = rs["meta"], f"[{res}] (primary) "
    if extents <= 0:
        return
    rs["stats"]["writes"] += extents
    rs["stats"]["activemap updates"] += extents
    st["wseq"] = st.get("wseq", 0) + 1
    rs["data"] = f"{st['config']['name']}:{st['wseq']}"
    if meta["resuid"] == 0 and meta["localcnt"] == 0:
        meta["localcnt"] = 1  # ggate_recv_thread(): "This is first write."
    if not rs["connected"]:
        rs["dirty_extents"] = min(rs["dirty_extents"] + extents, nextents(meta))
        if meta["localcnt"] == rs["peer_counts"][1]:
            meta["localcnt"] += 1
            store.log(f"[DEBUG][1] {prefix}Increasing localcnt to {meta['localcnt']}.")
            _write_meta(rs)
    if spec.get("metaflush", True) and _is_file(spec["localpath"]):
        rs["errors"]["flush"] += extents
        for _ in range(extents):
            store.log(f"[ERROR] {prefix}Unable to flush disk cache on activemap update: "
                      "Inappropriate ioctl for device.")


def _synced(prs: dict[str, Any], srs: dict[str, Any] | None) -> None:
    """sync_thread() found nothing left: the primary takes the counters the secondary
    sent at the handshake and writes its metadata; the copy is now the source's."""
    meta = prs["meta"]
    meta["localcnt"], meta["remotecnt"] = prs["peer_counts"][1], prs["peer_counts"][0]
    _write_meta(prs)
    if srs is not None and prs.get("copying"):
        src, dst = (srs, prs) if prs["syncsrc"] == "secondary" else (prs, srs)
        dst["data"] = src["data"]
    prs["copying"] = False
    prs["syncsrc"] = "primary"


def _split(pm: dict[str, Any], sm: dict[str, Any]) -> bool:
    """secondary.c init_remote(): both wrote since they last agreed."""
    return sm["localcnt"] > pm["remotecnt"] and pm["localcnt"] > sm["remotecnt"]


class SimCluster:
    """Two nodes (host1, host2) sharing resources, each one's remoteaddr the other's.

    Scenario methods change both nodes and fire the events hastd fires on each, in
    order. Roles changed behind the cluster's back (a tool calling hastctl) are taken
    into account by settle(), which every scenario method calls first. `now` is the
    simulated time; waits that hastd would sleep through are advance() calls, never
    real sleeps (split_brain() and retry() may also wait a real `interval` so that
    hooks get to act between attempts).
    """

    def __init__(self, root: str | os.PathLike[str],
                 resources: Iterable[ResourceSpec | Mapping[str, Any]],
                 exec: str | None = None, env: Mapping[str, str] | None = None, *,
                 names: tuple[str, str] = ("host1", "host2"),
                 addresses: tuple[str, str] = ("192.168.1.129", "192.168.1.130"),
                 report_interval: float = 60.0, argv0: str = "path"):
        root = Path(root)
        specs = [ResourceSpec.of(r) for r in resources]
        self.addresses = dict(zip(names, addresses, strict=True))
        self.nodes: dict[str, SimNode] = {}
        for i, name in enumerate(names):
            peer = addresses[1 - i]
            self.nodes[name] = SimNode(root / name, name,
                                       [replace(s, remoteaddr=peer) for s in specs],
                                       exec, env, report_interval=report_interval,
                                       peer=names[1 - i], address=addresses[i], argv0=argv0)
        self.host1, self.host2 = (self.nodes[n] for n in names)
        self.resources = [s.name for s in specs]
        self.link_up = True
        self.now = 0.0
        self._timers: list[tuple[float, int, str, Callable[..., None], tuple[Any, ...]]] = []
        self._tick = itertools.count()
        # (host, res, conn): connection ends whose peer vanished without closing them
        # (a crash): nothing tells them but their own timeout or a new connection.
        self._unseen: set[tuple[str, str, int]] = set()

    def __enter__(self) -> SimCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node(self, which: SimNode | str) -> SimNode:
        return which if isinstance(which, SimNode) else self.nodes[which]

    def peer(self, which: SimNode | str) -> SimNode:
        node = self.node(which)
        return self.host2 if node is self.host1 else self.host1

    @staticmethod
    def _role(node: SimNode, res: str) -> str | None:
        """The node's role for res; None where its hast.conf has no such resource."""
        rs = node._read()["resources"].get(res)
        return rs["role"] if rs else None

    def primary(self, res: str) -> SimNode | None:
        found = [n for n in self.nodes.values() if self._role(n, res) == "primary"]
        return found[0] if len(found) == 1 else None

    def _pair(self, res: str) -> tuple[SimNode, SimNode] | None:
        """(primary, secondary) when one node is primary and the other secondary."""
        p = self.primary(res)
        if p is None:
            return None
        s = self.peer(p)
        return (p, s) if self._role(s, res) == "secondary" else None

    @contextlib.contextmanager
    def _locked(self, p: SimNode, s: SimNode) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Both nodes' state under their locks (always taken in the same order)."""
        first, second = (p, s) if p.name < s.name else (s, p)
        with first.store.locked() as a, second.store.locked() as b:
            yield (a, b) if first is p else (b, a)

    # simulated time ------------------------------------------------------------------

    def _later(self, delay: float, kind: str, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._timers, (self.now + delay, next(self._tick), kind, action, args))

    def _set_clock(self, t: float) -> None:
        self.now = t
        for node in self.nodes.values():
            with node.store.locked() as st:
                st["clock"] = t

    def advance(self, seconds: float | None = None) -> None:
        """Let simulated time pass: what hastd would do meanwhile (a secondary's receive
        timeout, an idle primary noticing a dead link) happens, in time order. None:
        until nothing is pending."""
        target = None if seconds is None else self.now + seconds
        while self._timers and (target is None or self._timers[0][0] <= target):
            due, _, _, action, args = heapq.heappop(self._timers)
            self._set_clock(max(self.now, due))
            action(*args)
        if target is not None and target > self.now:
            self._set_clock(target)

    def timeline(self) -> list[tuple[float, str, list[str]]]:
        """Every event fired on either node: (simulated time, host, words), in order."""
        rows = [(e.get("sim") or 0.0, e["time"], name, e["words"])
                for name, node in self.nodes.items()
                for e in node.store.jsonl(node.store.events_file)]
        return [(sim, name, words) for sim, _, name, words in sorted(rows, key=lambda r: r[:2])]

    # set-up --------------------------------------------------------------------------

    def steady(self, primary: SimNode | str = "host1",
               resources: Iterable[str] | None = None) -> None:
        """Quietly put resources in the usual state: primary here, secondary there,
        connected, in sync, one resource ID on both. No hook runs (set-up, not a
        scenario)."""
        p = self.node(primary)
        s = self.peer(p)
        for res in resources or self.resources:
            resuid = int.from_bytes(os.urandom(8), "big") or 1
            s.set_state(res, role="secondary", connected=True, resuid=resuid,
                        prevrole="secondary")
            p.set_state(res, role="primary", connected=True, dirty_extents=0,
                        resuid=resuid)
            with self._locked(p, s) as (pst, sst):
                prs, srs = pst["resources"][res], sst["resources"][res]
                prs["conn"] += 1
                srs["conn"] += 1
                prs["peer_counts"] = [srs["meta"]["localcnt"], srs["meta"]["remotecnt"]]
                srs["data"] = prs["data"]

    def settle(self, res: str | None = None) -> None:
        """Apply what a closed connection follows from: a node whose peer's worker went
        away (role changed by hastctl, hastd stopped) sees its connection end at once
        and fires disconnect (and syncintr when a sync was running). Not while the link
        is down: nothing gets through, the timers of link_loss() tell."""
        if not self.link_up:
            return
        for name in [res] if res else self.resources:
            states = {n: n._read()["resources"].get(name) for n in self.nodes.values()}
            for node, rs in states.items():
                other = states[self.peer(node)]
                if rs and rs["connected"] and not (other and other["connected"]) and (
                        node.name, name, rs["conn"]) not in self._unseen:
                    self._notice(node, name, rs["conn"], "Connection closed by the peer.")

    def _notice(self, node: SimNode, res: str, conn: int, why: str) -> None:
        """node's end of connection number conn is found gone (if still that one)."""
        with node.store.locked() as st:
            rs = st["resources"].get(res)
            if rs and rs["connected"] and rs["conn"] == conn:
                remote = st["config"]["resources"][res]["remoteaddr"]
                _lose(node.store, st, res, f"Disconnected from {remote}."
                      if rs["role"] == "primary" else f"Unable to receive request header: {why}")

    # connections ---------------------------------------------------------------------

    def attempt(self, res: str) -> str:
        """One connection attempt of the primary's worker; returns "connected" or why not.

        Failures that fire no hook (hastd logs them and retries every 10 s):
        "no-link" (link down, or the primary's remoteaddr is not the peer's),
        "peer-down" (no hastd there), "no-resource", "no-access" (the peer's
        remoteaddr for it is not this node's address), "peer-init", "peer-primary",
        "resuid-mismatch". "size-mismatch": only the secondary fires, connect then
        disconnect. "split-brain": both fire split-brain, the secondary first.
        On "connected" the secondary fires connect, then the primary connect and
        syncstart when it has dirty extents (a re-created secondary: all of them);
        otherwise hastd logs "Nodes are in sync.". A secondary worker still running is
        stopped first (SIGINT: no disconnect).
        """
        self.settle(res)
        primaries = [n for n in self.nodes.values() if self._role(n, res) == "primary"]
        if not primaries:
            raise SimError(f"{res}: no primary to connect from")
        if len(primaries) == 2:
            for n in primaries:
                n.store.log(f"[WARNING] [{res}] (primary) Remote node acts as primary for "
                            "the resource and not as secondary.")
            return "peer-primary"
        p = primaries[0]
        s = self.peer(p)
        with self._locked(p, s) as (pst, sst):
            return self._handshake(p, s, pst, sst, res)

    def _handshake(self, p: SimNode, s: SimNode, pst: dict[str, Any], sst: dict[str, Any],
                   res: str) -> str:
        prs, pspec = pst["resources"][res], pst["config"]["resources"][res]
        remote, pfx = pspec["remoteaddr"], f"[{res}] (primary) "
        plog, slog = p.store.log, s.store.log
        mine = pspec.get("sourceaddr") or self.addresses[p.name]
        if prs["connected"]:
            return "connected"
        if not self.link_up or remote != self.addresses[s.name]:
            plog(f"[WARNING] {pfx}Unable to connect to {remote}: Operation timed out.")
            return "no-link"
        if not s.store.hastd_up(sst):
            plog(f"[WARNING] {pfx}Unable to connect to {remote}: Connection refused.")
            return "peer-down"
        srs = sst["resources"].get(res)
        if srs is None:
            slog(f"[ERROR] No resource '{res}' as requested by {mine}.")
            plog(f"[WARNING] {pfx}Resource not configured.")
            return "no-resource"
        sspec, spfx = sst["config"]["resources"][res], f"[{res}] ({srs['role']}) "
        if sspec["remoteaddr"] != mine:
            slog(f"[ERROR] {spfx}Client {mine} has no access to the resource.")
            plog(f"[WARNING] {pfx}No access to the resource.")
            return "no-access"
        if srs["role"] != "secondary":
            slog(f"[WARNING] {spfx}We act as {srs['role']} for the resource and not as "
                 f"secondary as requested by {mine}.")
            plog(f"[WARNING] {pfx}Remote node acts as {srs['role']} for the resource and "
                 "not as secondary.")
            return f"peer-{srs['role']}"
        if srs["workerpid"]:  # listen_accept(): an initial connection cancels the old one
            slog(f"[DEBUG][1] {spfx}Worker process exists (pid={srs['workerpid']}), "
                 "stopping it.")
            srs.update(connected=False)
            s.store.reconcile(sst, res)
        pm, sm = prs["meta"], srs["meta"]
        virgin = pm["resuid"] == 0
        if virgin:  # init_resuid(): the ID is given at the first connection
            pm["resuid"] = int.from_bytes(os.urandom(8), "big") or 1
            _write_meta(prs)
        spfx = f"[{res}] (secondary) "
        full, fresh, syncsrc = False, False, "primary"
        sl, sr, pl, pr = sm["localcnt"], sm["remotecnt"], pm["localcnt"], pm["remotecnt"]
        if sm["resuid"] == 0:
            sm.update(resuid=pm["resuid"], prevrole="secondary")
            fresh, full = True, not virgin
        elif sm["resuid"] != pm["resuid"]:
            msg = (f"Resource unique ID mismatch (primary={pm['resuid']}, "
                   f"secondary={sm['resuid']}).")
            slog(f"[ERROR] {spfx}{msg}")
            plog(f"[WARNING] {pfx}{msg}")
            return "resuid-mismatch"
        elif (sl > pr and sr == pl) or (sl == pr and sr <= pl):
            syncsrc = "secondary" if sl > pr else "primary"
        elif _split(pm, sm):
            slog(f"[ERROR] {spfx}Split-brain detected, exiting.")
            _fire(s.store, sst, "split-brain", res)
            plog(f"[WARNING] {pfx}Split-brain condition!")
            _fire(p.store, pst, "split-brain", res)
            return "split-brain"
        else:
            full, syncsrc = True, "secondary" if sl > pr else "primary"
            slog(f"[WARNING] {spfx}This should never happen, asking for full "
                 f"synchronization (primary(local={pl}, remote={pr}), "
                 f"secondary(local={sl}, remote={sr})).")
        # The secondary's worker reports connect before the primary checks the sizes.
        srs["connected"] = True
        srs["conn"] += 1
        s.store.reconcile(sst, res)
        _fire(s.store, sst, "connect", res)
        for what, key in (("Data", "datasize"), ("Extent", "extentsize")):
            if pm[key] != sm[key]:
                plog(f"[WARNING] {pfx}{what} size differs between nodes "
                     f"(local={pm[key]}, remote={sm[key]}).")
                _lose(s.store, sst, res, "Unable to receive request header: "
                      "Socket is not connected.")
                return "size-mismatch"
        prs["peer_counts"] = [sl, sr]
        if fresh and pm["localcnt"] == 0:
            pm["localcnt"] = 1
            plog(f"[DEBUG][1] {pfx}Increasing localcnt to 1.")
            _write_meta(prs)
        if full:
            prs["dirty_extents"] = nextents(pm)
        prs.update(connected=True, syncsrc=syncsrc)
        prs["conn"] += 1
        plog(f"[INFO] {pfx}Connected to {remote}.")
        _fire(p.store, pst, "connect", res)
        if prs["dirty_extents"] > 0:
            self._start_sync(p.store, pst, res)
        else:
            plog(f"[INFO] {pfx}Nodes are in sync.")
            _synced(prs, srs)
        return "connected"

    @staticmethod
    def _start_sync(store: NodeStore, st: dict[str, Any], res: str) -> None:
        rs = st["resources"][res]
        rs.update(syncing=True, copying=True)
        todo = humanize(rs["dirty_extents"] * rs["meta"]["extentsize"])
        store.log(f"[INFO] [{res}] (primary) Synchronization started. {todo} to go.")
        _fire(store, st, "syncstart", res)

    def connect(self, res: str) -> bool:
        """The primary's next connection attempt (see attempt()); True when connected."""
        return self.attempt(res) == "connected"

    def retry(self, res: str, attempts: int = 3, interval: float = 0.0) -> list[str]:
        """The primary's guard thread: attempts 10 simulated seconds apart until one
        connects; interval is a real wait before each further attempt (for hooks to
        act). Returns each attempt's outcome."""
        outcomes: list[str] = []
        for i in range(attempts):
            if i:
                time.sleep(interval)
                self.advance(RETRY_SLEEP)
            outcomes.append(self.attempt(res))
            if outcomes[-1] == "connected":
                break
        return outcomes

    def pair_up(self, primary: SimNode | str = "host1",
                resources: Iterable[str] | None = None) -> None:
        """A brand-new pair comes up: role secondary there, primary here (role hooks),
        then the first connection: the resource ID is given, nothing is copied."""
        p = self.node(primary)
        for res in resources or self.resources:
            self.peer(p).set_role(res, "secondary")
            p.set_role(res, "primary")
            self.connect(res)

    def disconnect(self, res: str) -> bool:
        """The connection for res is closed and both ends see it at once (an error on
        one side ends it; the other reads the end of the stream): disconnect on the
        primary (then syncintr if it was synchronizing) and on the secondary, whose
        worker exits. Returns False when it was not connected."""
        self.settle(res)
        pair = self._pair(res)
        if pair is None or not pair[0].state(res)["connected"]:
            return False
        p, s = pair
        with self._locked(p, s) as (pst, sst):
            remote = pst["config"]["resources"][res]["remoteaddr"]
            _lose(p.store, pst, res, f"Disconnected from {remote}.")
            if sst["resources"][res]["connected"]:
                _lose(s.store, sst, res, "Unable to receive request header: "
                      "Connection reset by peer.")
        return True

    def link_loss(self, dirty_extents: int = 1, wait: float | None = None) -> None:
        """The cable is pulled: every connection is dead, and each end notices in its
        own time. A busy primary (it keeps writing: dirty_extents > 0, or it is
        synchronizing) at once, its secondary SECONDARY_TIMEOUT later, an idle primary
        IDLE_PRIMARY_NOTICE later. Each primary ends with at least dirty_extents dirty
        extents. Simulated time then advances by wait (None: until every end noticed).
        """
        self.settle()
        self.link_up = False
        for res in self.resources:
            pair = self._pair(res)
            if pair is None:
                continue
            p, s = pair
            prs, srs = p.state(res), s.state(res)
            was = prs["connected"]
            if srs["connected"]:
                self._later(SECONDARY_TIMEOUT, "link", self._notice, s, res, srs["conn"],
                            "Operation timed out.")
            if prs["connected"] and (dirty_extents > 0 or prs["syncing"]):
                self._notice(p, res, prs["conn"], "")
            elif prs["connected"]:
                self._later(IDLE_PRIMARY_NOTICE, "link", self._notice, p, res, prs["conn"],
                            "")
            if was and dirty_extents > 0:
                with p.store.locked() as st:
                    rs = st["resources"][res]
                    _write(p.store, st, res, max(0, dirty_extents - rs["dirty_extents"]))
        self.advance(wait)

    def link_return(self) -> None:
        """The link is back. An end that had not noticed while its peer had now reads
        the peer's close (disconnect); a connection neither end gave up goes on. Then
        every primary not connected reconnects (its guard thread's next try)."""
        self.link_up = True
        self._timers = [t for t in self._timers if t[2] != "link"]
        heapq.heapify(self._timers)
        self.settle()
        for res in self.resources:
            pair = self._pair(res)
            if pair and not pair[0].state(res)["connected"]:
                self.connect(res)

    def crash(self, which: SimNode | str) -> None:
        """The host dies at once (power loss, panic): hastd and its workers are gone,
        nothing is logged or fired there, and no connection is closed. The peer's ends
        notice by themselves: a secondary SECONDARY_TIMEOUT later, a primary
        IDLE_PRIMARY_NOTICE later, unless a new connection comes first (a secondary's
        old worker is then stopped with no disconnect). start_hastd() brings the host
        back (roles init, as at boot)."""
        node = self.node(which)
        peer = self.peer(node)
        for res in self.resources:
            mine, theirs = (n._read()["resources"].get(res) for n in (node, peer))
            if mine and theirs and mine["connected"] and theirs["connected"]:
                self._unseen.add((peer.name, res, theirs["conn"]))
                delay = SECONDARY_TIMEOUT if theirs["role"] == "secondary" \
                    else IDLE_PRIMARY_NOTICE
                self._later(delay, "crash", self._notice, peer, res, theirs["conn"],
                            "Operation timed out.")
        with node.store.locked() as st:
            node.store.stop_all(st)
            if st["hastd"]["pid"]:
                stop_pid(st["hastd"]["pid"], "/sbin/hastd", sig=signal.SIGKILL)
            st["hastd"].update(running=False, down_error="Connection refused")

    def kill_worker(self, which: SimNode | str, res: str, sig: int = signal.SIGKILL,
                    exitcode: int | None = None, reconnect: bool = True) -> str:
        """A worker dies (see SimNode.kill_worker); its node fires nothing for it.

        The peer reads the end of the connection at once: disconnect there (and
        syncintr on a primary). Then, if reconnect, the next connection: a restarted
        primary worker connects a second later (connect again on the primary with no
        disconnect between), a primary whose secondary worker died reconnects at its
        next 10 s check (connect on the secondary with no disconnect before it).
        Returns SimNode.kill_worker's outcome.
        """
        node = self.node(which)
        outcome = node.kill_worker(res, sig=sig, exitcode=exitcode)
        self.settle(res)
        if reconnect and self._pair(res):
            self.advance(WORKER_RESTART if outcome == "restarted" else RETRY_SLEEP)
            self.attempt(res)
        return outcome

    # synchronization -----------------------------------------------------------------

    def sync(self, res: str, dirty_extents: int) -> None:
        """The primary has dirty extents; if connected, synchronization starts now."""
        self.settle(res)
        p = self.primary(res)
        if p is None:
            raise SimError(f"{res}: no primary")
        with p.store.locked() as st:
            rs = st["resources"][res]
            if rs["connected"]:
                rs["dirty_extents"] = dirty_extents
            else:
                _write(p.store, st, res, max(0, dirty_extents - rs["dirty_extents"]))
                rs["dirty_extents"] = dirty_extents
            if rs["connected"] and dirty_extents > 0 and not rs["syncing"]:
                self._start_sync(p.store, st, res)

    def sync_progress(self, res: str, extents: int = 1) -> None:
        """A running synchronization copies this many extents (dirty goes down); at
        zero it completes as sync_done() does. A sync that is never given progress is
        a stalled one: connected, dirty > 0, not going down."""
        p = self.primary(res)
        if p is None or not p.state(res)["syncing"]:
            raise SimError(f"{res}: no synchronization running")
        with p.store.locked() as st:
            rs = st["resources"][res]
            rs["dirty_extents"] = max(0, rs["dirty_extents"] - extents)
            left = rs["dirty_extents"]
        if left == 0:
            self.sync_done(res)

    def sync_done(self, res: str) -> None:
        """Synchronization completed: dirty 0, syncdone on the primary; the primary
        takes the secondary's counters and the secondary's copy is the primary's."""
        self.settle(res)
        p = self.primary(res)
        if p is None:
            raise SimError(f"{res}: no primary")
        s = self.peer(p)
        with self._locked(p, s) as (pst, sst):
            rs = pst["resources"][res]
            syncing = rs["syncing"]
            rs.update(dirty_extents=0, syncing=False)
            if rs["connected"]:
                if syncing:
                    p.store.log(f"[INFO] [{res}] (primary) Synchronization complete.")
                _synced(rs, sst["resources"].get(res))
            if syncing:
                _fire(p.store, pst, "syncdone", res)

    # roles -----------------------------------------------------------------------------

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

    def reload(self, which: SimNode | str, res: str | None = None, *, drop: bool = False,
               reconnect: bool = True, **settings: Any) -> dict[str, str]:
        """An admin edits a node's hast.conf (SimNode.edit_conf, when anything is
        given) and sends hastd SIGHUP (SimNode.reload). The peer then sees the
        connections the reload closed end (disconnect), and, if reconnect, each
        primary that lost its connection reconnects at its next check, 10 s later
        (connect on both, unless the new settings make the attempt fail silently;
        reconnect=False leaves that to a later connect()).
        Returns SimNode.reload's summary.
        """
        node = self.node(which)
        if res is not None or settings or drop:
            node.edit_conf(res, drop=drop, **settings)
        before = [r for r in self.resources
                  if (pair := self._pair(r)) and pair[0].state(r)["connected"]]
        done = node.reload()
        self.resources += [r for r, what in done.items()
                           if what == "added" and r not in self.resources]
        self.settle()
        lost = [r for r in before if (pair := self._pair(r)) and not
                pair[0].state(r)["connected"]]
        if lost and reconnect:
            self.advance(RETRY_SLEEP)
            for r in lost:
                self.attempt(r)
        return done

    # split-brain -----------------------------------------------------------------------

    def split_brain(self, res: str, repeats: int = 3, interval: float = 0.0,
                    reconnect: bool = True) -> SplitBrainResult:
        """Both nodes wrote independently (the link was down and the secondary had been
        primary meanwhile): every connection attempt of the primary (one per 10
        simulated seconds; interval: a real wait before each further one, for hooks
        to act) meets the split-brain, and both nodes fire `split-brain` (the
        secondary first, its worker exits at once). The storm stops once either side
        is re-created (`hastctl create`): a re-created secondary takes a full copy;
        a re-created primary gets a new resource ID at its next worker start and meets
        a silent ID mismatch instead (see attempt()). The attempt after the last
        repeat only looks whether it would still meet the split-brain. If reconnect,
        a stopped storm ends with that attempt.
        """
        self.settle(res)
        p = self.primary(res)
        if p is None:
            raise SimError(f"{res}: split-brain needs a primary")
        s = self.peer(p)
        if p.state(res)["connected"]:
            self.disconnect(res)
        self._diverge(p, s, res)
        result = SplitBrainResult(rounds=0, resolved=False)
        for attempt in range(repeats + 1):
            if attempt:
                time.sleep(interval)
                self.advance(RETRY_SLEEP)
            if self._role(p, res) != "primary":
                break
            still = self._meets_split(p, s, res)
            if attempt == repeats or not reconnect:
                result.resolved = not still and self._role(s, res) == "secondary"
                break
            result.outcome = self.attempt(res)
            if result.outcome == "split-brain":
                result.rounds += 1
                result.events += [(s.name, ["split-brain", res]), (p.name, ["split-brain", res])]
            elif result.outcome in ("connected", "resuid-mismatch", "size-mismatch"):
                result.resolved = True
                break
        return result

    def _meets_split(self, p: SimNode, s: SimNode, res: str) -> bool:
        """Whether an attempt now would meet the split-brain (without making one)."""
        prs, srs = p.state(res), s._read()["resources"].get(res)
        if not srs or not self.link_up:
            return False
        return bool(prs["meta"]["resuid"]) and srs["meta"]["resuid"] == prs["meta"][
            "resuid"] and _split(prs["meta"], srs["meta"])

    def _diverge(self, p: SimNode, s: SimNode, res: str) -> None:
        """Both write while apart: the primary's first write bumps its localcnt, the
        secondary did the same while it was primary. Nothing if they share no ID or
        already diverged."""
        if self._meets_split(p, s, res):
            return
        with self._locked(p, s) as (pst, sst):
            prs, srs = pst["resources"][res], sst["resources"][res]
            pm, sm = prs["meta"], srs["meta"]
            if not pm["resuid"] or sm["resuid"] != pm["resuid"]:
                return
            _write(p.store, pst, res, 1)
            pm["localcnt"] = max(pm["localcnt"], sm["remotecnt"] + 1)
            sm["localcnt"] = max(sm["localcnt"], pm["remotecnt"] + 1)
            sst["wseq"] = sst.get("wseq", 0) + 1
            srs["data"] = f"{s.name}:{sst['wseq']}"

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
