"""`hasthook demo`: the life of a HAST pair on the simulator, through the real hook.

Two simulated FreeBSD nodes run hastd's events through the installed
`hasthook-exec` (hastd forks it per event, stdio on /dev/null, as on a real
host), with rules like rules.example.yaml and both channels pointed at a
webhook receiver on 127.0.0.1. Nothing here decides what the hook does: the
timeline is read back from each node's history database and from what the
receiver got, so it shows what a real pair would record and send.

Intervals are shortened so it runs in seconds: hastd's 10 s split-brain retry
becomes 1 s, the recovery's delay 500 ms, group_wait 500 ms (2 s for a
link loss, long enough for a 20-resource burst to be one message). Waits
hastd itself sleeps through (a reconnection 10 s after a reload, the
secondary's 20 s timeout after a cable pull) pass in simulated time.
Lines marked `hastd:` are from the node's hastd log. `hasthook watch` passes,
a minute apart under cron, run back to back.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

import hasthook
from hasthook.event import RECONNECT, RESTART
from hasthook.sim.driver import SimCluster, wait_for
from hasthook.sim.receiver import HttpSink
from hasthook.units import humanize

RES = "shared1"
HOSTS = ("host1", "host2")
SPLIT_BRAIN_RETRY = 1.0   # hastd retries every 10 s; compressed for the demo
PHASE_TIMEOUT = 300.0     # generous: a loaded CI machine is slow, not broken

# rules.example.yaml with the demo's short intervals. The channels are replaced by
# json:// URLs to the demo's receiver, settings by each node's own.
RULES = """\
# hasthook demo: rules.example.yaml with shorter intervals.
version: 1
settings:
  group_wait: 500ms
  alert_channels: [ops]
channels:               # the demo points both at its local receiver
  ops: slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#storage
  oncall: mailtos://alerts:app-password@mail.example.com?to=oncall@example.com
rules:
  # The role changes our own recovery makes: the recovery report tells them.
  - name: recovery-role-changes
    match: {event: role, cause: recover}
    actions: []
  # Split-brain on the secondary: discard its divergent writes, resync from the
  # primary (rules.example.yaml also takes a zfs snapshot first, in `pre`).
  - name: split-brain-recover
    match: {event: split-brain, role: secondary, resource: "shared*"}
    continue: true
    actions:
      - recover: {delay: 500ms, cooldown: 10m, max_attempts: 3, window: 1h}
  - name: split-brain
    match: {event: split-brain}
    repeat_interval: 30m
    send_resolved: true
    actions:
      - notify: [ops, oncall]
  # A lost link fires disconnect for every resource at once: one message.
  - name: link-loss
    match: {event: disconnect}
    group_wait: 2s
    repeat_interval: 1h
    send_resolved: true
    actions:
      - notify: ops
  - name: sync-interrupted
    match: {event: syncintr}
    key: [resource, host]
    throttle: {max: 3, window: 1h}
    send_resolved: true
    actions:
      - notify: ops
  - name: hastd-restarts
    match: {cause: restart}
    continue: true
    actions:
      - notify: ops
  # rules.example.yaml runs logger(1) here; echo keeps your syslog clean.
  - name: role-changes
    match: {event: role}
    actions:
      - command:
          argv: [/bin/echo, "{resource}: {old_role} -> {new_role} on {host}"]
          timeout: 5s
  # What hastd never announces, found by `hasthook watch`: a failing disk.
  - name: disk-failing
    match: {event: io-errors}
    send_resolved: true
    actions:
      - notify: [ops, oncall]
  # connect, syncstart, syncdone: recorded only.
  - name: the-rest
    match: {event: "*"}
    actions: []
"""

RECOVER_STATES = {
    "recovered": "RECOVERED (report below)",
    "busy": "another hook is recovering it: nothing to do",
    "handled": "the recovery already handled it",
    "primary": "role primary: never reset",
}


def hook_program(workdir: Path) -> str:
    """The real hasthook-exec: the console script installed next to this interpreter,
    else (a source checkout run with `python -m`) a wrapper running this interpreter
    on hasthook.exec. hast.conf's exec takes a path, hence a file either way."""
    script = Path(sys.executable).parent / "hasthook-exec"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    root = str(Path(hasthook.__file__).resolve().parent.parent)
    wrapper = workdir / "hasthook-exec"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}} export PYTHONPATH\n"
        f"exec {shlex.quote(sys.executable)} -c "
        "'import sys; from hasthook.exec import main; main()' \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def node_rules(name: str, state_dir: Path, hastctl: str, sink: HttpSink,
               hast_conf: str | None = None) -> dict[str, Any]:
    """RULES for one node: its hostname, state, hastctl, hast.conf; channels to the
    receiver."""
    data = yaml.safe_load(RULES)
    if hast_conf:
        data["settings"]["hast_conf"] = hast_conf
    data["settings"].update(hostname=name, state_dir=str(state_dir), hastctl=hastctl,
                            # no syslog socket: lines go to hasthook.log in the state dir
                            syslog={"socket": str(state_dir.parent / "no-syslog")})
    data["channels"] = {ch: sink.url(ch) for ch in data["channels"]}
    return data


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{names[0]} .. {names[-1]}"


@dataclass
class Tally:
    """What the summary counts and checks."""

    events: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    recovery: str = "no recovery ran"
    burst: str = ""
    conditions: list[str] = field(default_factory=list)  # what watch raised
    watch: str = ""


class Demo:
    """One run: a two-node cluster, a receiver, and the timeline printed as it goes."""

    def __init__(self, root: Path, sink: HttpSink, out: TextIO, resources: int):
        self.root, self.sink, self.out = root, sink, out
        self.names = [RES] + [f"shared{i}" for i in range(2, resources + 1)]
        self.hook = hook_program(root)
        self.cluster = SimCluster(root / "sim", [
            {"name": n, "localpath": f"/dev/ada{i}"} for i, n in enumerate(self.names, 1)])
        self.state = {h: root / f"state-{h}" for h in HOSTS}
        self.stores: dict[str, Any] = {}
        self.seen = {h: 0 for h in HOSTS}  # last history id printed per host
        self.seen_msgs = 0
        self.t0 = time.time()
        self.tally = Tally()
        for name, node in self.cluster.nodes.items():
            cfg = root / f"rules-{name}.yaml"
            cfg.write_text(yaml.safe_dump(
                node_rules(name, self.state[name], node.hastctl_path, sink,
                           str(node.hast_conf)), sort_keys=False))
            cfg.chmod(0o600)
            node.env["HASTHOOK_CONFIG"] = str(cfg)  # rc.conf: hastd_env
            node.stop_hastd(clean=True)  # hooks get hastd's environment: restart with it
            node.start_hastd()
            node.set_exec(self.hook)

    def close(self) -> None:
        for s in self.stores.values():
            s.close()
        self.cluster.close()

    # -- output -------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def store(self, host: str) -> Any:
        from hasthook.store import Store

        if host not in self.stores:
            self.stores[host] = Store(str(self.state[host]))
        return self.stores[host]

    def new_events(self) -> list[dict[str, Any]]:
        rows = []
        for h in HOSTS:
            fresh = [r for r in self.store(h).history() if r["id"] > self.seen[h]]
            if fresh:
                self.seen[h] = max(r["id"] for r in fresh)
            rows += fresh
        for r in rows:
            r["t"] = r["time"]
        return rows

    def new_messages(self) -> list[dict[str, Any]]:
        msgs = self.sink.requests[self.seen_msgs:]
        self.seen_msgs += len(msgs)
        return msgs

    def stamp(self, t: float) -> str:
        return f"{t - self.t0:6.1f}s"

    # -- running a phase ---------------------------------------------------------

    def phase(self, number: int, title: str, play: Callable[[], Any], fold: bool = False,
              hastd: tuple[str, ...] = ()) -> Any:
        """Play a scenario, wait until every hook is done and the outboxes are empty,
        then print what the nodes recorded and what the receiver got, in time order,
        and the hastd log lines of the phase that contain one of `hastd`."""
        self.say(f"\n{number}. {title}")
        logged = {h: len(n.log_lines()) for h, n in self.cluster.nodes.items()}
        result = play()
        self.cluster.wait_hooks(PHASE_TIMEOUT)
        try:
            self.delivered()
        except TimeoutError:
            self.tally.problems.append(f"phase {number}: messages still queued")
        lines: list[tuple[float, list[str]]] = []
        events = self.new_events()
        lines += self.folded(events) if fold else [(r["t"], self.event_lines(r)) for r in events]
        lines += [(m["time"], self.message_lines(m, fold)) for m in self.new_messages()]
        for _, text in sorted(lines, key=lambda x: x[0]):
            for line in text:
                self.say(line)
        for h, node in self.cluster.nodes.items():
            for line in node.log_lines()[logged[h]:]:
                if any(needle in line for needle in hastd):
                    self.say(f"{'':10}{h}  hastd: {line}")
        return result

    def event_lines(self, r: dict[str, Any]) -> list[str]:
        ev = r["event"]
        what = f"role {r['old_role']} -> {r['new_role']}" if ev == "role" else ev
        state = r["role"] or "?"
        if r["status"]:
            state += f" {r['status']}"
        if r["dirty"]:
            state += f", {humanize(r['dirty'])} dirty"
        head = f"  {self.stamp(r['t'])}  {r['host']}  {what:<22} {r['resource']:<9}"
        outcome = r.get("outcome") or {}
        if ev == "recover":
            return self.recovery_lines(head, r)
        if r.get("cause") == "recover":
            return [f"{head} {state:<24} caused by the recovery: recorded, not told"]
        rules = ", ".join(r.get("rules") or []) or "-"
        cause = f" (cause {r['cause']})" if r.get("cause") in (RESTART, RECONNECT) else ""
        out = [f"{head} {state:<24} rules: {rules}{cause}"]
        for a in outcome.get("actions") or []:
            if a.get("action") == "recover":
                out.append(f"{'':21}recover: {RECOVER_STATES.get(a.get('state'), a['detail'])}")
            elif a.get("action") == "command":
                argv = a.get("argv") or []
                out.append(f"{'':21}command: {shlex.join(argv)} -> {a['detail']}")
        for h in outcome.get("suppressed") or []:
            why = {"repeat": "repeat_interval", "throttle": "throttle"}.get(h.get("by"),
                                                                         h.get("by"))
            out.append(f"{'':21}held back by {h['rule']} ({why}): recorded, not sent again")
        return out

    def recovery_lines(self, head: str, r: dict[str, Any]) -> list[str]:
        x = r.get("extra") or {}
        out = [f"{head} split-brain recovery: {x.get('state')}, role "
               f"{x.get('role_before')} -> {x.get('role_after')}"]
        for s in x.get("steps") or []:
            argv = [os.path.basename(s["argv"][0]), *s["argv"][1:]] if s.get("argv") else []
            status = "did not run" if s.get("rc") is None else f"exit {s['rc']}"
            out.append(f"{'':21}{shlex.join(argv)} -> {status}")
        if r["host"] == "host2" and x.get("state") == "recovered":
            out += self.syslog_lines("host2", "recover role")
        return out

    def syslog_lines(self, host: str, needle: str) -> list[str]:
        """The node's own log lines (no syslog socket in the demo: its hasthook.log)."""
        try:
            text = (self.state[host] / "hasthook.log").read_text()
        except OSError:
            return []
        return [f"{'':21}syslog: {ln.split(' ', 2)[-1]}" for ln in text.splitlines()
                if needle in ln]

    def folded(self, rows: list[dict[str, Any]]) -> list[tuple[float, list[str]]]:
        """One line per host, event and rules: a burst reads as what it is."""
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: r["t"]):
            groups.setdefault((r["host"], r["event"], tuple(r.get("rules") or ())), []).append(r)
        out = []
        for (host, ev, rules), rs in groups.items():
            names = [r["resource"] for r in rs]
            span = f"{rs[0]['t'] - self.t0:.1f}..{rs[-1]['t'] - self.t0:.1f}s"
            out.append((rs[0]["t"], [
                f"  {span:>7}  {host}  {ev} x{len(rs):<15} {_names(names):<33} "
                f"rules: {', '.join(rules) or '-'}"]))
        return out

    def message_lines(self, m: dict[str, Any], fold: bool) -> list[str]:
        body = m["body"] if isinstance(m["body"], dict) else {"title": str(m["body"])}
        channel = m["path"].strip("/") or "?"
        out = [f"  {self.stamp(m['time'])}  >> message to {channel}: {body.get('title')}"]
        first = (body.get("message") or "").splitlines()[:1]
        if fold and first and ":" in first[0]:
            kind, names = first[0].split(":", 1)
            listed = [n.strip() for n in names.split(",") if n.strip()]
            out.append(f"{'':21}names {len(listed)} resources: {_names(listed)}")
        return out

    # -- the story ------------------------------------------------------------------

    def run(self) -> int:
        c, h1, h2 = self.cluster, self.cluster.host1, self.cluster.host2
        others = self.names[1:]
        c.steady("host1", others)  # quietly: these are already replicating
        self.say(f"hasthook demo: two simulated FreeBSD nodes, host1 and host2, sharing "
                 f"{len(self.names)} HAST resources ({_names(self.names)}).")
        self.say(f"hastd on each runs {self.hook} for every event (hast.conf `exec`).")
        self.say("Rules: rules.example.yaml with short intervals (`hasthook demo --rules`); "
                 f"channels ops and oncall are json:// webhooks to a receiver on "
                 f"{self.sink.base}.")
        self.say("Times are seconds since the start; `>>` is a message the receiver got.")

        self.phase(1, f"hastd starts: {RES} becomes primary on host1, secondary on host2",
                   lambda: (h1.set_role(RES, "primary"), h2.set_role(RES, "secondary")))
        self.phase(2, "the nodes connect for the first time: a new pair gets its resource "
                      "ID and has nothing to copy (no syncstart)",
                   lambda: c.connect(RES), hastd=("Nodes are in sync", "Connected to"))
        self.phase(3, "host2 drops out while host1 keeps writing; on reconnecting the sync "
                      "starts, the link drops mid-sync and comes back; the sync resumes and "
                      "completes", self.link_loss_and_return,
                   hastd=("Synchronization started",))
        sb = self.phase(4, "split-brain: the link drops, both nodes write, and on "
                           f"reconnecting hastd finds {RES}'s data diverged (retrying "
                           f"every {SPLIT_BRAIN_RETRY:g}s, as it does every 10s)",
                        self.split_brain)
        self.phase(5, f"config reload: an admin raises {RES}'s timeout in host2's hast.conf "
                      "and sends hastd SIGHUP; hastd restarts the resource (role secondary "
                      "-> init -> secondary), host1 sees the disconnect and reconnects 10s "
                      "later", self.reload,
                   hastd=("configuration was modified", "Configuration reloaded"))
        self.phase(6, f"a disk starts to fail: host1's local disk under {RES} fails reads "
                      "and hastd fires nothing; `hasthook watch` (cron runs a pass a minute; "
                      "here back to back) sees the error counters rise, alerts once, and "
                      "says when they stopped", self.failing_disk)
        burst_start = (time.time(), len(self.sink.requests))
        self.phase(7, f"a cable pull: all {len(self.names)} resources lose the link at once; "
                      "host2 gives up on each after 20s, idle host1 later still; disconnect "
                      "for each, on both nodes",
                   lambda: c.link_loss(dirty_extents=0), fold=True)
        self.check(sb, *burst_start)
        return self.summary()

    def recorded(self) -> None:
        """Wait until every event fired so far is in its node's history.

        Enough for the next step's causality (a connect must find the disconnect's
        alert to resolve it), while deliveries go on: messages arrive in between,
        as they would on a real pair.
        """
        def done() -> bool:
            return all(len([r for r in self.store(h).history() if r["event"] != "recover"])
                       >= len(self.cluster.nodes[h].events()) for h in HOSTS)

        wait_for(done, PHASE_TIMEOUT, "the hooks to record their events")

    def delivered(self) -> None:
        """Wait until both outboxes are empty: every queued message was sent."""
        wait_for(lambda: not any(self.store(h).outbox_list(("pending", "sending"))
                                 for h in HOSTS), PHASE_TIMEOUT, "the outboxes to empty")

    def link_loss_and_return(self) -> None:
        c = self.cluster
        c.disconnect(RES)          # disconnect on both
        c.host1.write(RES, 64)     # 128MB host2 has not seen
        self.recorded()
        self.delivered()           # host2 stays away until the alerts are out
        c.connect(RES)             # connect on both; syncstart
        self.recorded()
        c.disconnect(RES)          # disconnect on both; syncintr on the primary
        self.recorded()
        self.delivered()
        c.connect(RES)             # connect on both; the sync resumes
        self.recorded()
        c.sync_done(RES)

    def failing_disk(self) -> None:
        """Eight watch passes on both nodes: read errors rise during the first four."""
        from hasthook.config import load
        from hasthook.log import Log
        from hasthook.watch import run_pass

        cfgs = {h: load(str(self.root / f"rules-{h}.yaml")) for h in HOSTS}
        logs = {h: Log.from_settings(cfgs[h].settings) for h in HOSTS}
        for i in range(8):
            if i < 4:
                self.cluster.host1.local_errors(RES, read=2 + i)
            for h in HOSTS:
                done = run_pass(cfgs[h], self.store(h), logs[h])
                self.tally.conditions += [e.event for e in done.events]
            self.cluster.advance(60)

    def reload(self) -> None:
        c = self.cluster
        c.reload("host2", RES, timeout=40, reconnect=False)
        self.recorded()            # the 10 s until host1's next try: the hooks run
        c.advance(10)
        c.connect(RES)

    def split_brain(self) -> Any:
        c = self.cluster
        c.disconnect(RES)
        self.recorded()
        # The primary retries; each attempt fires split-brain on both nodes until the
        # secondary's recovery (its hook) recreated it. Then a full resync.
        result = c.split_brain(RES, repeats=int(PHASE_TIMEOUT / SPLIT_BRAIN_RETRY),
                               interval=SPLIT_BRAIN_RETRY)
        if result.resolved:
            self.recorded()
            c.sync_done(RES)
        return result

    # -- checks and summary -----------------------------------------------------------

    def check(self, sb: Any, burst_t: float, burst_i: int) -> None:
        t = self.tally
        for name, node in self.cluster.nodes.items():
            bad = [r for r in node.hooks() if r["exitcode"] != 0]
            if bad:
                t.problems.append(f"{name}: {len(bad)} hooks did not exit 0")
            t.events[name] = len(self.store(name).history())
        if any(c[0] in ("role", "create") for c in self.cluster.host1.calls()):
            t.problems.append("host1 (the primary) was changed by a recovery")
        reports = self.store("host2").history(event="recover")
        states = [(r.get("extra") or {}).get("state") for r in reports]
        if not sb.resolved or states != ["recovered"]:
            t.problems.append(f"split-brain not recovered once: {states or 'no recovery'}")
        else:
            t.recovery = ("recovered on host2 (role init, create, role secondary), host1 "
                          "untouched; split-brain resolved by the resync")
        # The burst: each host's disconnect rows all sent, in how many messages.
        counts = {}
        for h in HOSTS:
            rows = [r for r in self.store(h).outbox_list(("pending", "sending", "sent", "dead"))
                    if r["event"] == "disconnect" and r["created"] >= burst_t]
            unsent = set(self.names) - {r["resource"] for r in rows if r["state"] == "sent"}
            if unsent:
                t.problems.append(f"burst on {h}: no message sent for {_names(sorted(unsent))}")
            counts[h] = len([m for m in self.sink.requests[burst_i:]
                             if isinstance(m["body"], dict)
                             and str(m["body"].get("title", "")).endswith(f"({h})")])
        told = [m for m in self.sink.requests if isinstance(m["body"], dict)
                and " io-errors" in str(m["body"].get("title", ""))]
        if t.conditions != ["io-errors", "io-errors-resolved"]:
            t.problems.append(f"watch raised {t.conditions or 'nothing'}, not one io-errors "
                              "and its end")
        else:
            t.watch = (f"io-errors on {RES} (host1) raised once and resolved once in 8 passes; "
                       f"{len(told)} messages (alert and resolved, to ops and oncall)")
        t.burst = (f"{2 * len(self.names)} disconnects -> "
                   + ", ".join(f"{n} message{'s' * (n != 1)} from {h}"
                               for h, n in counts.items()))

    def summary(self) -> int:
        t = self.tally
        by_channel: dict[str, int] = {}
        for m in self.sink.requests:
            ch = m["path"].strip("/")
            by_channel[ch] = by_channel.get(ch, 0) + 1
        queued = sum(len(self.store(h).outbox_list()) for h in HOSTS)
        hooks = sum(len(n.hooks()) for n in self.cluster.nodes.values())
        self.say("\nSummary")
        self.say(f"  events recorded: {sum(t.events.values())} "
                 f"({', '.join(f'{h} {n}' for h, n in t.events.items())}), from {hooks} "
                 "hook runs")
        self.say(f"  messages received: {len(self.sink.requests)} "
                 f"({', '.join(f'{c} {n}' for c, n in by_channel.items())}); "
                 f"{queued} left in the outboxes")
        self.say(f"  recovery: {t.recovery}")
        self.say(f"  burst: {t.burst}")
        self.say(f"  watch: {t.watch}")
        self.say(f"  took {time.time() - self.t0:.1f}s")
        if t.problems:
            self.say("demo FAILED: " + "; ".join(t.problems))
            return 1
        self.say("See `hasthook history`, `hasthook queue` and `hasthook status` for the "
                 "same on a real node.")
        return 0


def main(out: TextIO = sys.stdout, resources: int = 20) -> int:
    """Run the demo in a temporary directory (removed after); 0 when all went as told."""
    with tempfile.TemporaryDirectory(prefix="hasthook-demo-") as tmp, HttpSink() as sink:
        demo = Demo(Path(tmp), sink, out, resources)
        try:
            return demo.run()
        finally:
            demo.close()
