"""`hasthook watch` on the simulator, with real receivers: each condition the simulator
can produce fires after `fall` passes with one message, resolves after `rise` with one
resolved message; silences, grouping, the heartbeat, and the hastctl calls it makes.

hastd's hooks run the real hasthook-exec into the same state database (a sync's
syncstart is what tells watch a sync runs). One pass is one run_pass() call;
simulated time moves a minute between passes (advance()), and the passes run a day
in the past so every message is due at once (group_wait 0s counts real time), not
so far that max_age gives it up.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from conftest import RecordingLog, command, run_cmd
from receivers import HttpSink

from hasthook.config import load
from hasthook.event import CONDITIONS
from hasthook.sim.driver import SimCluster
from hasthook.store import Store
from hasthook.watch import run_pass

RES, OTHER = "shared1", "shared2"
CONDS = list(CONDITIONS)


class Watched:
    """host1 of a steady pair, its rules sending every condition to an HTTP receiver."""

    def __init__(self, tmp_path, syslog_path: str, sink: HttpSink, resources=(RES, OTHER),
                 expect: dict | None = None, **settings):
        self.cluster = c = SimCluster(tmp_path / "sim", [
            {"name": r, "localpath": f"/dev/ada{i}"} for i, r in enumerate(resources)])
        self.node = n = c.host1
        self.sink = sink
        self.path = tmp_path / "rules.yaml"
        self.path.write_text(yaml.safe_dump({
            "channels": {"ops": sink.url("ops")},
            "resources": {r: {"expect_role": role} for r, role in (expect or {}).items()},
            "rules": [{"name": "watch", "match": {"event": CONDS}, "send_resolved": True,
                       "actions": [{"notify": "ops"}]}],
            "settings": {"hostname": "host1", "hastctl": n.hastctl_path,
                         "state_dir": str(tmp_path / "state"), "hast_conf": str(n.hast_conf),
                         "group_wait": "0s", "syslog": {"socket": syslog_path},
                         "watch": {"degraded_after": "3m", "init_after": "3m",
                                   "heartbeat": f"http://{sink.base}/ping/s3cr3t-uuid",
                                   "heartbeat_timeout": "2s"},
                         **settings}}))
        n.env["HASTHOOK_CONFIG"] = str(self.path)
        n.stop_hastd(clean=True)
        n.start_hastd()
        n.set_exec(command("hasthook-exec"))
        c.steady("host1")
        c.wait_hooks(120)
        self.cfg = load(str(self.path))
        self.store = Store(self.cfg.settings.state_dir)
        self.log = RecordingLog()
        self.t0 = time.time() - 3600  # the passes' clock: simulated time from an hour ago

    def passes(self, n: int = 1, before=None) -> list[tuple[str, str]]:
        """n passes a simulated minute apart; (event, resource) of what they raised."""
        out = []
        for _ in range(n):
            if before is not None:
                before()
            self.cluster.wait_hooks(120)
            p = run_pass(self.cfg, self.store, self.log, now=self.t0 + self.cluster.now)
            out += [(e.event, e.resource) for e in p.events]
            self.cluster.advance(60)
        return out

    def titles(self) -> list[str]:
        return [r["body"]["title"] for r in self.sink.received("/ops")]

    def count(self, word: str) -> int:
        return sum(1 for t in self.titles() if f" {word} on " in t)

    def close(self) -> None:
        self.store.close()
        self.cluster.close()


@pytest.fixture
def watched(tmp_path, syslog, http):
    w = Watched(tmp_path, syslog.path, http)
    yield w
    w.close()


def test_a_healthy_pair_sends_nothing_over_many_passes(watched):
    assert watched.passes(15) == []
    assert watched.titles() == []
    assert len(watched.sink.received("/ping/")) == 15
    assert watched.store.watch_active() == []


# Each: how the simulator makes the condition (before every bad pass), how it heals.
def _io(w):
    w.node.local_errors(RES, read=2, write=1)


def _stall(w):
    if not w.node.state(RES)["syncing"]:
        w.cluster.sync(RES, 3)


def _progress(w):
    if w.node.state(RES)["syncing"]:
        w.cluster.sync_progress(RES, 1)


SCENARIOS = {
    "io-errors": (_io, None),
    "hastd-down": (lambda w: w.node.stop_hastd(), None),
    "degraded": (lambda w: w.cluster.disconnect(RES) if w.node.state(RES)["connected"]
                 else None, lambda w: w.cluster.connect(RES)),
    "sync-stalled": (_stall, _progress),
    "stuck-init": (lambda w: w.node.set_state(RES, role="init"),
                   lambda w: w.node.set_state(RES, role="primary")),
    "role-unexpected": (lambda w: w.node.set_state(RES, role="secondary"),
                        lambda w: w.node.set_state(RES, role="primary")),
    "exec-not-wired": (lambda w: w.node.edit_conf(RES, exec="/usr/local/libexec/other-hook"),
                       lambda w: w.node.edit_conf(RES, exec=command("hasthook-exec"))),
}


@pytest.fixture(params=CONDS)
def each(request, tmp_path, syslog, http):
    cond = request.param
    w = Watched(tmp_path, syslog.path, http,
                expect={RES: "primary"} if cond == "role-unexpected" else None)
    yield w, cond
    w.close()


def test_each_condition_fires_once_after_fall_and_resolves_once_after_rise(each):
    w, cond = each
    make, heal = SCENARIOS[cond]
    w.passes(2)  # baselines
    raised = w.passes(12, before=lambda: make(w))
    onsets = [e for e in raised if e[0] == cond]
    assert onsets and set(onsets) <= {(cond, RES), (cond, OTHER)}
    assert {e[0] for e in raised} == {cond}, raised  # no other condition along the way
    assert w.count(cond) == 1, w.titles()  # one message per onset, however many passes
    [c] = [c for c in w.store.watch_active() if c["resource"] == RES]
    assert c["condition"] == cond and c["severity"] == CONDITIONS[cond]
    if cond == "hastd-down":
        w.node.start_hastd()
        w.node.set_state(RES, role="primary")
        w.node.set_state(OTHER, role="primary")
        w.cluster.connect(RES)
        w.cluster.connect(OTHER)
    elif heal is not None:
        heal(w)
    healed = w.passes(8, before=(lambda: heal(w)) if cond == "sync-stalled" else None)
    assert {e[0] for e in healed} == {f"{cond}-resolved"}, healed
    assert w.count(f"{cond}-resolved") == 1, w.titles()
    assert w.count(cond) == 1 and w.store.watch_active() == []
    # fall=2: the onset is the second bad pass, so the message came from that pass.
    [ev] = [e for e in w.store.history(event=cond) if e["resource"] == RES]
    assert ev["cause"] == "watch" and ev["severity"] == CONDITIONS[cond]


def test_hastd_answering_with_an_error_is_hastd_down(watched):
    w = watched
    w.node.fail_status(RES)  # exit 70: "Error 35 received from hastd."
    assert w.passes(3) == [("hastd-down", RES), ("hastd-down", OTHER)]
    [c, _] = w.store.watch_active()
    assert "Error 35 received from hastd" in c["detail"]
    w.node.clear_faults()
    assert w.passes(2) == [("hastd-down-resolved", RES), ("hastd-down-resolved", OTHER)]
    # Both resources at once: one message, its title naming the count.
    assert sum("hastd-down on 2 resources" in t for t in w.titles()) == 1
    assert sum("hastd-down-resolved on 2 resources" in t for t in w.titles()) == 1


def test_flush_errors_of_a_file_backed_provider_raise_nothing(tmp_path, syslog, http):
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    w = Watched(tmp_path, syslog.path, http, resources=(RES,))
    try:
        w.node.edit_conf(RES, localpath=str(disk))
        w.cluster.reload("host1")
        w.cluster.wait_hooks(120)
        w.node.set_state(RES, role="primary")
        w.cluster.connect(RES)
        w.passes(2)
        # Every write's activemap flush fails with ENOTTY: the flush counter climbs.
        assert w.passes(6, before=lambda: w.node.write(RES, 2)) == []
        assert w.node.state(RES)["errors"]["flush"] >= 12
        assert w.titles() == []
        # A read error on it is a dying disk all the same.
        assert w.passes(3, before=lambda: w.node.local_errors(RES, read=1)) == [
            ("io-errors", RES)]
    finally:
        w.close()


def test_a_silence_mutes_the_message_the_condition_is_still_recorded(watched):
    w = watched
    r = run_cmd(command("hasthook"), "silence", "add", RES, "--for", "2d", "--event",
                "io-errors", "-c", str(w.path))
    assert r.returncode == 0, r.stderr
    assert w.passes(5, before=lambda: _io(w)) == [("io-errors", RES)]
    assert w.titles() == []
    [ev] = w.store.history(event="io-errors")
    assert ev["outcome"]["suppressed"][0]["by"] == "silence"


def test_many_resources_at_once_are_one_message(tmp_path, syslog, http):
    names = [f"r{i}" for i in range(6)]
    w = Watched(tmp_path, syslog.path, http, resources=names)
    try:
        w.node.edit_conf(exec="/usr/local/libexec/other-hook")  # the global exec
        for r in names:
            w.node.edit_conf(r, exec=None)
        raised = w.passes(3)
        assert sorted(raised) == [("exec-not-wired", r) for r in names]
        assert w.titles() == ["[warning] exec-not-wired on 6 resources (host1)"]
    finally:
        w.close()


def test_heartbeat_one_get_per_completed_pass_none_when_the_pass_failed(watched, tmp_path):
    w = watched
    w.passes(3)
    pings = w.sink.received("/ping/")
    assert [p["method"] for p in pings] == ["GET"] * 3
    # A pass that cannot complete (its database unusable) pings nothing.
    bad = tmp_path / "broken"
    (bad / "hasthook.db").mkdir(parents=True)
    cfg = w.path.read_text().replace(str(tmp_path / "state"), str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text(cfg)
    r = run_cmd(command("hasthook"), "watch", "-q", "-c", str(broken))
    assert r.returncode == 74 and "hasthook.db" in r.stderr, r
    assert len(w.sink.received("/ping/")) == 3
    # A ping that fails is logged, and the secret part of the URL is not.
    w.sink.status = 500
    p = run_pass(w.cfg, w.store, w.log, now=w.t0 + w.cluster.now)
    assert p.heartbeat.startswith(f"heartbeat to http://{w.sink.base}/")
    assert any(p.heartbeat in m for _, m in w.log.lines)
    assert "s3cr3t" not in json.dumps(w.log.lines) + p.heartbeat


def test_a_metrics_directory_others_can_write_is_refused_and_the_pass_goes_on(watched,
                                                                              tmp_path):
    w = watched
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    cfg = w.cfg.replace(settings=w.cfg.settings.replace(
        metrics_textfile=str(d / "hasthook.prom")))
    before = len(w.sink.received("/ping/"))
    p = run_pass(cfg, w.store, w.log, now=w.t0 + w.cluster.now)
    assert "writable by group or other" in p.metrics and str(d) in p.metrics
    assert p.heartbeat == "ok" and len(w.sink.received("/ping/")) == before + 1
    assert not (d / "hasthook.prom").exists()


def test_a_heartbeat_receiver_that_hangs_does_not_hold_the_pass(watched, tmp_path):
    w = watched
    with HttpSink() as hang:
        hang.hold.clear()
        cfg = w.cfg.replace(settings=w.cfg.settings.replace(
            watch=w.cfg.settings.watch.replace(heartbeat=f"http://{hang.base}/ping/x",
                                               heartbeat_timeout=1.0)))
        for _ in range(3):
            w.node.local_errors(RES, read=1)
            p = run_pass(cfg, w.store, w.log, now=w.t0 + w.cluster.now)
            w.cluster.advance(60)
            assert p.heartbeat is not None and p.heartbeat != "ok"
        # Every pass came back while the receiver still held its request, and did its work.
        assert not hang.hold.is_set() and len(hang.received("/ping/")) == 3
        assert w.count("io-errors") == 1
        hang.hold.set()
    assert any("heartbeat to http://127.0.0.1" in m for _, m in w.log.lines)


def test_watch_runs_only_list_status_and_dump(watched):
    w = watched
    w.node.clear_calls()
    w.node.set_state(OTHER, role="init")         # dump: the role before init
    w.passes(3, before=lambda: _io(w))
    w.node.fail_status(RES)
    w.passes(2)
    w.node.clear_faults()
    w.node.stop_hastd()
    w.passes(2)
    calls = w.node.calls()
    assert {c[0] for c in calls} <= {"list", "status", "dump"}, calls
    assert ["dump", OTHER] in calls and ["list"] in calls


def test_the_command_once_from_cron_then_status_shows_the_condition(watched):
    w = watched
    w.node.stop_hastd()
    for _ in range(2):
        r = run_cmd(command("hasthook"), "watch", "-c", str(w.path))
        assert r.returncode == 0, r.stderr
    assert "critical  hastd-down" in r.stdout and "2 condition(s) active" in r.stdout
    w.node.start_hastd()
    r = run_cmd(command("hasthook"), "status", "--json", "-c", str(w.path))
    assert r.returncode == 1
    st = json.loads(r.stdout)
    assert {c["condition"] for c in st["conditions"]} == {"hastd-down"}
    assert st["watch_pass"].endswith("Z")
    r = run_cmd(command("hasthook"), "test", "io-errors", RES, "-c", str(w.path))
    assert r.returncode == 0, r.stderr
    assert "rule 'watch' (rules[0]) matches" in r.stdout
    assert "[critical] io-errors on shared1 (host1)" in r.stdout
