"""The foundation end to end: hastd (the simulator) runs hasthook-exec for every event.

Each node has its own rules file (no rules: record only), state dir and hastctl, so
the history shows what each host saw and what `hastctl list` said at that moment.
"""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import command, run_cmd

from hasthook.sim.driver import SimCluster, SimNode

RES = "shared1"


def configure(node: SimNode, tmp_path, syslog_path: str) -> str:
    """Give the node's hastd the env var rc.conf's hastd_env would, and exec the hook."""
    cfg = tmp_path / f"{node.name}.yaml"
    cfg.write_text(yaml.safe_dump({"settings": {
        "hostname": node.name, "state_dir": str(tmp_path / f"state-{node.name}"),
        "hastctl": node.hastctl_path, "syslog": {"socket": syslog_path}}}))
    node.env["HASTHOOK_CONFIG"] = str(cfg)
    node.stop_hastd(clean=True)
    node.start_hastd()
    node.set_exec(command("hasthook-exec"))
    return str(cfg)


def history(cfg: str, *args: str) -> list[dict]:
    r = run_cmd(command("hasthook"), "history", "--json", "-c", cfg, *args)
    assert r.returncode == 0, r.stderr
    return list(reversed(json.loads(r.stdout)))  # oldest first


@pytest.fixture
def pair(tmp_path, syslog):
    c = SimCluster(tmp_path / "sim", [{"name": RES, "localpath": "/dev/vtbd1p1"}])
    cfgs = {name: configure(node, tmp_path, syslog.path) for name, node in c.nodes.items()}
    c.steady("host1")
    yield c, cfgs
    c.close()


def test_every_event_lands_in_history_with_enrichment(pair):
    c, cfgs = pair
    step = []

    def play(scenario, *args):
        scenario(*args)
        c.wait_hooks(180)
        step.append(scenario.__name__)

    play(c.disconnect, RES)
    play(c.connect, RES)          # host1 had no dirty extents: no sync
    play(c.sync, RES, 3)          # syncstart on host1 with 3 dirty extents
    play(c.disconnect, RES)       # ... interrupted: disconnect, syncintr
    play(c.connect, RES)          # connect, syncstart again
    play(c.sync_done, RES)        # syncdone
    play(c.switch, RES, "host2")  # role events on both
    play(c.split_brain, RES, 1, 0.01)

    for name in ("host1", "host2"):
        for hook in c.nodes[name].hooks():
            assert hook["exitcode"] == 0, (name, hook)

    h1 = history(cfgs["host1"])
    seen = {r["event"] for r in h1} | {r["event"] for r in history(cfgs["host2"])}
    assert seen == {"role", "connect", "disconnect", "syncstart", "syncdone", "syncintr",
                    "split-brain"}
    for r in h1:
        assert r["host"] == "host1" and r["resource"] == RES and r["time"].endswith("Z")
        assert r["remoteaddr"] == "192.168.1.130" and r["replication"] == "memsync"
    syncstart = next(r for r in h1 if r["event"] == "syncstart")
    assert (syncstart["role"], syncstart["status"], syncstart["severity"]) == (
        "primary", "complete", "info")
    assert syncstart["dirty"] == 3 * 2097152
    intr = next(r for r in h1 if r["event"] == "syncintr")
    assert (intr["severity"], intr["status"]) == ("warning", "degraded")
    roles = [(r["old_role"], r["new_role"]) for r in h1 if r["event"] == "role"]
    assert ("primary", "secondary") in roles
    h2_roles = [(r["old_role"], r["new_role"], r["role"])
                for r in history(cfgs["host2"], "--event", "role")]
    assert ("secondary", "primary", "primary") in h2_roles
    split = history(cfgs["host2"], "--event", "split-brain")
    assert split and split[0]["severity"] == "critical"


def test_hundred_hooks_at_once_one_per_resource(tmp_path, syslog):
    names = [f"r{i:03d}" for i in range(100)]
    node = SimNode(tmp_path / "sim", "host1",
                   [{"name": n, "localpath": f"/dev/da{i}", "remoteaddr": "10.0.0.2"}
                    for i, n in enumerate(names)])
    try:
        cfg = configure(node, tmp_path, syslog.path)
        for n in names:
            node.set_state(n, role="primary", connected=False)
        for n in names:
            node.fire("disconnect", n)
        runs = node.wait_hooks(600)
        assert len(runs) == 100
        assert [r["exitcode"] for r in runs] == [0] * 100
        rows = history(cfg)
        assert sorted(r["resource"] for r in rows) == names
        assert {(r["event"], r["role"], r["status"]) for r in rows} == {
            ("disconnect", "primary", "degraded")}
        assert not any("ungracefully" in line for line in node.log_lines())
    finally:
        node.close()


def test_malformed_call_exits_64_and_hastd_reports_it(tmp_path, syslog):
    node = SimNode(tmp_path / "sim", "host1", [{"name": RES, "localpath": "/dev/ada1"}])
    try:
        configure(node, tmp_path, syslog.path)
        node.fire("role", RES, "init")
        [run] = node.wait_hooks(120)
        assert run["exitcode"] == 64
        assert any("Hook exited ungracefully" in line and "exitcode=64" in line
                   for line in node.log_lines())
        syslog.wait_for('malformed call ["role", "shared1", "init"]')
    finally:
        node.close()
