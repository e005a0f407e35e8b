"""A recovery never touches a primary, never undoes a promotion, and is never silent
when it dies half way (issue 13), on the simulator with real hook processes.

The simulator promotes the resource between two of the recovery's hastctl calls
(SimNode.promote_after), as CARP through devd or an admin would; `hastctl create`
on a resource in use succeeds (FreeBSD's create takes no lock), so only the
recovery's own checks stand between it and the primary's metadata.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from conftest import command, run_cmd
from receivers import HttpSink, wait_until

from hasthook.sim.driver import SimNode
from hasthook.tools.recover import resource_lock

RES = "shared1"


@pytest.fixture
def node(tmp_path, write_config):
    http = HttpSink()
    n = SimNode(tmp_path / "node", "host2", [{"name": RES, "localpath": "/dev/ada1"}])
    n.set_state(RES, role="secondary")
    n.http = http
    n.cfg = write_config({"channels": {"ops": f"json://{http.base}/ops"}},
                         hastctl=n.hastctl_path, hostname="host2", group_wait="0s",
                         syslog={"socket": "/nonexistent"}, hastd_pidfile=str(n.pidfile),
                         dev_dir=str(n.dev_dir), commands={"pgrep": n.pgrep_path})
    yield n
    n.close()
    http.down()


def hasthook(node: SimNode, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cmd(command("hasthook"), *args, "-c", str(node.cfg), timeout=timeout)


def open_files(pid: int) -> set[str]:
    """What the process has open now (nothing once it is gone)."""
    fds = f"/proc/{pid}/fd"
    out = set()
    try:
        for fd in os.listdir(fds):
            out.add(os.readlink(os.path.join(fds, fd)))
    except OSError:
        pass
    return out


def kill_create(node: SimNode) -> None:
    """Kill the `hastctl create` a killed recovery left running (in its own session)."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if node.hastctl_path.encode() in argv[:2] and b"create" in argv:
                os.kill(int(p), signal.SIGKILL)


def mutating_after(calls: list[list[str]], call: list[str]) -> list[list[str]]:
    """The role/create calls made after the first `call`."""
    i = calls.index(call)
    return [c for c in calls[i + 1:] if c[0] in ("role", "create")]


@pytest.mark.parametrize("gap, call, nth", [
    ("after the first read", ["list", RES], 1),
    ("after role init", ["role", "init", RES], 1),
    ("after create", ["create", RES], 1),
])
def test_a_promotion_between_the_recoverys_calls_stops_it(node, gap, call, nth):
    node.promote_after(" ".join(call), RES, nth)
    r = hasthook(node, "recover", RES, "--delay", "0")
    assert r.returncode != 0, gap
    assert node.role(RES) == "primary"  # promoted, and left so
    assert mutating_after(node.calls(), call) == []  # nothing changed it afterwards
    assert "stopped" in r.stderr and "role primary" in r.stderr
    report = json.loads(hasthook(node, "history", "--json", "--event", "recover").stdout)[0]
    assert report["extra"]["state"] == "stopped" and report["severity"] == "critical"
    assert [s["name"] for s in report["extra"]["steps"]][-1] == "check"  # says why it stopped


def test_a_failed_step_never_demotes_a_primary(node):
    """create fails, and meanwhile the resource was promoted: the restore step (back to
    secondary) must not run, since the resource is no longer in the init it left."""
    node.fail_create(RES)
    node.promote_after(f"create {RES}", RES)
    r = hasthook(node, "recover", RES, "--delay", "0")
    assert r.returncode != 0
    assert node.role(RES) == "primary"
    assert mutating_after(node.calls(), ["create", RES]) == []
    assert "left as it is" in r.stderr


def test_role_primary_during_a_recovery_waits_or_fails_but_never_races_it(node, tmp_path):
    node.hold("create")  # the recovery is mid-way while `hasthook role` runs
    pidfile = node.pidfile
    assert pidfile.exists()
    rec = subprocess.Popen([command("hasthook"), "recover", RES, "--delay", "0", "-c",
                            str(node.cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: node.holding("create"), what="the recovery's create")
    r = hasthook(node, "role", "primary", RES, "--wait", "0.5")
    assert rec.poll() is None  # the recovery was still changing the resource ...
    assert r.returncode == 75 and "a recovery is changing it" in r.stderr  # ... so: no
    assert ["role", "primary", RES] not in node.calls()
    waiting = subprocess.Popen([command("hasthook"), "role", "primary", RES, "--wait", "60",
                                "-c", str(node.cfg)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # waits its turn
    lock = resource_lock(str(tmp_path / "state"), RES).path
    wait_until(lambda: lock in open_files(waiting.pid), what="`role` at the lock")
    assert waiting.poll() is None  # at the lock the recovery holds: it waits
    node.let_go("create")
    assert rec.wait(60) == 0
    _, err = waiting.communicate(timeout=90)
    assert waiting.returncode == 0, err
    calls = node.calls()
    assert calls.index(["role", "primary", RES]) > calls.index(["role", "secondary", RES])


def test_a_recovery_killed_mid_way_is_told_once(node, tmp_path):
    """kill -9 between `role init` and `create`: the resource stays in init, and no
    split-brain will fire again to notice. The next hook, flush or status tells, once."""
    hook = tmp_path / "hook"
    hook.write_text(f"#!/bin/sh\nHASTHOOK_CONFIG={node.cfg} exec {command('hasthook-exec')} "
                    '"$@"\n')
    hook.chmod(0o755)
    cfg = node.cfg.read_text().replace("rules: []", "")
    node.cfg.write_text(cfg + "rules:\n- name: sb\n  match: {event: split-brain}\n"
                        "  actions: [{recover: {delay: 0s}}]\n")
    node.set_exec(str(hook))
    node.hang("create", 60)
    node.fire("split-brain", RES)
    wait_until(lambda: ["create", RES] in node.calls(), what="the recovery's create")
    [running] = [h for h in node.hooks()
                 if h["state"] == "running" and h["words"][0] == "split-brain"]
    os.kill(running["pid"], signal.SIGKILL)
    kill_create(node)
    node.wait_hooks()
    node.clear_faults()
    assert node.role(RES) == "init"
    # The next hook (here the role hook the recovery's own `role init` fired), flush or
    # status notices: whichever comes first tells, and nobody tells again.
    assert hasthook(node, "flush").returncode in (0, 75)
    assert hasthook(node, "status").returncode in (0, 1)
    assert hasthook(node, "flush").returncode in (0, 75)

    def interrupted():
        return [m["body"] for m in node.http.received("/ops")
                if "interrupted" in m["body"]["title"]]

    [alert] = wait_until(interrupted, what="the alert")
    assert "interrupted after role init" in alert["title"]
    assert "the resource is in role init" in alert["message"]
    assert f"hasthook recover {RES}" in alert["message"]
    assert hasthook(node, "flush").returncode in (0, 75)
    assert len(interrupted()) == 1


def kill_mid_recovery(node):
    """`hasthook recover` killed between `role init` and `create` on a node wiring no
    hook: nothing else notices but the next flush or status."""
    node.hang("create", 60)
    rec = subprocess.Popen([command("hasthook"), "recover", RES, "--delay", "0", "-c",
                            str(node.cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    wait_until(lambda: ["create", RES] in node.calls(), what="the recovery's create")
    os.killpg(rec.pid, signal.SIGKILL)
    rec.wait()
    kill_create(node)
    node.clear_faults()


def queued(node):
    r = hasthook(node, "queue", "--json", "--sent")
    return [m for m in json.loads(r.stdout) if "interrupted" in m["title"]]


def test_the_next_flush_queues_one_interrupted_alert_and_the_second_none(node):
    kill_mid_recovery(node)
    assert queued(node) == []
    hasthook(node, "flush")
    [alert] = queued(node)
    assert alert["severity"] == "critical" and "after role init" in alert["title"]
    hasthook(node, "flush")
    assert len(queued(node)) == 1
    assert node.role(RES) == "init"


def test_status_alone_tells_an_interrupted_recovery(node):
    """status opens the history read-only; telling the recovery writes to it."""
    kill_mid_recovery(node)
    r = hasthook(node, "status")
    assert r.returncode in (0, 1), r.stderr
    assert r.stderr == ""
    [alert] = queued(node)
    assert alert["severity"] == "critical" and "after role init" in alert["title"]
    assert hasthook(node, "status").returncode in (0, 1)
    assert len(queued(node)) == 1
