"""Split-brain recovery on the simulator: two nodes, real hook processes, real hastctl calls.

Every claim is checked on the simulator's hastctl call log (what was run, in
what order, on which node), the history and the messages a real HTTP
receiver got. Nothing waits on a clock: hooks are polled until reaped, and
"ten minutes later" is said by moving the recorded recovery times back.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import threading

import pytest
import yaml
from conftest import SyslogSink, command, run_cmd
from receivers import wait_until

from hasthook.sim import SimCluster, SimNode

RES = "shared1"
SEQ = [["role", "init", RES], ["create", RES], ["role", "secondary", RES]]


class DrainedSyslog(SyslogSink):
    """A syslog sink read all the time, as syslogd is: a datagram socket that nobody
    reads holds a handful of lines, then every sender waits."""

    def __init__(self):
        super().__init__()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.01):
            self.drain()

    def drain(self):
        with self.lock:
            return super().drain()

    def close(self):
        self.stop.set()
        self.thread.join()
        super().close()


def mutating(calls):
    return [c for c in calls if c[0] in ("role", "create")]


class Pair:
    """A SimCluster (host1 primary, host2 secondary) whose hooks are hasthook-exec,
    each node with its own config, state dir and syslog; one HTTP receiver for `ops`."""

    def __init__(self, tmp_path, http):
        self.tmp = tmp_path
        self.http = http
        self.c = SimCluster(tmp_path / "c", [{"name": RES, "localpath": "/dev/ada1"}])
        self.syslog = {n: DrainedSyslog() for n in self.c.nodes}
        self.c.steady("host1")

    def configure(self, recover=None, extra_rules=(), mode=0o600, rules=None, channels=(),
                  **settings):
        """Write both nodes' rules files and point each node's hast.conf exec at the hook."""
        given = rules
        for name, node in self.c.nodes.items():
            rules = given if given is not None else [
                     {"name": "split-brain", "match": {"event": "split-brain"},
                      "group_wait": "0s", "repeat_interval": "1h",
                      "actions": [{"notify": "ops"}]
                      + ([{"recover": recover}] if recover is not None else [])},
                     {"name": "roles", "match": {"event": "role"}, "group_wait": "0s",
                      "actions": [{"notify": "ops"}]},
                     *extra_rules]
            data = {"channels": {"ops": f"json://{self.http.base}/{name}",
                                 **{c: f"json://{self.http.base}/{c}-{name}" for c in channels}},
                    "settings": {"hostname": name, "state_dir": str(self.state(name)),
                                 "hastctl": node.hastctl_path, "group_wait": "0s",
                                 "syslog": {"socket": self.syslog[name].path}, **settings},
                    "rules": rules}
            path = self.config(name)
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            path.chmod(mode)
            hook = self.tmp / f"hook-{name}"
            hook.write_text(f"#!/bin/sh\nHASTHOOK_CONFIG={path} exec "
                            f"{command('hasthook-exec')} \"$@\"\n")
            hook.chmod(0o755)
            node.set_exec(str(hook))

    def config(self, name):
        return self.tmp / f"{name}.yaml"

    def state(self, name):
        return self.tmp / f"state-{name}"

    def node(self, name) -> SimNode:
        return self.c.nodes[name]

    def history(self, name, *args):
        r = run_cmd(command("hasthook"), "history", "--json", "-c", str(self.config(name)),
                    *args)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def messages(self, name, channel=None):
        path = f"/{channel}-{name}" if channel else f"/{name}"
        return [r["body"] for r in self.http.received(path)]

    def wait_messages(self, name, n):
        return wait_until(lambda: len(self.messages(name)) >= n and self.messages(name),
                          what=f"{n} messages from {name}")

    def time_passes(self, name, seconds):
        """Move every recorded recovery back in time: as if `seconds` had passed."""
        db = sqlite3.connect(self.state(name) / "hasthook.db")
        with db:
            db.execute("UPDATE recoveries SET started = started - ?, finished = finished - ?",
                       (seconds, seconds))
        db.close()

    def close(self):
        self.c.close()
        for s in self.syslog.values():
            s.close()


@pytest.fixture
def pair(tmp_path, http):
    p = Pair(tmp_path, http)
    yield p
    p.close()


def recover_outcome(row):
    [a] = [a for a in row["outcome"]["actions"] if a["action"] == "recover"]
    return a


# -- the hook -------------------------------------------------------------------------


def test_storm_on_both_nodes_recovers_the_secondary_exactly_once(pair):
    """hastd repeats split-brain on both nodes; only the secondary is reset, once."""
    pair.configure(recover={"delay": "5s"})
    # "A minute" of retries, all before the reset: it waits its delay after taking the lock.
    result = pair.c.split_brain(RES, repeats=6, interval=0.1)
    assert result.rounds == 6 and not result.resolved
    pair.c.wait_hooks(timeout=60)
    h1, h2 = pair.node("host1"), pair.node("host2")
    assert mutating(h1.calls()) == []
    assert mutating(h2.calls()) == SEQ
    assert h2.role(RES) == "secondary"

    # The next retry of the primary finds a fresh secondary: full resync, then syncdone.
    again = pair.c.split_brain(RES, repeats=6, interval=0.1)
    assert again.resolved and again.rounds == 0
    pair.c.sync_done(RES)
    pair.c.wait_hooks(timeout=60)
    assert mutating(h2.calls()) == SEQ and mutating(h1.calls()) == []

    hist = pair.history("host2")
    sb = [r for r in hist if r["event"] == "split-brain"]
    states = sorted(recover_outcome(r)["state"] for r in sb)
    assert len(sb) == 6 and states.count("recovered") == 1
    assert set(states) <= {"recovered", "busy", "handled"}
    ours = [r for r in hist if r["event"] == "role"]
    assert [(r["old_role"], r["new_role"], r["cause"]) for r in reversed(ours)] == [
        ("secondary", "init", "recover"), ("init", "secondary", "recover")]
    [rep] = [r for r in hist if r["event"] == "recover"]
    assert rep["cause"] == "recover" and rep["extra"]["state"] == "recovered"
    assert [s["rc"] for s in rep["extra"]["steps"]] == [0, 0, 0]
    assert (rep["extra"]["role_before"], rep["extra"]["role_after"]) == ("secondary",
                                                                        "secondary")
    assert all(recover_outcome(r)["state"] == "primary"
               for r in pair.history("host1", "--event", "split-brain"))

    # The primary logged no recovery line; the secondary logged the article's, once.
    pair.syslog["host2"].wait_for("recover role secondary")
    lines = [ln for ln in pair.syslog["host2"].drain() if "recover role" in ln]
    assert len(lines) == 1 and re.match(r"<13>.* hast-recover\[\d+\]: "
                                        r"HAST \[shared1\] recover role secondary$", lines[0])
    assert not [ln for ln in pair.syslog["host1"].drain() if "recover role" in ln]

    # One report through the rule's channel; the recovery's role changes are not told.
    msgs = pair.wait_messages("host2", 2)
    reports = [m for m in msgs if "recovered" in m["title"]]
    assert len(reports) == 1
    body = reports[0]["message"]
    for text in ("resource: shared1", "host: host2", "role before: secondary",
                 "role after: secondary", "role init shared1 -> exit 0",
                 "create shared1 -> exit 0", "role secondary shared1 -> exit 0",
                 "discarded", "full resync"):
        assert text in body, (text, body)
    assert not [m for m in msgs if "is now" in m["title"]]  # the `roles` rule stayed quiet
    assert len([m for m in msgs if "SPLIT-BRAIN" in m["title"]]) == 1  # repeat_interval


def test_six_hooks_at_the_same_moment_recover_once(pair):
    pair.configure(recover={"delay": "0s"})
    for _ in range(6):
        pair.node("host2").fire("split-brain", RES)
        pair.node("host1").fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    runs = pair.node("host2").hooks()
    assert [r["exitcode"] for r in runs] == [0] * len(runs), runs
    assert mutating(pair.node("host2").calls()) == SEQ
    assert mutating(pair.node("host1").calls()) == []
    sb = pair.history("host2", "--event", "split-brain")
    # Every hook acted on its own event (none was cut short or spooled); if one was not,
    # its syslog says why.
    assert all(r["outcome"] for r in sb), (sb, pair.syslog["host2"].drain())
    states = [recover_outcome(r)["state"] for r in sb]
    assert sorted(states).count("recovered") == 1 and len(states) == 6


def test_turning_primary_during_the_delay_means_no_action(pair):
    pair.configure(recover={"delay": "5s"})
    h2 = pair.node("host2")
    h2.fire("split-brain", RES)
    pair.syslog["host2"].wait_for("waiting 5s before reading the role", timeout=30)
    h2.set_role(RES, "primary")  # CARP moved the service here meanwhile
    pair.c.wait_hooks(timeout=60)
    assert mutating(h2.calls()) == []
    [sb] = pair.history("host2", "--event", "split-brain")
    assert recover_outcome(sb)["state"] == "primary"


def test_create_failing_stops_restores_the_role_and_alerts(pair):
    pair.configure(recover={"delay": "0s"})
    h2 = pair.node("host2")
    h2.fail_create(RES, "Input/output error")
    h2.fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    assert mutating(h2.calls()) == SEQ  # init, the failed create, back to secondary
    assert h2.role(RES) == "secondary"
    [rep] = pair.history("host2", "--event", "recover")
    assert rep["severity"] == "critical" and rep["extra"]["state"] == "failed"
    assert [s["rc"] for s in rep["extra"]["steps"]] == [0, 66, 0]
    msgs = pair.wait_messages("host2", 2)
    [alert] = [m for m in msgs if "recovery failed" in m["title"]]
    assert "[critical]" in alert["title"] and alert["type"] == "failure"
    assert "Unable to open /dev/ada1: Input/output error" in alert["title"]
    assert "put back to role secondary" in alert["message"]
    pair.syslog["host2"].wait_for("recovery FAILED")


def test_cooldown_and_max_attempts_hold_across_processes(pair):
    pair.configure(recover={"delay": "0s", "cooldown": "10m", "max_attempts": 2,
                            "window": "1h"})
    h2 = pair.node("host2")

    def split_brain():
        h2.fire("split-brain", RES)
        pair.c.wait_hooks(timeout=60)
        return recover_outcome(pair.history("host2", "--event", "split-brain")[0])

    assert split_brain()["state"] == "recovered"
    pair.time_passes("host2", 60)
    o = split_brain()
    assert o["state"] == "cooldown" and o["alert"] == "recovery loop"
    pair.time_passes("host2", 60)
    o = split_brain()
    assert o["state"] == "cooldown" and o["alert"] is None  # one alert per episode
    assert mutating(h2.calls()) == SEQ

    pair.time_passes("host2", 11 * 60)
    assert split_brain()["state"] == "recovered"
    pair.time_passes("host2", 11 * 60)
    o = split_brain()
    assert o["state"] == "max-attempts" and o["alert"] == "recovery loop"
    assert mutating(h2.calls()) == SEQ * 2

    alerts = [r for r in pair.history("host2", "--event", "recover")
              if r["severity"] == "critical"]
    assert [a["extra"]["state"] for a in reversed(alerts)] == ["cooldown", "max-attempts"]
    msgs = pair.wait_messages("host2", 4)
    loops = [m for m in msgs if "recovery loop" in m["title"]]
    assert len(loops) == 2 and all(m["type"] == "failure" for m in loops)
    assert "max_attempts 2" in loops[-1]["title"] or "max_attempts 2" in loops[-1]["message"]


def test_dry_run_changes_nothing(pair):
    pair.configure(recover={"delay": "0s", "dry_run": True,
                            "pre": [["zfs", "snapshot", "tank/hast/{resource}@x"]]})
    for name in ("host1", "host2"):
        pair.node(name).fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    assert mutating(pair.node("host1").calls()) == []
    assert mutating(pair.node("host2").calls()) == []
    [rep] = pair.history("host2", "--event", "recover")
    assert rep["extra"]["state"] == "dry-run" and rep["severity"] == "info"
    [msg] = [m for m in pair.wait_messages("host2", 2) if "dry run" in m["title"]]
    assert "zfs snapshot tank/hast/shared1@x" in msg["message"]
    assert "role init shared1" in msg["message"]


def standin(tmp_path, name, body):
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_pre_step_runs_first_with_placeholders(pair, tmp_path):
    seen = tmp_path / "zfs.out"
    # A pre-step gets the minimal environment (PATH=/sbin:/bin:/usr/sbin:/usr/bin), where
    # FreeBSD's hastctl is /sbin/hastctl; the simulated node's is named in full.
    hastctl = pair.node("host2").hastctl_path
    zfs = standin(tmp_path, "zfs", f'echo "$@" > {seen}\n{hastctl} list shared1 | '
                                   f"awk '$1 == \"role:\" {{print $2}}' >> {seen}\n")
    pair.configure(recover={"delay": "0s",
                            "pre": [[zfs, "snapshot", "tank/hast/{resource}@hasthook-{time}"]]})
    pair.node("host2").fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    args, role = seen.read_text().splitlines()
    assert re.fullmatch(r"snapshot tank/hast/shared1@hasthook-\d{8}T\d{6}Z", args)
    assert role == "secondary"  # taken before anything changed
    assert mutating(pair.node("host2").calls()) == SEQ


def test_failing_pre_step_aborts(pair, tmp_path):
    zfs = standin(tmp_path, "zfs", "echo \"cannot create snapshot: out of space\" >&2\nexit 1\n")
    pair.configure(recover={"delay": "0s", "pre": [[zfs, "snapshot", "tank/hast/{resource}@s"]]})
    pair.node("host2").fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    assert mutating(pair.node("host2").calls()) == []
    [rep] = pair.history("host2", "--event", "recover")
    assert rep["extra"]["state"] == "pre-failed" and rep["severity"] == "critical"
    [alert] = [m for m in pair.wait_messages("host2", 2) if "pre-step failed" in m["title"]]
    assert "out of space" in alert["title"]


def test_pre_steps_refused_from_a_config_others_can_write(pair, tmp_path):
    mark = tmp_path / "ran"
    pair.configure(recover={"delay": "0s", "pre": [["touch", str(mark)]]}, mode=0o666)
    assert stat.S_IMODE(os.stat(pair.config("host2")).st_mode) == 0o666
    pair.node("host2").fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    assert not mark.exists()
    assert mutating(pair.node("host2").calls()) == []
    # The trust rule (issue 13): nothing this file names runs as root, settings.hastctl
    # included; /sbin/hastctl stands in (absent here), so the recovery cannot read the role.
    [rep] = pair.history("host2", "--event", "recover")
    assert rep["extra"]["state"] == "no-role" and "/sbin/hastctl" in rep["extra"]["detail"]
    assert pair.node("host2").calls() == []  # the config's hastctl never ran
    line = pair.syslog["host2"].wait_for("programs refused")
    assert "writable by group or other (mode 0666)" in line


def test_recovery_alerts_can_be_routed_by_cause(pair, http):
    """A rule naming `cause: recover` takes the report; rules without it never see it."""
    page = {"name": "page", "match": {"cause": "recover", "severity": "critical"},
            "group_wait": "0s", "actions": [{"notify": "pager"}]}
    pair.configure(recover={"delay": "0s"}, extra_rules=[page])
    for name in ("host1", "host2"):  # a pager channel on each node's config
        data = yaml.safe_load(pair.config(name).read_text())
        data["channels"]["pager"] = f"json://{http.base}/pager-{name}"
        pair.config(name).write_text(yaml.safe_dump(data, sort_keys=False))
    h2 = pair.node("host2")
    h2.fail_role(RES, 5)  # hastd refuses the role change: the recovery fails at once
    h2.fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    [alert] = wait_until(lambda: http.received("/pager-host2"), what="the page")
    assert "recovery failed" in alert["body"]["title"]
    assert mutating(h2.calls()) == [["role", "init", RES]]


def test_report_reaches_the_channels_told_about_the_split_brain(pair):
    """rules.example.yaml's layout: recover in its own `continue` rule, notify in the next."""
    pair.configure(rules=[
        {"name": "split-brain-recover", "match": {"event": "split-brain", "role": "secondary"},
         "continue": True, "actions": [{"recover": {"delay": "0s"}}]},
        {"name": "split-brain", "match": {"event": "split-brain"}, "repeat_interval": "30m",
         "actions": [{"notify": "ops"}]}])
    pair.node("host2").fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    assert mutating(pair.node("host2").calls()) == SEQ
    msgs = pair.wait_messages("host2", 2)
    assert [m for m in msgs if "split-brain recovered" in m["title"]]


def test_failure_with_no_channel_told_goes_to_the_alert_channels(pair):
    pair.configure(rules=[{"name": "sb", "match": {"event": "split-brain"},
                           "actions": [{"recover": {"delay": "0s"}}]}])
    h2 = pair.node("host2")
    h2.fail_create(RES, "Input/output error")
    h2.fire("split-brain", RES)
    pair.c.wait_hooks(timeout=60)
    [alert] = pair.wait_messages("host2", 1)
    assert "recovery failed" in alert["title"] and alert["type"] == "failure"


# -- `hasthook recover`, the article's script ----------------------------------------------


@pytest.fixture
def node(tmp_path, write_config):
    n = SimNode(tmp_path / "node", "host2", [{"name": RES, "localpath": "/dev/ada1"}])
    n.set_state(RES, role="secondary")
    n.cfg = write_config(hastctl=n.hastctl_path, hostname="host2")
    yield n
    n.close()


def recover(node, *args):
    return run_cmd(command("hasthook"), "recover", *args, "-c", str(node.cfg))


def test_command_without_resource_prints_usage_and_exits_64(node):
    r = recover(node)
    assert r.returncode == 64
    assert r.stderr.startswith("usage: hasthook recover RESOURCE")
    assert node.calls() == []


def test_command_on_secondary_runs_the_articles_sequence(node, syslog):
    r = recover(node, RES, "--delay", "0")
    assert r.returncode == 0, r.stderr
    assert node.calls()[0] == ["list", RES]
    assert mutating(node.calls()) == SEQ
    line = syslog.wait_for("recover role secondary")
    assert re.match(r"<13>.* hast-recover\[\d+\]: HAST \[shared1\] recover role secondary$",
                    line)
    assert node.role(RES) == "secondary"
    assert "discarded" in r.stdout


def test_command_on_primary_does_nothing(node, syslog):
    node.set_state(RES, role="primary")
    r = recover(node, RES, "--delay", "0")
    assert r.returncode == 0
    assert mutating(node.calls()) == []
    syslog.wait_for("not recovering the primary")


def test_command_without_role_does_nothing_and_fails(node, syslog):
    node.stop_hastd()
    r = recover(node, RES, "--delay", "0")
    assert r.returncode == 69
    assert mutating(node.calls()) == []
    assert "Connection refused" in r.stderr
    syslog.wait_for("nothing done")


def test_command_init_stays_init_unless_restore_role(node):
    node.set_state(RES, role="init")
    assert recover(node, RES, "--delay", "0").returncode == 0
    assert mutating(node.calls()) == [["role", "init", RES], ["create", RES],
                                      ["role", "init", RES]]
    node.clear_calls()
    assert recover(node, RES, "--delay", "0", "--restore-role", "secondary").returncode == 0
    assert mutating(node.calls()) == [["role", "init", RES], ["create", RES],
                                      ["role", "secondary", RES]]
    assert node.role(RES) == "secondary"


def test_command_dry_run_changes_nothing(node):
    r = recover(node, RES, "--delay", "0", "--dry-run")
    assert r.returncode == 0
    assert mutating(node.calls()) == []
    assert "would run: " in r.stdout and "create shared1" in r.stdout


def test_command_create_failing_restores_and_exits_69(node):
    node.fail_create(RES, "Input/output error")
    r = recover(node, RES, "--delay", "0")
    assert r.returncode == 69
    assert mutating(node.calls()) == SEQ
    assert node.role(RES) == "secondary"
    assert "Input/output error" in r.stderr


def test_command_refuses_while_a_recovery_runs(node, tmp_path):
    from hasthook.tools.recover import resource_lock

    with resource_lock(str(tmp_path / "state"), RES):
        r = recover(node, RES, "--delay", "0")
    assert r.returncode == 75 and "already running" in r.stderr
    assert node.calls() == []


def test_command_recovery_is_in_history_and_tags_its_role_events(node, tmp_path):
    hook = tmp_path / "hook"
    hook.write_text(f"#!/bin/sh\nHASTHOOK_CONFIG={node.cfg} exec "
                    f"{command('hasthook-exec')} \"$@\"\n")
    hook.chmod(0o755)
    node.set_exec(str(hook))
    env_cfg = {"HASTHOOK_CONFIG": str(node.cfg)}
    r = run_cmd(command("hasthook"), "recover", RES, "--delay", "0", env=env_cfg)
    assert r.returncode == 0, r.stderr
    node.wait_hooks(timeout=60)
    hist = json.loads(run_cmd(command("hasthook"), "history", "--json", env=env_cfg).stdout)
    [rep] = [h for h in hist if h["event"] == "recover"]
    assert rep["extra"]["origin"] == "command" and rep["extra"]["state"] == "recovered"
    roles = [h for h in hist if h["event"] == "role"]
    assert len(roles) == 2 and all(h["cause"] == "recover" for h in roles)


def test_hasthook_test_describes_the_recovery_and_touches_nothing(node, write_config, tmp_path):
    cfg = write_config({"rules": [{"name": "sb", "match": {"event": "split-brain"},
                                   "actions": [{"recover": {"pre": [
                                       ["zfs", "snapshot", "tank/{resource}@{time}"]]}}]}]},
                       hastctl=node.hastctl_path)
    r = run_cmd(command("hasthook"), "test", "split-brain", RES, "--role", "secondary",
                "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "hastctl role init shared1; hastctl create shared1" in r.stdout
    assert re.search(r"zfs snapshot tank/shared1@\d{8}T\d{6}Z", r.stdout)
    assert node.calls() == []
    assert not (tmp_path / "state" / "hasthook.db").exists() or not json.loads(
        run_cmd(command("hasthook"), "history", "--json", "-c", str(cfg)).stdout)
