"""The daemon behind `hasthook sim`: one long-lived process that owns a simulated pair.

A SimCluster's stand-in processes live only while the process driving it holds
their owner FIFO (core.spawn_sleeper), and the cluster keeps what hastd keeps in
memory (simulated time, pending timeouts, the state of the link) in that process.
So `hasthook sim start DIR` starts this daemon: it builds the pair in DIR, keeps
it, and plays each later `hasthook sim ...` call, one at a time, received on
DIR/control.sock (control.py is the calling side). The scenarios are the
driver's (SimCluster, SimNode); this module only strings them together the way a
shell user asks for them and tells what happened. It also stands in for each
node's syslogd, so the hooks' log lines land in DIR/NODE/syslog.log. When it
ends (`stop`, SIGTERM, or killed) every process of the pair ends with it.

Run as `python -m hasthook.sim.pair DIR RESOURCE...` by control.start(); it forks
away at once and reports, in one JSON line on its standard output, that it is
ready or why not.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hasthook import sysexits
from hasthook.errors import HasthookError, UsageError
from hasthook.sim import control
from hasthook.sim.core import ROLES, SimError
from hasthook.sim.demo import hook_program
from hasthook.sim.driver import RETRY_SLEEP, SimCluster, SimNode
from hasthook.sim.hastctl import dirty_bytes, worker_status
from hasthook.units import humanize

ERROR_KINDS = ("read", "write", "delete", "flush")


class Pair:
    """The SimCluster of one `hasthook sim` pair, and what each request plays on it.

    Every do_* method is one request; it returns {out, err, data} or raises a
    HasthookError (64: a name or value this pair does not have) or SimError (65:
    hastd could not do it either). Scenarios wait for the hooks they fired, at most
    `wait` seconds, so the call returns once their messages went out.
    """

    def __init__(self, root: Path, resources: list[str]):
        self.root = root
        self.closed = False
        self.cluster = SimCluster(
            root, [{"name": r, "localpath": f"/dev/ada{i}"} for i, r in enumerate(resources, 1)],
            names=control.NODES, addresses=control.ADDRESSES)
        self.program = hook_program(root)
        self.wired: dict[str, dict[str, str] | None] = dict.fromkeys(self.cluster.nodes)
        self.syslogd = Syslogd({n: node.root for n, node in self.cluster.nodes.items()})
        self.cluster.pair_up(control.NODES[0])  # no hook wired yet: nothing runs

    def close(self, wait: float = 0.0) -> None:
        """Wait for running hooks (at most `wait`), then end every process of the pair."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(TimeoutError):
            self.cluster.wait_hooks(wait)
        self.cluster.close()
        self.syslogd.close()

    # names ---------------------------------------------------------------------------

    def node(self, name: str) -> SimNode:
        if name not in self.cluster.nodes:
            raise UsageError(f"{name}: no such node in the pair in {self.root} "
                             f"({', '.join(self.cluster.nodes)})")
        return self.cluster.nodes[name]

    def resource(self, name: str | None) -> str:
        if name is None:
            if not self.cluster.resources:
                raise SimError("the pair has no resource left")
            return self.cluster.resources[0]
        if name not in self.cluster.resources:
            raise UsageError(f"{name}: no such resource in the pair in {self.root} "
                             f"({', '.join(self.cluster.resources)})")
        return name

    # what a request did ---------------------------------------------------------------

    def played(self, wait: float, play: Callable[[], list[str]]) -> dict[str, Any]:
        """Run a scenario; wait for its hooks; tell what it did, the events each node
        fired (at simulated seconds since the start) and how their hooks ended."""
        c = self.cluster
        events = len(c.timeline())
        hooks = {name: len(node.hooks()) for name, node in c.nodes.items()}
        said = play()
        err = self.wait_hooks(wait)
        fired = c.timeline()[events:]
        lines = list(said)
        lines += [f"  {t:6.0f}s  {host}  {' '.join(words)}" for t, host, words in fired]
        if not fired:
            lines.append("  no event fired")
        lines += self.hook_lines(hooks, bool(fired))
        return {"out": "\n".join(lines) + "\n", "err": err,
                "data": {"events": [{"time": t, "host": h, "words": w} for t, h, w in fired]}}

    def wait_hooks(self, wait: float) -> str:
        try:
            self.cluster.wait_hooks(wait)
        except TimeoutError as e:
            return f"hasthook sim: {e} after {wait:g}s; they go on\n"
        return ""

    def hook_lines(self, before: dict[str, int], fired: bool) -> list[str]:
        out = []
        for name, node in self.cluster.nodes.items():
            runs = node.hooks()[before[name]:]
            if not runs:
                continue
            bad = [r for r in runs if r["state"] == "done" and (r["exitcode"] or r["signal"])]
            running = sum(r["state"] != "done" for r in runs)
            out.append(f"  {name}: {len(runs)} hook{'s' * (len(runs) != 1)} ran"
                       + (f", {running} still running" if running else "")
                       + (", all exited 0" if not bad and not running else ""))
            for r in bad:
                how = (f"was killed by signal {r['signal']}" if r["signal"]
                       else f"exited {r['exitcode']}")
                out.append(f"    `{r['comm']}` {how} (see {node.log_path})")
        if fired and not any(self.wired.values()):
            out.append("  no hook wired: `hasthook sim hook NODE RULES` makes hastd run "
                       "hasthook-exec")
        return out

    # requests -------------------------------------------------------------------------

    def do_settings(self) -> dict[str, Any]:
        """What a rules file needs to point at each node, as YAML to copy from."""
        data = {}
        for name, node in self.cluster.nodes.items():
            wired = self.wired[name]
            data[name] = {
                "address": self.cluster.addresses[name],
                "roles": {r: node.role(r) for r in node.resources},
                "settings": {
                    "hostname": name,
                    "hastctl": node.hastctl_path,
                    "state_dir": str(node.root / "hasthook"),
                    "hast_conf": str(node.hast_conf),
                    "hastd_pidfile": str(node.pidfile),
                    "dev_dir": str(node.dev_dir),
                    "commands": {"pgrep": node.pgrep_path},
                    "syslog": {"socket": str(self.syslogd.socket(name))},
                },
                "hook": f"hasthook sim hook -d {self.root} {name} RULES",
                "exec": wired["exec"] if wired else self.program,
                "rules": wired["rules"] if wired else None,
            }
        head = (
            f"# A simulated HAST pair in {self.root} (hasthook sim, daemon pid {os.getpid()}).\n"
            f"# Later commands find it with -d {self.root}, or after:\n"
            f"#   export {control.ENV_VAR}={self.root}\n"
            "# Per node: the `settings:` its rules file needs (copy them in), and `hook`:\n"
            "# the command that makes its hastd run `exec` for every event with\n"
            "# HASTHOOK_CONFIG=RULES (hast.conf's exec, rc.conf's hastd_env on a real host).\n"
            "# Syslog lines of the hooks go to NODE/syslog.log; hastd's to NODE/hastd.log.\n")
        return {"out": head + yaml.safe_dump(data, sort_keys=False), "data": data}

    def do_hook(self, node: str, rules: str | None = None,
                exec: str | None = None) -> dict[str, Any]:
        """Make the node's hastd run `exec` (default: the installed hasthook-exec) with
        HASTHOOK_CONFIG=rules for every event from now on; rules None: no hook."""
        n = self.node(node)
        if rules is None:
            n.set_exec(None)
            n.set_env({"HASTHOOK_CONFIG": None})
            self.wired[node] = None
            return {"out": f"{node}: hastd runs no hook now\n"}
        program = exec or self.program
        n.set_exec(program)
        n.set_env({"HASTHOOK_CONFIG": rules})
        self.wired[node] = {"exec": program, "rules": rules}
        return {"out": f"{node}: hastd runs {program} for every event, with "
                       f"HASTHOOK_CONFIG={rules}\n"}

    def do_link(self, state: str, idle: bool = False, stall: bool = False,
                wait: float = 300.0) -> dict[str, Any]:
        c = self.cluster

        def down() -> list[str]:
            if not c.link_up:
                return ["the link is down already"]
            c.link_loss(dirty_extents=0 if idle else 1)
            return ["link down: every connection is lost. " + (
                "The primaries are idle: each notices 60s later, its secondary after 20s."
                if idle else "Each primary keeps writing and notices at once; its "
                "secondary after 20s.")]

        def up() -> list[str]:
            if c.link_up:
                return ["the link is up already"]
            before = self.syncing()
            c.link_return()
            said = ["link up: each primary reconnects; what it wrote meanwhile is synced."]
            return said + self.finish_syncs(self.syncing() - before, stall, wait)

        if state not in ("down", "up"):
            raise UsageError(f"link {state}: say down or up")
        return self.played(wait, down if state == "down" else up)

    def syncing(self) -> set[str]:
        """The resources whose primary is synchronizing."""
        c = self.cluster
        return {r for r in c.resources if (p := c.primary(r)) and p.state(r)["syncing"]}

    def finish_syncs(self, resources: set[str], stall: bool, wait: float) -> list[str]:
        """Let these running synchronizations complete (syncdone), once the hooks of
        what started them are done; or, stalled, leave them without progress."""
        syncing = [r for r in self.cluster.resources if r in resources & self.syncing()]
        if not syncing:
            return []
        if stall:
            return [f"  synchronization of {', '.join(syncing)} stalls: no progress"]
        self.wait_hooks(wait)
        for res in syncing:
            self.cluster.sync_done(res)
        return []

    def do_split_brain(self, resource: str | None = None, rounds: int = 6,
                       wait: float = 300.0) -> dict[str, Any]:
        """Both nodes wrote while apart; each connection attempt of the primary (one
        every 10 simulated seconds, after the hooks of the last one are done) meets
        the split-brain, until a hook re-created a side or `rounds` attempts passed.
        A recovered pair then resyncs in full."""
        c = self.cluster
        res = self.resource(resource)
        if rounds < 1:
            raise UsageError(f"--rounds {rounds}: at least 1")

        def play() -> list[str]:
            said = []
            before = self.syncing()
            attempts, outcome = 0, "split-brain"
            if not c.link_up:  # they wrote while apart; then the link comes back
                c.split_brain(res, repeats=0)
                c.link_return()
                said.append("the link is back: the primary's reconnection finds the data "
                            "diverged")
                attempts = 1
                p = c.primary(res)
                if p is not None and p.state(res)["connected"]:
                    outcome = "connected"
                c.advance(RETRY_SLEEP)  # the guard thread's next try
            while attempts < rounds and outcome == "split-brain":
                if attempts:
                    self.wait_hooks(wait)  # a hook may re-create a side meanwhile
                outcome = c.split_brain(res, repeats=1).outcome or "no primary"
                attempts += 1
            self.wait_hooks(wait)
            p = c.primary(res)
            if p is not None and p.state(res)["connected"]:
                said.append(f"{res}: split-brain over, the pair is connected again; the full "
                            "resync runs")
                said += self.finish_syncs((self.syncing() - before) | {res}, False, wait)
            elif outcome == "split-brain":
                said.append(f"{res}: still split-brained after {rounds} attempts: no hook "
                            "recovered it (`hasthook recover` on the secondary would)")
            else:
                said.append(f"{res}: no split-brain any more, but not connected: {outcome}")
            return said

        return self.played(wait, play)

    def do_sync(self, resources: list[str] | None = None, extents: int = 64,
                stall: bool = False, wait: float = 300.0) -> dict[str, Any]:
        """The primary has `extents` dirty extents (writes its peer has not seen) and
        synchronizes them; one already running completes."""
        c = self.cluster
        names = [self.resource(r) for r in resources] if resources else list(c.resources)
        if extents < 1:
            raise UsageError(f"--extents {extents}: at least 1")

        def play() -> list[str]:
            said = []
            for res in names:
                p = c.primary(res)
                if p is None:
                    raise SimError(f"{res}: no primary to synchronize from")
                if not p.state(res)["syncing"]:
                    c.sync(res, extents)
                if not p.state(res)["connected"]:
                    said.append(f"{res}: not connected: {humanize(dirty_bytes(p.state(res)))} "
                                "dirty, synced when the link is back")
            return said + self.finish_syncs(set(names), stall, wait)

        return self.played(wait, play)

    def do_role(self, node: str, resource: str, role: str,
                wait: float = 300.0) -> dict[str, Any]:
        """`hastctl role ROLE RES` on the node; a primary facing a secondary then
        connects (at once when it is the new primary, else at its next 10 s try)."""
        c = self.cluster
        n, res = self.node(node), self.resource(resource)
        if role not in ROLES:
            raise UsageError(f"{role}: not a role ({', '.join(ROLES)})")

        def play() -> list[str]:
            old = n.set_role(res, role)
            c.settle(res)
            p = c.primary(res)
            if p is not None and c.link_up and not p.state(res)["connected"]:
                with contextlib.suppress(SimError):
                    if c.peer(p).role(res) == "secondary":
                        if p is not n:
                            c.advance(RETRY_SLEEP)
                        c.attempt(res)
            return [f"{node}: {res} was {old}" + (", unchanged" if old == role else
                                                    f", now {role}")]

        return self.played(wait, play)

    def do_reload(self, node: str, wait: float = 300.0) -> dict[str, Any]:
        """hastd on the node re-reads its hast.conf (edit it first) as on SIGHUP."""
        n = self.node(node)
        logged = len(n.log_lines())

        def play() -> list[str]:
            done = self.cluster.reload(node)
            said = [f"{node}: {r} {what}" for r, what in done.items()] or [
                f"{node}: no resource changed"]
            said += [f"  hastd: {line}" for line in n.log_lines()[logged:]
                     if not line.startswith("[DEBUG]")]
            return said

        return self.played(wait, play)

    def do_disk_errors(self, node: str, resource: str, read: int = 0, write: int = 0,
                       delete: int = 0, flush: int = 0) -> dict[str, Any]:
        """The node's local component fails requests: its worker's error counters rise
        (`local errors:` in hastctl list). hastd fires no event for it."""
        n, res = self.node(node), self.resource(resource)
        counts = {"read": read, "write": write, "delete": delete, "flush": flush}
        if any(v < 0 for v in counts.values()):
            raise UsageError("error counts cannot be negative")
        if not any(counts.values()):
            counts["write"] = 1
        now = n.local_errors(res, **counts)
        shown = ", ".join(f"{k} {now[k]}" for k in ERROR_KINDS)
        return {"out": f"{node}: {res}'s local errors now {shown} (hastctl list); hastd "
                       "fires no event for it\n", "data": now}

    def do_status(self, events: int = 0) -> dict[str, Any]:
        c = self.cluster
        if events < 0:
            raise UsageError(f"--events {events}: cannot be negative")
        data: dict[str, Any] = {"dir": str(self.root), "daemon": os.getpid(),
                                "link": "up" if c.link_up else "down", "time": c.now,
                                "nodes": {}}
        lines = [f"pair in {self.root}: link {data['link']}, simulated time {c.now:.0f}s, "
                 f"daemon pid {os.getpid()}"]
        rows = [("RESOURCE", "NODE", "ROLE", "STATUS", "DIRTY", "SYNC", "LOCAL ERRORS")]
        for name, node in c.nodes.items():
            runs = node.hooks()
            wired = self.wired[name]
            pids = [p for p, t in node.processes().items() if t == "/sbin/hastd"]
            info: dict[str, Any] = {
                "address": c.addresses[name], "hastd": pids[0] if pids else None,
                "exec": wired["exec"] if wired else None,
                "rules": wired["rules"] if wired else None,
                "hooks": {"run": len(runs),
                          "running": sum(r["state"] != "done" for r in runs),
                          "failed": sum(bool(r["exitcode"] or r["signal"]) for r in runs)},
                "resources": {}}
            hooks = (f"hooks {wired['exec']} with HASTHOOK_CONFIG={wired['rules']}"
                     if wired else "no hook")
            lines.append(f"{name}  {info['address']}  "
                         + (f"hastd pid {info['hastd']}" if pids else "hastd not running")
                         + f"  {hooks}; {info['hooks']['run']} ran, "
                         f"{info['hooks']['running']} running, {info['hooks']['failed']} "
                         "failed")
            for res in node.resources:
                rs = node.state(res)
                errs = {k: rs["errors"][k] for k in ERROR_KINDS} if rs["workerpid"] else \
                    dict.fromkeys(ERROR_KINDS, 0)
                info["resources"][res] = {
                    "role": rs["role"], "status": worker_status(rs),
                    "connected": rs["connected"], "syncing": rs["syncing"],
                    "dirty": dirty_bytes(rs), "local_errors": errs}
                shown = ", ".join(f"{k} {v}" for k, v in errs.items() if v) or "-"
                rows.append((res, name, rs["role"], worker_status(rs),
                             humanize(dirty_bytes(rs)), "running" if rs["syncing"] else "-",
                             shown))
            data["nodes"][name] = info
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines.append("")
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1]
                  for r in rows]
        if events:
            fired = c.timeline()[-events:]
            lines += ["", f"last {len(fired)} events:"]
            lines += [f"  {t:6.0f}s  {host}  {' '.join(words)}" for t, host, words in fired]
        return {"out": "\n".join(lines) + "\n", "data": data}

    def reply(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """One request's reply: {status, out, err, data}, or {status, error}."""
        method = getattr(self, "do_" + str(action).replace("-", "_"), None)
        try:
            if method is None or not isinstance(args, dict):
                raise UsageError(f"{action}: no such request")
            try:
                inspect.signature(method).bind(**args)
            except TypeError as e:
                raise UsageError(f"{action}: bad request: {e}") from None
            done = method(**args)
        except HasthookError as e:
            return {"status": e.status, "error": str(e)}
        except SimError as e:
            return {"status": sysexits.EX_DATAERR, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - the pair stays up for the next request
            traceback.print_exc()
            return {"status": sysexits.EX_SOFTWARE,
                    "error": f"{action} failed: {type(e).__name__}: {e} "
                             f"(see {self.root / control.DAEMON_LOG})"}
        return {"status": 0, "out": "", "err": "", "data": None, **done}


class Syslogd:
    """syslogd for the nodes' hooks: a datagram socket per node, its lines appended to
    NODE/syslog.log (without the priority), read by a thread for as long as it runs."""

    def __init__(self, roots: dict[str, Path]):
        self.paths = {name: root / "syslog.sock" for name, root in roots.items()}
        self.files: dict[socket.socket, Path] = {}
        for name, path in self.paths.items():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
            self.files[sock] = roots[name] / "syslog.log"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def socket(self, name: str) -> Path:
        return self.paths[name]

    def _run(self) -> None:
        socks = list(self.files)
        while True:
            try:
                ready = select.select(socks, [], [])[0]
                for sock in ready:
                    data = sock.recv(65536)
                    line = re.sub(rb"^<\d+>", b"", data).decode(errors="replace").rstrip("\n")
                    with open(self.files[sock], "a") as f:
                        f.write(line + "\n")
            except (OSError, ValueError):  # closed: the pair stops
                return

    def close(self) -> None:
        for sock in self.files:
            sock.close()
        for path in self.paths.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def _request(conn: socket.socket) -> dict[str, Any] | None:
    conn.settimeout(30.0)
    data = b""
    with contextlib.suppress(OSError):
        while b"\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        request = json.loads(data)
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


def serve(pair: Pair, server: socket.socket) -> None:
    """Answer requests one at a time until one stops the pair."""
    while True:
        conn, _ = server.accept()
        with conn:
            request = _request(conn)
            if request is None:
                continue
            action, args = request.get("action"), request.get("args") or {}
            if action == "stop":
                pair.close(float(args.get("wait", 0.0)))
                reply = {"status": 0, "out": f"stopped the pair in {pair.root}; its files "
                                              "stay there\n",
                         "data": {"pid": os.getpid()}}
            else:
                reply = pair.reply(str(action), args)
            with contextlib.suppress(OSError):
                conn.settimeout(30.0)
                conn.sendall(json.dumps(reply).encode())
            if action == "stop":
                return


def _report(message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(1, json.dumps(message).encode() + b"\n")


def main(argv: list[str]) -> int:
    root, resources = Path(argv[0]), argv[1:] or [control.DEFAULT_RESOURCE]
    if os.fork():  # the starter waits for this first half; the daemon goes on alone
        os._exit(0)
    # control.start() put the package first in PYTHONPATH for this process only: the
    # hooks get the environment the user started the pair with.
    rest = os.environ.get("PYTHONPATH", "").split(":")[1:]
    if rest:
        os.environ["PYTHONPATH"] = ":".join(rest)
    else:
        os.environ.pop("PYTHONPATH", None)
    pair = server = None
    try:
        pair = Pair(root, resources)
        server = _listen(root / control.CONTROL)
        (root / control.PAIR_FILE).write_text(json.dumps({
            "pid": os.getpid(), "resources": resources, "started": time.time(),
            "nodes": {n: str(node.root) for n, node in pair.cluster.nodes.items()}}))
    except (HasthookError, SimError, OSError) as e:
        _report({"ok": False, "error": str(e)})
        if pair is not None:
            pair.close()
        return 1
    except Exception as e:  # noqa: BLE001 - told to the starter, the rest to the log
        traceback.print_exc()
        _report({"ok": False, "error": f"{type(e).__name__}: {e}"})
        if pair is not None:
            pair.close()
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _report({"ok": True, "pid": os.getpid()})
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # the starter sees the end of its pipe
    os.close(null)
    try:
        serve(pair, server)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            (root / control.CONTROL).unlink()
        pair.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
