"""`hasthook failover`: the article's steps around a role change, in order and idempotent."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, command, run_cmd
from standins import Standins

from hasthook import sysexits
from hasthook.config.settings import Settings
from hasthook.hast import Metadata, Resource, Result
from hasthook.tools.failover import (
    Failover,
    FailoverError,
    ResourceSpec,
    parse_mounts,
    plan,
    resource_spec,
)

# -- the plan (pure) -------------------------------------------------------

CMDS = Settings.from_dict({"commands": {"fsck": "fsck", "mount": "mount", "umount": "umount",
                                        "zpool": "zpool", "service": "service"},
                          "dev_dir": "/dev/hast"})


def argvs(steps):
    return [s.argv for s in steps]


def test_plan_promote_ufs_zfs_none_in_the_articles_order():
    specs = [ResourceSpec("db", "ufs", "/db", services=["postgresql"]),
             ResourceSpec("tank0", "zfs", pool="tank", services=["nfsd", "postgresql"]),
             ResourceSpec("tank1", "zfs", pool="tank"),
             ResourceSpec("raw", "none", services=["iscsi"])]
    steps = plan("promote", specs, {"db": "dbprov"}, CMDS)
    assert argvs(steps) == [
        ["hasthook", "role", "primary", "db", "tank0", "tank1", "raw"],
        ["fsck", "-y", "-t", "ufs", "/dev/hast/dbprov"],
        ["mount", "-o", "noatime", "/dev/hast/dbprov", "/db"],
        ["zpool", "import", "-f", "-d", "/dev/hast", "tank"],   # once for both resources
        ["service", "postgresql", "onestart"],                  # once, after every mount
        ["service", "nfsd", "onestart"],
        ["service", "iscsi", "onestart"],
    ]


def test_plan_demote_is_the_reverse():
    specs = [ResourceSpec("db", "ufs", "/db", services=["postgresql"]),
             ResourceSpec("tank0", "zfs", pool="tank", services=["nfsd"])]
    assert argvs(plan("demote", specs, {}, CMDS)) == [
        ["service", "nfsd", "onestop"],
        ["service", "postgresql", "onestop"],
        ["zpool", "export", "tank"],
        ["umount", "/db"],
        ["hasthook", "role", "secondary", "db", "tank0"],
    ]


def test_plan_fsck_false_skips_fsck():
    steps = plan("promote", [ResourceSpec("db", "ufs", "/db", fsck=False)], {}, CMDS)
    assert [s.kind for s in steps] == ["role", "mount"]


@pytest.mark.parametrize("data, message", [
    ({"filesystem": "ext4"}, "not one of ufs, zfs, none"),
    ({"filesystem": "ufs"}, "needs a mountpoint"),
    ({"filesystem": "zfs"}, "needs a pool"),
    ({"services": ["../../bin/sh"]}, "not an rc.d script name"),
    ({"services": ["-x"]}, "not an rc.d script name"),
    ({"filesystem": "ufs", "mountpoint": "srv/db"}, "is not absolute"),
])
def test_bad_resource_settings_are_config_errors(data, message):
    with pytest.raises(FailoverError, match=message) as e:
        resource_spec("db", data)
    assert e.value.status == sysexits.EX_CONFIG


def test_resource_without_settings_is_role_only():
    assert resource_spec("r", None) == ResourceSpec("r")


def test_parse_mounts_freebsd_p_linux_and_escapes():
    text = ("/dev/ada0p2\t\t/\tufs\trw\t1 1\n"
            "/dev/hast/db\t\t/srv/my\\040db/\tufs\trw,noatime\t2 2\n"
            "tmpfs on /tmp (tmpfs, local)\n"
            "/dev/sda1 on /boot type ext4 (rw,relatime)\n")
    assert parse_mounts(text) == {("/dev/ada0p2", "/"), ("/dev/hast/db", "/srv/my db"),
                                  ("tmpfs", "/tmp"), ("/dev/sda1", "/boot")}


# -- the runner, with an in-process hastctl -------------------------------

class Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level, msg):
        self.lines.append((level, msg))

    def info(self, msg):
        self("info", msg)

    def notice(self, msg):
        self("notice", msg)

    def error(self, msg):
        self("err", msg)

    def crit(self, msg):
        self("crit", msg)


class Store:
    """The recorder Failover is given (the command gives it a Router)."""

    def __init__(self):
        self.events = []

    def record(self, ev):
        self.events.append(ev)
        return len(self.events)

    @property
    def alerts(self):
        return [e for e in self.events if e.severity == "critical"]


class FakeHastctl:
    """hastd's view for the library tests: roles, provider names, /dev/hast entries.

    The role step goes through the real `hasthook role` code (tools/role.set_role),
    which asks this object for dump/list/role, as it would ask hastctl.
    """

    path = "hastctl"

    def __init__(self, dev_dir: Path, provnames: dict[str, str]):
        self.dev_dir = dev_dir
        self.prov = provnames
        self.roles = dict.fromkeys(provnames, "secondary")
        self.role_calls: list[tuple[str, str]] = []

    def dump(self, *names):
        return {n: Metadata(n) for n in self.prov}, Result(["hastctl", "dump"], 0)

    def list(self, *names):
        return ({n: Resource(n, role=self.roles[n], provname=self.prov[n])
                 for n in names or self.prov if n in self.prov},
                Result(["hastctl", "list"], 0))

    def role(self, role, *names):
        for n in names:
            self.role_calls.append((role, n))
            self.roles[n] = role
            dev = self.dev_dir / self.prov[n]
            if role == "primary":
                dev.touch()
            else:
                dev.unlink(missing_ok=True)
        return Result(["hastctl", "role", role, *names], 0)


def _settings(si, dev, state):
    """Stand-in commands, this test's pid as hastd's, the real pgrep."""
    pidfile = state.parent / f"{state.name}.hastd.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    return Settings.from_dict({
        "commands": {**si.commands, "pgrep": shutil.which("pgrep") or "/bin/pgrep"},
        "dev_dir": str(dev), "state_dir": str(state), "hastd_pidfile": str(pidfile),
        "failover_step_timeout": "30s"})


@pytest.fixture
def node(tmp_path):
    dev = tmp_path / "dev" / "hast"
    dev.mkdir(parents=True)
    si = Standins(tmp_path / "standins")
    ctl = FakeHastctl(dev, {"db": "dbprov", "tank0": "tank0", "raw": "raw"})
    si.add_pool("tank", "tank0")
    resources = {"db": {"filesystem": "ufs", "mountpoint": "/srv/db",
                        "services": ["postgresql"]},
                 "tank0": {"filesystem": "zfs", "pool": "tank", "services": ["nfsd"]},
                 "raw": {"filesystem": "none", "services": ["ctld"]}}
    settings = _settings(si, dev, tmp_path / "st")
    out: list[str] = []
    store, log = Store(), Log()
    fo = Failover(settings, resources, ctl, log, record=store.record, host="host1", wait=2,
                  out=out.append)
    return type("Node", (), dict(fo=fo, si=si, ctl=ctl, dev=dev, out=out, store=store,
                                 log=log))


def promote_argv(dev: str) -> list[list[str]]:
    """The article's promote steps for SIM_RESOURCES-like settings, in order."""
    return [
        ["fsck", "-y", "-t", "ufs", f"{dev}/dbprov"],
        ["mount", "-o", "noatime", f"{dev}/dbprov", "/srv/db"],
        ["zpool", "import", "-f", "-d", dev, "tank"],
        ["service", "postgresql", "onestart"],
        ["service", "nfsd", "onestart"],
        ["service", "ctld", "onestart"],
    ]


def test_promote_then_demote_runs_the_exact_sequence(node):
    assert node.fo.run("promote", ["db", "tank0", "raw"]) == 0
    dev = str(node.dev)
    assert node.ctl.role_calls == [("primary", "db"), ("primary", "tank0"), ("primary", "raw")]
    assert node.si.calls() == promote_argv(dev)
    st = node.si.state()
    assert st == {"mounts": [[f"{dev}/dbprov", "/srv/db"]], "imported": ["tank"],
                  "running": ["postgresql", "nfsd", "ctld"]}
    node.si.clear_calls()
    assert node.fo.run("demote", []) == 0       # default: every resource hastctl dump lists
    assert node.si.calls() == [
        ["service", "ctld", "onestop"],
        ["service", "nfsd", "onestop"],
        ["service", "postgresql", "onestop"],
        ["zpool", "export", "tank"],
        ["umount", "/srv/db"],
    ]
    assert node.ctl.role_calls[3:] == [("secondary", "db"), ("secondary", "tank0"),
                                       ("secondary", "raw")]
    assert node.si.state() == {"mounts": [], "imported": [], "running": []}
    assert node.si.pool_label("tank")["in_use_by"] is None


def test_second_promote_is_harmless(node):
    assert node.fo.run("promote", []) == 0
    node.si.clear_calls()
    node.out.clear()
    assert node.fo.run("promote", []) == 0
    assert node.si.calls() == []                 # only the read-only queries ran
    assert len(node.ctl.role_calls) == 3         # no second `hastctl role primary`
    assert all("skipped" in line for line in node.out[:-1]), node.out
    assert node.out[-1] == "promote complete"
    results = [e.extra["result"] for e in node.store.events]
    assert results[:7] == ["ok"] * 7 and results[7:] == ["skipped"] * 7


def test_second_demote_is_harmless(node):
    assert node.fo.run("demote", []) == 0        # from secondary: nothing to do at all
    assert node.si.calls() == [] and node.ctl.role_calls == []


def test_half_done_promote_finishes_the_rest(node):
    node.si.fail("service", code=1, match="nfsd onestart", message="nfsd: cannot start")
    assert node.fo.run("promote", []) == sysexits.EX_UNAVAILABLE
    node.si.unfail("service")
    node.si.clear_calls()
    assert node.fo.run("promote", []) == 0
    assert node.si.calls() == [["service", "nfsd", "onestart"],
                               ["service", "ctld", "onestart"]]


def test_failing_fsck_stops_the_chain_before_mount(node):
    node.si.fail("fsck", code=8, message="** /dev/hast/dbprov\nUNEXPECTED SOFT UPDATE "
                                          "INCONSISTENCY; RUN fsck MANUALLY.")
    assert node.fo.run("promote", ["db"]) == sysexits.EX_UNAVAILABLE
    assert [c[0] for c in node.si.calls()] == ["fsck"]          # no mount, no service
    assert node.si.state()["mounts"] == []
    [crit] = [m for lvl, m in node.log.lines if lvl == "crit"]
    assert "STOPPED at step 2/4 [db] fsck" in crit and "RUN fsck MANUALLY" in crit
    [alert] = node.store.alerts
    assert (alert.event, alert.severity, alert.cause, alert.resource) == (
        "failover", "critical", "failover", "db")
    assert alert.extra["step"] == "fsck" and alert.extra["result"] == "failed"
    assert "failover promote fsck" in alert.summary and "exit status 8" in alert.summary
    assert node.out[-1] == "not run: mount /srv/db, start postgresql"


def test_umount_busy_stops_before_role_secondary(node):
    assert node.fo.run("promote", ["db"]) == 0
    node.si.fail("umount", code=1, message="umount: unmount of /srv/db failed: Device busy")
    assert node.fo.run("demote", ["db"]) == sysexits.EX_UNAVAILABLE
    assert node.ctl.roles["db"] == "primary"     # the device stays under the mounted fs
    assert node.store.alerts[-1].extra["step"] == "umount"


def test_dry_run_prints_the_plan_and_changes_nothing(node):
    assert node.fo.run("promote", ["db", "tank0"], dry_run=True) == 0
    dev, p = str(node.dev), node.si.paths
    assert node.out == [
        "promote plan (6 steps, dry run: nothing is changed):",
        "  1. [db] role primary db tank0: hasthook role primary db tank0",
        f"  2. [db] fsck {dev}/dbprov: {p['fsck']} -y -t ufs {dev}/dbprov",
        f"  3. [db] mount /srv/db: {p['mount']} -o noatime {dev}/dbprov /srv/db",
        f"  4. [tank0] import tank: {p['zpool']} import -f -d {dev} tank",
        f"  5. [db] start postgresql: {p['service']} postgresql onestart",
        f"  6. [tank0] start nfsd: {p['service']} nfsd onestart",
    ]
    assert node.si.calls(queries=True) == [] and node.ctl.role_calls == []
    assert node.store.events == []


def test_steps_are_recorded_with_what_they_did(node):
    node.fo.run("promote", ["db"])
    ev = node.store.events
    assert [(e.event, e.cause, e.extra["step"], e.extra["result"]) for e in ev] == [
        ("failover", "failover", "role", "ok"), ("failover", "failover", "fsck", "ok"),
        ("failover", "failover", "mount", "ok"), ("failover", "failover", "start", "ok")]
    assert ev[2].extra["argv"][-1] == "/srv/db"
    assert ev[2].summary == "[db] failover promote mount /srv/db: ok on host1"


def test_missing_program_fails_the_step(node):
    node.fo.cmd = node.fo.cmd.replace(zpool="/nonexistent/zpool")
    assert node.fo.run("promote", ["tank0"]) == sysexits.EX_UNAVAILABLE
    assert node.store.alerts[0].extra["detail"] == (
        "cannot tell whether pool tank is imported: /nonexistent/zpool: "
        "No such file or directory")


def test_crash_pool_not_exported_is_imported_with_f(tmp_path):
    """host1 dies with the pool imported; host2 takes over: import needs -f, and has it."""
    labels = tmp_path / "labels.json"
    nodes = {}
    for host in ("host1", "host2"):
        dev = tmp_path / host / "dev"
        dev.mkdir(parents=True)
        si = Standins(tmp_path / host / "si", host, labels)
        ctl = FakeHastctl(dev, {"tank0": "tank0"})
        fo = Failover(_settings(si, dev, tmp_path / host / "st"),
                      {"tank0": {"filesystem": "zfs", "pool": "tank"}}, ctl, Log(),
                      host=host, out=lambda s: None)
        nodes[host] = (si, fo, dev)
    nodes["host1"][0].add_pool("tank", "tank0")
    assert nodes["host1"][1].run("promote", []) == 0
    assert nodes["host1"][0].pool_label("tank")["in_use_by"] == "host1"
    # host1 crashes: no demote, no export. Without -f the import would be refused:
    si2, fo2, dev2 = nodes["host2"]
    (dev2 / "tank0").touch()
    r = os.popen(f"{si2.paths['zpool']} import -d {dev2} tank 2>&1").read()
    assert "previously in use from another system" in r
    (dev2 / "tank0").unlink()
    si2.clear_calls()
    assert fo2.run("promote", []) == 0
    assert si2.calls() == [["zpool", "import", "-f", "-d", str(dev2), "tank"]]
    assert si2.pool_label("tank")["in_use_by"] == "host2"
    assert json.loads(labels.read_text())["tank"]["in_use_by"] == "host2"


# -- the schema --------------------------------------------------------------

def _schema_errors(resources):
    import jsonschema

    schema = json.loads((REPO / "hasthook" / "config" / "schema.json").read_text())
    v = jsonschema.validators.validator_for(schema)(schema)
    return sorted(e.message for e in v.iter_errors({"resources": resources}))


def test_schema_accepts_the_three_filesystems():
    assert _schema_errors({
        "db": {"filesystem": "ufs", "mountpoint": "/srv/db", "services": ["postgresql"],
               "fsck": False},
        "tank0": {"filesystem": "zfs", "pool": "tank"},
        "raw": {"filesystem": "none", "services": ["ctld"]},
        "bare": {}}) == []


@pytest.mark.parametrize("res, needle", [
    ({"filesystem": "ufs"}, "'mountpoint' is a required property"),
    ({"filesystem": "zfs"}, "'pool' is a required property"),
    ({"filesystem": "ext4"}, "is not one of"),
    ({"services": ["../sh"]}, "does not match"),
    ({"mountpiont": "/x"}, "Additional properties"),
])
def test_schema_rejects_half_formed_resources(res, needle):
    errors = _schema_errors({"db": res})
    assert any(needle in e for e in errors), errors


# -- end to end: `hasthook failover` on the simulator ------------------------

RESOURCES = {"db": {"filesystem": "ufs", "mountpoint": "/srv/db", "services": ["postgresql"]},
             "tank0": {"filesystem": "zfs", "pool": "tank", "services": ["nfsd"]},
             "raw": {"filesystem": "none", "services": ["ctld"]}}
SIM_RESOURCES = [{"name": "db", "localpath": "/dev/ada1", "provname": "dbprov"},
                 {"name": "tank0", "localpath": "/dev/ada2"},
                 {"name": "raw", "localpath": "/dev/ada3"}]


class Host:
    """One simulated node with its stand-ins and its rules file."""

    def __init__(self, node, tmp_path: Path, syslog, labels: Path):
        self.node = node
        self.si = Standins(tmp_path / node.name / "standins", node.name, labels)
        self.cfg = tmp_path / node.name / "rules.yaml"
        self.state_dir = tmp_path / node.name / "state"
        self.cfg.write_text(yaml.safe_dump({
            "settings": {
                "hostname": node.name, "hastctl": node.hastctl_path,
                "dev_dir": str(node.dev_dir), "hastd_pidfile": str(node.pidfile),
                "state_dir": str(self.state_dir),
                "syslog": {"socket": syslog.path, "tag": "hasthook", "facility": "daemon"},
                "commands": {**self.si.commands,
                             "pgrep": shutil.which("pgrep") or "/bin/pgrep"}},
            "resources": RESOURCES}))

    def hasthook(self, *args):
        return run_cmd(command("hasthook"), *args, "-c", str(self.cfg))

    def failover(self, *args):
        return self.hasthook("failover", *args)

    def history(self):
        r = self.hasthook("history", "--json", "--event", "failover")
        assert r.returncode == 0, r.stderr
        return list(reversed(json.loads(r.stdout)))

    def role_calls(self):
        return [c for c in self.node.calls() if c[0] == "role"]


@pytest.fixture
def drained(syslog):
    """The syslog sink, read continuously: a failover logs more lines than a datagram
    socket queues (net.unix.max_dgram_qlen, 10 here), and a full queue blocks the sender."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            syslog.drain()
            time.sleep(0.005)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield syslog
    stop.set()
    t.join()


@pytest.fixture
def cluster(tmp_path, drained):
    from hasthook.sim import SimCluster

    syslog = drained
    with SimCluster(tmp_path / "sim", SIM_RESOURCES) as c:
        labels = tmp_path / "labels.json"
        c.h1, c.h2 = (Host(n, tmp_path, syslog, labels) for n in (c.host1, c.host2))
        c.h1.si.add_pool("tank", "tank0")
        for name in c.resources:
            c.host1.set_state(name, role="secondary")
            c.host2.set_state(name, role="secondary")
        yield c


def test_cli_promote_demote_exact_argv_on_the_simulator(cluster):
    h = cluster.h1
    r = h.failover("promote")
    assert r.returncode == 0, r.stdout + r.stderr
    dev = str(h.node.dev_dir)
    assert h.si.calls() == promote_argv(dev)
    assert h.role_calls() == [["role", "primary", "db"], ["role", "primary", "tank0"],
                              ["role", "primary", "raw"]]
    assert {n: h.node.role(n) for n in cluster.resources} == dict.fromkeys(
        cluster.resources, "primary")
    assert (h.node.dev_dir / "dbprov").exists()
    assert r.stdout.splitlines()[-1] == "promote complete"

    h.si.clear_calls()
    h.node.clear_calls()
    r = h.failover("demote")
    assert r.returncode == 0, r.stdout + r.stderr
    assert h.si.calls() == [
        ["service", "ctld", "onestop"],
        ["service", "nfsd", "onestop"],
        ["service", "postgresql", "onestop"],
        ["zpool", "export", "tank"],
        ["umount", "/srv/db"],
    ]
    assert h.role_calls() == [["role", "secondary", "db"], ["role", "secondary", "tank0"],
                              ["role", "secondary", "raw"]]
    assert not (h.node.dev_dir / "dbprov").exists()
    assert h.si.state() == {"mounts": [], "imported": [], "running": []}
    steps = [(e["resource"], e["extra"]["action"], e["extra"]["step"], e["extra"]["result"])
             for e in h.history()]
    assert steps[:7] == [("db", "promote", "role", "ok"), ("db", "promote", "fsck", "ok"),
                         ("db", "promote", "mount", "ok"), ("tank0", "promote", "import", "ok"),
                         ("db", "promote", "start", "ok"), ("tank0", "promote", "start", "ok"),
                         ("raw", "promote", "start", "ok")]
    assert steps[7:] == [("raw", "demote", "stop", "ok"), ("tank0", "demote", "stop", "ok"),
                         ("db", "demote", "stop", "ok"), ("tank0", "demote", "export", "ok"),
                         ("db", "demote", "umount", "ok"), ("db", "demote", "role", "ok")]


@pytest.mark.parametrize("fs, names, promote, demote", [
    ("ufs", ["db"],
     [["fsck", "-y", "-t", "ufs", "{dev}/dbprov"],
      ["mount", "-o", "noatime", "{dev}/dbprov", "/srv/db"],
      ["service", "postgresql", "onestart"]],
     [["service", "postgresql", "onestop"], ["umount", "/srv/db"]]),
    ("zfs", ["tank0"],
     [["zpool", "import", "-f", "-d", "{dev}", "tank"], ["service", "nfsd", "onestart"]],
     [["service", "nfsd", "onestop"], ["zpool", "export", "tank"]]),
    ("none", ["raw"], [["service", "ctld", "onestart"]], [["service", "ctld", "onestop"]]),
])
def test_cli_each_filesystem_twice_is_harmless(cluster, fs, names, promote, demote):
    h = cluster.h1
    dev = str(h.node.dev_dir)

    def fill(calls):
        return [[a.format(dev=dev) for a in c] for c in calls]

    for action, want in (("promote", promote), ("demote", demote)):
        h.si.clear_calls()
        h.node.clear_calls()
        assert h.failover(action, *names).returncode == 0
        assert h.si.calls() == fill(want)
        role = "primary" if action == "promote" else "secondary"
        assert h.role_calls() == [["role", role, names[0]]]
        # Again: every step is already done, so nothing changes and nothing fails.
        h.si.clear_calls()
        h.node.clear_calls()
        r = h.failover(action, *names)
        assert r.returncode == 0, r.stdout + r.stderr
        assert h.si.calls() == [] and h.role_calls() == []
        assert "skipped" in r.stdout and "complete" in r.stdout


def test_cli_crash_pool_never_exported_is_imported_with_f(cluster):
    """host1 dies with the pool imported; host2 is promoted and must force the import."""
    h1, h2 = cluster.h1, cluster.h2
    cluster.steady("host1")
    assert h1.failover("promote", "tank0").returncode == 0
    assert h1.si.pool_label("tank")["in_use_by"] == "host1"
    cluster.host1.stop_hastd()          # the crash: no demote, no zpool export
    cluster.settle()                     # host2 loses its peer; its secondary worker ends
    r = h2.failover("promote", "tank0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert h2.si.calls() == [["zpool", "import", "-f", "-d", str(h2.node.dev_dir), "tank"],
                             ["service", "nfsd", "onestart"]]
    assert h2.si.pool_label("tank")["in_use_by"] == "host2"
    # (test_crash_pool_not_exported_is_imported_with_f shows the same import without -f
    # refused: "pool was previously in use from another system".)


def test_cli_failing_fsck_stops_the_chain_with_a_critical_alert(cluster, syslog):
    h = cluster.h1
    h.si.fail("fsck", code=8, message="UNEXPECTED SOFT UPDATE INCONSISTENCY; "
                                      "RUN fsck MANUALLY.")
    r = h.failover("promote", "db")
    assert r.returncode == sysexits.EX_UNAVAILABLE
    assert [c[0] for c in h.si.calls()] == ["fsck"]        # no mount, no service
    assert h.node.role("db") == "primary"                   # the role step had run
    line = syslog.wait_for("STOPPED at step 2/4 [db] fsck")
    assert line.startswith("<26>")                          # daemon.crit
    assert "RUN fsck MANUALLY" in line
    last = h.history()[-1]
    assert (last["severity"], last["cause"], last["extra"]["step"],
            last["extra"]["result"]) == ("critical", "failover", "fsck", "failed")
    assert "not run: mount /srv/db, start postgresql" in r.stdout
    text = h.hasthook("history", "--event", "failover").stdout.splitlines()
    assert "critical failover    db   cause=failover  failover promote fsck " in text[0]
    assert text[0].endswith("RUN fsck MANUALLY.)") and text[1].endswith("role primary db: ok")


def test_cli_lingering_secondary_worker_stops_before_any_step(cluster):
    """The role logic is `hasthook role`'s: a stuck `hastd: db (secondary)` means no change."""
    h = cluster.h1
    h.node.spawn_lingering_worker("db")
    r = h.failover("promote", "db", "--wait", "0.5")
    assert r.returncode == 1
    assert "Secondary process for resource db is still running" in r.stderr
    assert h.role_calls() == [] and h.si.calls() == []
    assert h.history()[-1]["extra"]["step"] == "role"


def test_cli_hastd_down_is_unavailable(cluster):
    h = cluster.h1
    h.node.stop_hastd()
    r = h.failover("promote", "db")
    assert r.returncode == sysexits.EX_UNAVAILABLE
    assert h.si.calls(queries=True) == []


def test_cli_unknown_resource_changes_nothing(cluster):
    h = cluster.h1
    r = h.failover("promote", "db", "nosuch")
    assert r.returncode == sysexits.EX_DATAERR
    assert "nosuch" in r.stderr
    assert h.role_calls() == [] and h.si.calls(queries=True) == []


def test_cli_dry_run_prints_the_plan_and_changes_nothing(cluster):
    h = cluster.h1
    r = h.failover("promote", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "promote plan (7 steps, dry run: nothing is changed):"
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == [
        "1. [db] role primary db tank0 raw", f"2. [db] fsck {h.node.dev_dir}/dbprov",
        "3. [db] mount /srv/db", "4. [tank0] import tank", "5. [db] start postgresql",
        "6. [tank0] start nfsd", "7. [raw] start ctld"]
    assert h.si.calls(queries=True) == []
    assert h.role_calls() == []
    assert {n: h.node.role(n) for n in cluster.resources} == dict.fromkeys(
        cluster.resources, "secondary")
    assert h.history() == []


def test_cli_bad_resource_settings_exit_78(cluster):
    h = cluster.h1
    data = yaml.safe_load(h.cfg.read_text())
    data["resources"]["db"] = {"filesystem": "ufs"}
    h.cfg.write_text(yaml.safe_dump(data))
    r = h.failover("promote", "db")
    assert r.returncode == sysexits.EX_CONFIG
    assert "mountpoint" in r.stderr
    assert h.role_calls() == []


def _with(h, **top):
    data = yaml.safe_load(h.cfg.read_text())
    data.update(top)
    h.cfg.write_text(yaml.safe_dump(data))


def _queue(h):
    r = h.hasthook("queue", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


DEAD = "json://127.0.0.1:9/"   # nothing listens: the message stays queued, visible


def test_cli_failed_step_is_routed_by_a_cause_rule(cluster):
    h = cluster.h1
    _with(h, channels={"ops": DEAD, "pager": DEAD},
          rules=[{"name": "failover-failed",
                  "match": {"cause": "failover", "severity": "critical"},
                  "actions": [{"notify": "pager"}]}])
    h.si.fail("fsck", code=8, message="fsck: {resource} BAD SUPERBLOCK")
    assert h.failover("promote", "db").returncode == sysexits.EX_UNAVAILABLE
    [row] = _queue(h)
    assert (row["channel"], row["rule"], row["resource"], row["event"], row["severity"]) == (
        "pager", "failover-failed", "db", "failover", "critical")
    assert "failover promote fsck" in row["title"] + row["body"]
    [ev] = [e for e in h.history() if e["severity"] == "critical"]
    assert ev["rules"] == ["failover-failed"]


def test_cli_failed_step_no_rule_goes_to_the_alert_channels(cluster):
    h = cluster.h1
    _with(h, channels={"ops": DEAD})
    h.si.fail("mount", code=1, match="noatime", message="mount: /dev/hast/dbprov: {x} busy")
    assert h.failover("promote", "db").returncode == sysexits.EX_UNAVAILABLE
    [row] = _queue(h)
    assert row["channel"] == "ops" and row["severity"] == "critical"
    assert row["title"] == "[critical] db (host1): failover stopped"
    assert "step: mount /srv/db" in row["body"]
    assert "{x} busy" in row["body"]                     # braces stay braces
    assert "steps already done are skipped" in row["body"]


def test_cli_successful_steps_notify_only_when_a_rule_asks(cluster):
    h = cluster.h1
    _with(h, channels={"ops": DEAD})
    assert h.failover("promote", "raw").returncode == 0
    assert _queue(h) == []                               # no rule, nothing went wrong
    _with(h, rules=[{"name": "every-step", "match": {"cause": "failover"},
                     "actions": [{"notify": "ops"}]}])
    assert h.failover("demote", "raw").returncode == 0
    rows = _queue(h)
    assert {r["rule"] for r in rows} == {"every-step"} and len(rows) == 2   # stop, role


def test_cli_failover_that_cannot_start_alerts(cluster):
    """Under devd nobody reads stderr: hastd down must still reach someone."""
    h = cluster.h1
    _with(h, channels={"ops": DEAD})
    h.node.stop_hastd()
    assert h.failover("promote").returncode == sysexits.EX_UNAVAILABLE
    [row] = _queue(h)
    assert row["severity"] == "critical"
    assert "failover promote plan all resources: failed" in row["body"]
    assert "cannot read resources from hastd" in row["body"]
