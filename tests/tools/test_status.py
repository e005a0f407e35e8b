"""`hasthook status`: live state from hastctl, the story from the history."""

from __future__ import annotations

import json

import pytest
from conftest import command, run_cmd

from hasthook import sysexits
from hasthook.config.settings import Settings
from hasthook.event import ENDED_BY, Event, classify
from hasthook.hast import Resource, Result
from hasthook.sim import SimCluster
from hasthook.store import Store
from hasthook.tools.status import StatusError, gather, render, to_json
from hasthook.units import iso

T0 = 1_800_000_000.0


class StubHastctl:
    path = "hastctl"

    def __init__(self, resources: list[Resource], rc: int | None = 0, stderr: str = ""):
        self.resources = resources
        self.rc = rc
        self.stderr = stderr

    def list(self, *names):
        return {r.name: r for r in self.resources}, Result(["list"], self.rc, "", self.stderr)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def record(store: Store, words: str, t: float, host: str = "host1") -> None:
    store.record(classify(words.split(), host, now=t))


def test_resolvers_are_event_resolves_turned_around():
    r = ENDED_BY
    assert r["disconnect"] == ("connect",)
    assert "syncdone" in r["syncintr"]


def test_unresolved_alerts_fold_storms_and_end_at_a_resolver(store):
    for i in range(5):
        record(store, "split-brain r1", T0 + i)
    record(store, "disconnect r2", T0 + 10)
    record(store, "connect r2", T0 + 11)
    record(store, "disconnect r2", T0 + 12)
    record(store, "syncstart r1", T0 + 13)   # info: never an alert
    rows = store.unresolved_alerts(ENDED_BY)
    assert [(r["resource"], r["event"], r["severity"], r["count"]) for r in rows] == [
        ("r2", "disconnect", "warning", 1), ("r1", "split-brain", "critical", 5)]
    assert iso(rows[1]["first"]).startswith("2027-01-15T08:00:00")
    assert store.unresolved_alerts(ENDED_BY, resource="r2")[0]["count"] == 1
    assert store.active_silences(T0) == []


def test_healthy_cluster_exits_0(store):
    record(store, "syncdone shared1", T0)
    ctl = StubHastctl([Resource("shared1", role="primary", status="complete", dirty=0,
                                remoteaddr="192.168.0.102", replication="memsync")])
    rep = gather(ctl, store, Settings(hastd_pidfile="/nonexistent"), now=T0 + 300)
    assert rep.code == 0 and rep.problems == []
    text = render(rep, now=T0 + 300)
    assert text.splitlines()[0].split() == [
        "RESOURCE", "ROLE", "STATUS", "DIRTY", "REMOTE", "REPLICATION", "LAST", "EVENT"]
    assert text.splitlines()[1].split() == [
        "shared1", "primary", "complete", "0B", "192.168.0.102", "memsync", "syncdone",
        "2027-01-15T08:00:00.000Z", "(5m", "ago)"]
    assert "Unresolved alerts: none" in text and "Active silences: none" in text


def test_degraded_and_split_brain_exit_1(store):
    for i in range(3):
        record(store, "split-brain r2", T0 + i)
    record(store, "split-brain r3", T0)
    ctl = StubHastctl([
        Resource("r1", role="primary", status="degraded", dirty=2097152),
        Resource("r2", role="secondary"),
        # r3 had a split-brain but is connected now: a split-brain would refuse that.
        Resource("r3", role="secondary", status="complete", dirty=0),
    ])
    rep = gather(ctl, store, Settings(), now=T0 + 60)
    assert rep.code == 1
    assert rep.problems == [
        "r1 is degraded (not connected to its peer)",
        "r2 is split-brained (3 split-brain events since 2027-01-15T08:00:00.000Z, "
        "none resolved)"]
    text = render(rep, now=T0 + 60)
    assert "  critical  r2  split-brain  (3 times, 2027-01-15T08:00:00.000Z .. " in text
    assert "PROBLEM: r1 is degraded (not connected to its peer)" in text
    j = to_json(rep)
    assert j["ok"] is False and j["resources"][0]["dirty_human"] == "2.0MB"
    assert j["resources"][1]["last_event"]["event"] == "split-brain"
    assert len(j["alerts"]) == 2 and j["silences"] == []


def test_hastd_unreachable_is_ex_unavailable(store, tmp_path):
    ctl = StubHastctl([], rc=71, stderr="Unable to connect to hastd via uds:///var/run/hastctl: "
                                        "No such file or directory.")
    with pytest.raises(StatusError) as e:
        gather(ctl, store, Settings(hastd_pidfile=str(tmp_path / "hastd.pid")))
    assert e.value.status == sysexits.EX_UNAVAILABLE
    assert str(e.value) == ("cannot read resource state from hastd: Unable to connect to hastd "
                            "via uds:///var/run/hastctl: No such file or directory.; hastd is "
                            f"not running (no pid file {tmp_path}/hastd.pid)")


def test_no_resources_is_not_an_error(store):
    rep = gather(StubHastctl([]), store, Settings())
    assert rep.code == 0 and render(rep).startswith("no HAST resources\n")


def test_role_event_shows_the_change(store):
    store.record(Event("role", "r1", "host1", T0, old_role="secondary", new_role="primary"))
    rep = gather(StubHastctl([Resource("r1", role="primary", status="complete", dirty=0)]),
                 store, Settings(), now=T0 + 7200)
    assert "role secondary->primary 2027-01-15T08:00:00.000Z (2h ago)" in render(rep, T0 + 7200)


# -- `hasthook status` on the simulator, with history written by hasthook-exec --------

def test_status_through_a_split_brain_and_its_recovery(tmp_path, write_config):
    cfg = write_config()
    with SimCluster(tmp_path / "c", [{"name": "ra", "localpath": "/dev/ada1"},
                                     {"name": "rb", "localpath": "/dev/ada2"}],
                    env={"HASTHOOK_CONFIG": str(cfg)}) as c:
        c.host1.set_exec(command("hasthook-exec"))
        cfg = write_config(hastctl=c.host1.hastctl_path, hastd_pidfile=str(c.host1.pidfile))
        c.steady("host1")

        def status() -> tuple[int, dict]:
            c.wait_hooks()
            r = run_cmd(command("hasthook"), "-c", str(cfg), "status", "--json")
            return r.returncode, json.loads(r.stdout)

        code, j = status()
        assert code == 0 and j["ok"] and j["problems"] == []
        assert [(r["name"], r["role"], r["status"]) for r in j["resources"]] == [
            ("ra", "primary", "complete"), ("rb", "primary", "complete")]

        c.disconnect("rb")
        c.wait_hooks()  # so the split-brain rows come after the disconnect's
        c.split_brain("rb", repeats=2, interval=0)
        code, j = status()
        assert code == 1
        split = next(a for a in j["alerts"] if a["event"] == "split-brain")
        assert j["problems"] == [
            "rb is degraded (not connected to its peer)",
            f"rb is split-brained (2 split-brain events since {split['first']}, none resolved)"]
        assert sorted((a["resource"], a["event"], a["count"]) for a in j["alerts"]) == [
            ("rb", "disconnect", 1), ("rb", "split-brain", 2)]
        assert j["resources"][1]["last_event"]["event"] == "split-brain"

        # The article's fix, on the node that loses its changes; then hastd reconnects.
        for words in (["role", "init", "rb"], ["create", "rb"], ["role", "secondary", "rb"]):
            assert c.host2.run(*words).returncode == 0
        c.connect("rb")
        c.sync_done("rb")
        code, j = status()
        assert code == 0 and j["problems"] == []
        assert all(a["event"] != "disconnect" for a in j["alerts"])
        r = run_cmd(command("hasthook"), "-c", str(cfg), "status")
        assert r.returncode == 0 and "rb        primary  complete  0B" in r.stdout

        c.host1.stop_hastd()
        r = run_cmd(command("hasthook"), "-c", str(cfg), "status")
        assert r.returncode == sysexits.EX_UNAVAILABLE
        assert r.stderr.startswith("hasthook: cannot read resource state from hastd: [ERROR] "
                                   "Unable to connect to hastd via uds:///var/run/hastctl")
