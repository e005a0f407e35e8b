"""`hasthook role`: hastrole.sh fixed. A stub hastctl, real pgrep, real process titles."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time
import uuid

import pytest
from conftest import command, run_cmd

from hasthook import sysexits
from hasthook.config.settings import Settings
from hasthook.hast import Metadata, Resource, Result
from hasthook.sim import SimCluster, SimNode
from hasthook.sim.core import cmdline
from hasthook.tools.role import (
    ere_escape,
    hastd_pid,
    secondary_pattern,
    secondary_running,
    set_role,
    wait_for,
)

PGREP = shutil.which("pgrep") or "/bin/pgrep"
# In resource names pgrep looks for, so no other test's (or test run's) workers match.
U = uuid.uuid4().hex[:6]
R1, R2, R3, SHARED, DISK = (f"{n}-{U}" for n in ("r1", "r2", "r3", "shared1", "disk0"))


class StubHastctl:
    """Answers dump/list/role from a dict; `role primary` makes the device (after `delay`)."""

    path = "hastctl"

    def __init__(self, dev_dir, resources: dict[str, str], fail: set[str] = frozenset(),
                 delay: float = 0.0, make_device: bool = True):
        self.dev_dir = dev_dir
        self.prov = resources            # name -> provname
        self.roles = dict.fromkeys(resources, "secondary")
        self.fail = fail
        self.delay = delay
        self.make_device = make_device
        self.calls: list[tuple[str, ...]] = []

    def dump(self, *names):
        self.calls.append(("dump", *names))
        return {n: Metadata(n) for n in self.prov}, Result(["dump"], 0)

    def list(self, *names):
        self.calls.append(("list", *names))
        return ({n: Resource(n, role=self.roles[n], provname=p) for n, p in self.prov.items()},
                Result(["list"], 0))

    def role(self, role, *names):
        self.calls.append(("role", role, *names))
        (name,) = names
        if name in self.fail:
            return Result(["role"], 1, "", f"[{name}] Received error 1 from hastd.")
        self.roles[name] = role
        if role == "primary" and self.make_device:
            dev = os.path.join(self.dev_dir, self.prov[name])
            threading.Timer(self.delay, lambda: open(dev, "w").close()).start()
        return Result(["role"], 0)

    def role_calls(self):
        return [c for c in self.calls if c[0] == "role"]


class Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda msg: self.lines.append((level, msg))

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


@pytest.fixture
def node(tmp_path):
    """A live 'hastd' (this test's own pid in the pid file), a device dir, settings."""
    dev = tmp_path / "dev"
    dev.mkdir()
    pidfile = tmp_path / "hastd.pid"
    pidfile.write_text(f"{os.getpid()}")
    settings = {"hastd_pidfile": str(pidfile), "dev_dir": str(dev),
                "commands": {"pgrep": PGREP}}
    return settings


class Titled:
    """A process titled like hastd's worker, as `exec -a` gives it."""

    def __init__(self, title: str):
        self.p = subprocess.Popen(["bash", "-c", 'exec -a "$0" sleep 30', title])
        path = f"/proc/{self.p.pid}/cmdline"
        assert wait_for(lambda: _cmdline(path).startswith(title), 5), "title never set"

    def stop(self):
        self.p.kill()
        self.p.wait()


def _cmdline(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture
def titled():
    made: list[Titled] = []

    def make(title: str) -> Titled:
        t = Titled(title)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()


# -- pieces ------------------------------------------------------------------

def test_ere_escape_and_pattern():
    assert ere_escape("a.b*c-d") == r"a\.b\*c-d"
    assert secondary_pattern("r(1)") == r"^hastd: r\(1\) \(secondary\)"


def test_hastd_pid(tmp_path):
    p = tmp_path / "pid"
    assert hastd_pid(str(p))[0] is None
    p.write_text("garbage")
    assert "no pid" in hastd_pid(str(p))[1]
    dead = subprocess.Popen(["true"])
    dead.wait()
    p.write_text(f"{dead.pid}\n")
    pid, why = hastd_pid(str(p))
    assert pid is None and "not running" in why
    p.write_text(str(os.getpid()))
    assert hastd_pid(str(p)) == (os.getpid(), "")


def test_pgrep_sees_the_title_and_escapes_hostile_names(titled):
    titled(f"hastd: aXb{U} (secondary)")
    assert secondary_running(f"aXb{U}", PGREP)
    # Unescaped, "a.b" would match "aXb"; and a name is anchored after "hastd: ".
    assert not secondary_running(f"a.b{U}", PGREP)
    assert not secondary_running(f"Xb{U}", PGREP)
    assert not secondary_running(f"aXb{U} (secondary)|.*", PGREP)


# -- set_role ----------------------------------------------------------------


def S(node: dict) -> Settings:  # noqa: N802 - reads as the type it makes
    return Settings.from_dict(node)


def say(buf: io.StringIO):
    """What `hasthook role` does with set_role's messages: one line each."""
    return lambda msg: print(msg, file=buf)

def test_hastd_not_running_refuses_with_69(node, tmp_path):
    node["hastd_pidfile"] = str(tmp_path / "nope.pid")
    ctl, out, log = StubHastctl(node["dev_dir"], {"r1": "r1"}), io.StringIO(), Log()
    assert set_role("secondary", [], ctl, S(node), log, 1, say=say(out)) == sysexits.EX_UNAVAILABLE
    assert out.getvalue().count("\n") == 1 and "hastd is not running" in out.getvalue()
    assert ctl.role_calls() == []


@pytest.mark.parametrize("role", ["init", "secondary"])
def test_init_and_secondary_go_straight_to_every_resource(node, role):
    ctl, log = StubHastctl(node["dev_dir"], {"r1": "r1", "r2": "p2"}), Log()
    assert set_role(role, [], ctl, S(node), log, 1, say=say(io.StringIO())) == 0
    assert ctl.role_calls() == [("role", role, "r1"), ("role", role, "r2")]
    assert f"[r2] role set to {role}" in log.text()


def test_primary_waits_for_the_secondary_worker_to_leave(node, titled):
    ctl, log = StubHastctl(node["dev_dir"], {R1: R1}, delay=0.3), Log()
    worker = titled(f"hastd: {R1} (secondary)")
    threading.Timer(0.5, worker.stop).start()
    t0 = time.monotonic()
    assert set_role("primary", [R1], ctl, S(node), log, 10, say=say(io.StringIO())) == 0
    assert time.monotonic() - t0 >= 0.5
    assert worker.p.poll() is not None
    assert ctl.role_calls() == [("role", "primary", R1)]
    assert os.path.exists(os.path.join(node["dev_dir"], R1))
    assert "waiting up to 10s" in log.text()


def test_primary_refuses_while_a_secondary_worker_stays(node, titled):
    ctl, out, log = StubHastctl(node["dev_dir"], {R1: R1, R2: R2}), io.StringIO(), Log()
    titled(f"hastd: {R2} (secondary)")
    assert set_role("primary", [], ctl, S(node), log, 0.4, say=say(out)) == 1
    assert out.getvalue() == (f"FATAL: Secondary process for resource {R2} is still running "
                              "after 0.4 seconds.\n")
    assert ctl.role_calls() == []
    assert ("crit", f"FATAL: Secondary process for resource {R2} is still running after 0.4 "
            "seconds. No role was changed.") in log.lines


def test_primary_waits_for_the_provider_not_the_resource_name(node):
    ctl = StubHastctl(node["dev_dir"], {SHARED: DISK}, delay=0.3)
    assert set_role("primary", [SHARED], ctl, S(node), Log(), 5, say=say(io.StringIO())) == 0
    assert os.path.exists(os.path.join(node["dev_dir"], DISK))


def test_primary_fails_when_the_provider_never_appears(node):
    ctl, out = StubHastctl(node["dev_dir"], {SHARED: DISK}, make_device=False), io.StringIO()
    # A device named after the resource does not count.
    open(os.path.join(node["dev_dir"], SHARED), "w").close()
    assert set_role("primary", [SHARED], ctl, S(node), Log(), 0.3, say=say(out)) == 1
    dev = os.path.join(node["dev_dir"], DISK)
    assert out.getvalue() == f"GEOM provider {dev} did not appear.\n"
    assert ctl.role_calls() == [("role", "primary", SHARED)]


def test_primary_changes_exactly_the_named_resources(node):
    ctl = StubHastctl(node["dev_dir"], {R1: R1, R2: R2, R3: R3})
    assert set_role("primary", [R3, R1, R3], ctl, S(node), Log(), 5, say=say(io.StringIO())) == 0
    assert ctl.role_calls() == [("role", "primary", R3), ("role", "primary", R1)]


def test_unknown_resource_changes_nothing(node):
    ctl, out = StubHastctl(node["dev_dir"], {"r1": "r1"}), io.StringIO()
    code = set_role("secondary", ["r1", "-c/tmp/evil"], ctl, S(node), Log(), 1, say=say(out))
    assert code == sysexits.EX_DATAERR
    assert out.getvalue() == "hasthook: hastd does not know resource -c/tmp/evil\n"
    assert ctl.role_calls() == []
    # The names never went on hastctl's argv where they could pass for options.
    assert ("list",) in ctl.calls


def test_a_failed_role_change_names_the_resource_and_goes_on(node):
    ctl, out, log = StubHastctl(node["dev_dir"], {"r1": "r1", "r2": "r2"}, fail={"r1"}), \
        io.StringIO(), Log()
    assert set_role("secondary", [], ctl, S(node), log, 1, say=say(out)) == sysexits.EX_SOFTWARE
    assert out.getvalue() == ("hasthook: [r1] unable to change role to secondary: "
                              "exit status 1: [r1] Received error 1 from hastd.\n")
    assert ctl.role_calls() == [("role", "secondary", "r1"), ("role", "secondary", "r2")]
    assert ("error", "[r1] unable to change role to secondary: exit status 1: "
            "[r1] Received error 1 from hastd.") in log.lines


def test_dry_run_changes_nothing(node, titled):
    ctl, out = StubHastctl(node["dev_dir"], {R1: R1}), io.StringIO()
    titled(f"hastd: {R1} (secondary)")
    assert set_role("primary", [], ctl, S(node), Log(), 60, True, say=say(out)) == 0
    assert ctl.role_calls() == []
    assert f"would wait up to 60s for 'hastd: {R1} (secondary)'" in out.getvalue()
    assert f"would run hastctl role primary {R1}" in out.getvalue()


def test_bad_arguments(node):
    ctl = StubHastctl(node["dev_dir"], {"r1": "r1"})
    quiet = say(io.StringIO())
    assert set_role("master", [], ctl, S(node), Log(), 1, say=quiet) == sysexits.EX_USAGE
    assert set_role("init", [], ctl, S(node), Log(), -1, say=quiet) == sysexits.EX_USAGE
    assert ctl.calls == []


# -- `hasthook role` on the simulator ------------------------------------------------

@pytest.fixture
def token() -> str:
    """Resource names unique to this test, so pgrep meets no other test's workers."""
    return uuid.uuid4().hex[:6]


def role_config(write_config, node: SimNode) -> str:
    """The node's hastctl, pid file and /dev/hast; its pgrep sees no other node's workers."""
    return str(write_config(hastctl=node.hastctl_path, hastd_pidfile=str(node.pidfile),
                            dev_dir=str(node.dev_dir), commands={"pgrep": node.pgrep_path}))


def role_calls(node: SimNode) -> list[list[str]]:
    return [c for c in node.calls() if c and c[0] == "role"]


def test_switchover_waits_until_the_peer_lets_go(tmp_path, write_config, syslog, token):
    res = f"db{token}"
    with SimCluster(tmp_path / "c", [{"name": res, "localpath": "/dev/ada1"}]) as c:
        c.steady("host1")
        old = c.host2.worker_pid(res)
        assert old and cmdline(old) == [f"hastd: {res} (secondary)"]
        p = subprocess.Popen([command("hasthook"), "-c", role_config(write_config, c.host2),
                              "role", "primary", res, "--wait", "30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            syslog.wait_for(f"waiting up to 30s for the secondary worker of {res}")
            assert role_calls(c.host2) == []
            # The peer steps down; its worker's going ends the connection and ours.
            c.host1.set_role(res, "secondary")
            c.settle(res)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert (p.returncode, out, err) == (0, "", "")
        assert role_calls(c.host2) == [["role", "primary", res]]
        assert c.host2.role(res) == "primary" and (c.host2.dev_dir / res).exists()
        syslog.wait_for(f"[{res}] role set to primary")


def test_a_secondary_worker_that_never_leaves_changes_nothing(tmp_path, write_config, token):
    a, b = f"a{token}", f"b{token}"
    with SimNode(tmp_path / "n", "host1", [{"name": a, "localpath": "/dev/ada1"},
                                           {"name": b, "localpath": "/dev/ada2"}]) as node:
        node.set_state(a, role="secondary")
        node.set_state(b, role="secondary")
        node.spawn_lingering_worker(b)
        r = run_cmd(command("hasthook"), "-c", role_config(write_config, node), "role",
                    "primary", "--wait", "0.5")
        assert r.returncode == 1
        assert r.stderr == (f"FATAL: Secondary process for resource {b} is still running "
                            "after 0.5 seconds.\n")
        assert role_calls(node) == []
        assert node.role(a) == node.role(b) == "secondary"


def test_provider_name_differs_from_resource_name(tmp_path, write_config, token):
    res = f"shared{token}"
    with SimNode(tmp_path / "n", "host1", [
            {"name": res, "localpath": "/dev/ada1", "provname": f"disk{token}"}]) as node:
        node.set_state(res, role="secondary")
        cfg = role_config(write_config, node)
        r = run_cmd(command("hasthook"), "-c", cfg, "role", "primary", res, "--wait", "5")
        assert (r.returncode, r.stderr) == (0, "")
        assert (node.dev_dir / f"disk{token}").exists()
        assert not (node.dev_dir / res).exists()


def test_provider_that_never_appears(tmp_path, write_config, token):
    res = f"shared{token}"
    with SimNode(tmp_path / "n", "host1", [
            {"name": res, "localpath": "/dev/ada1", "provname": f"disk{token}"}]) as node:
        node.set_state(res, role="secondary")
        node.fail_role(res, "worker-exit")   # primary, then the worker dies: back to init
        r = run_cmd(command("hasthook"), "-c", role_config(write_config, node), "role",
                    "primary", res, "--wait", "0.3")
        assert r.returncode == 1
        assert r.stderr == f"GEOM provider {node.dev_dir}/disk{token} did not appear.\n"


def test_hastd_not_running_is_69_and_touches_nothing(tmp_path, write_config, token):
    res = f"r{token}"
    with SimNode(tmp_path / "n", "host1", [{"name": res, "localpath": "/dev/ada1"}]) as node:
        node.stop_hastd()
        assert node.pidfile.exists()  # left behind, as FreeBSD's is
        r = run_cmd(command("hasthook"), "-c", role_config(write_config, node), "role",
                    "secondary")
        assert r.returncode == sysexits.EX_UNAVAILABLE
        assert r.stderr.startswith("hasthook: hastd is not running (pid ")
        assert r.stderr.count("\n") == 1
        assert role_calls(node) == []


def test_boot_time_secondary_for_every_resource(tmp_path, write_config, token):
    names = [f"r{i}{token}" for i in range(3)]
    with SimNode(tmp_path / "n", "host1",
                 [{"name": n, "localpath": f"/dev/ada{i}"} for i, n in enumerate(names)]) as node:
        r = run_cmd(command("hasthook"), "-c", role_config(write_config, node), "role",
                    "secondary")
        assert (r.returncode, r.stderr) == (0, "")
        assert role_calls(node) == [["role", "secondary", n] for n in names]
        assert [node.role(n) for n in names] == ["secondary"] * 3


def test_hastd_refusing_one_resource(tmp_path, write_config, token):
    a, b = f"a{token}", f"b{token}"
    with SimNode(tmp_path / "n", "host1", [{"name": a, "localpath": "/dev/ada1"},
                                           {"name": b, "localpath": "/dev/ada2"}]) as node:
        node.fail_role(a, 5)
        r = run_cmd(command("hasthook"), "-c", role_config(write_config, node), "role", "init",
                    a, b, "--wait", "1")
        assert r.returncode == sysexits.EX_SOFTWARE
        assert r.stderr == (f"hasthook: [{a}] unable to change role to init: exit status 5: "
                            f"[WARNING] [{a}] Received error 5 from hastd.\n")
        assert role_calls(node) == [["role", "init", a], ["role", "init", b]]



def test_a_partial_dump_is_not_every_resource(node):
    """hastctl dump prints what it could read and fails for the rest: ask for names."""
    ctl, out = StubHastctl(node["dev_dir"], {"r1": "r1"}), io.StringIO()
    ctl.dump = lambda *n: ({"r1": Metadata("r1")},
                           Result(["dump"], 66, "", "[ERROR] [r2] Unable to open /dev/ada2: "
                                                    "No such file or directory.\n"))
    assert set_role("init", [], ctl, S(node), Log(), 1, say=say(out)) == 66
    assert out.getvalue() == ("hasthook: cannot list resources with hastctl dump (exit status "
                              "66: [ERROR] [r2] Unable to open /dev/ada2: No such file or "
                              "directory.); name the resources\n")
    assert ctl.role_calls() == []
