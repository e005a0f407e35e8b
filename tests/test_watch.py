"""hasthook/watch.py: the pure core (verdicts, hysteresis, events), the condition words
through the rules, silences and resolved messages on a real store, and the heartbeat
against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from conftest import RecordingLog
from receivers import HttpSink

from hasthook import rules, silences
from hasthook.config.loader import from_data
from hasthook.config.settings import Watch
from hasthook.delivery.alertmanager import RESOLVED_BY
from hasthook.event import CONDITIONS, ENDED_BY, RESOLVES, classify
from hasthook.hast import Resource
from hasthook.pipeline import Pipeline
from hasthook.store import Store
from hasthook.watch import ALL, Observation, heartbeat, shown, step

T0 = 1_700_000_000.0
W = Watch()  # fall 2, rise 2, degraded_after 5m, init_after 10m


def res(name: str = "shared1", **kw) -> Resource:
    base = {"role": "primary", "status": "complete", "dirty": 0, "provname": name,
            "localpath": "/dev/ada1", "extentsize": 2097152, "keepdirty": 64,
            "errors": {"read": 0, "write": 0, "delete": 0, "flush": 0}}
    return Resource(name, **{**base, **kw})


class Run:
    """Passes one after the other, carrying the state as the store would."""

    def __init__(self, settings: Watch = W, **obs):
        self.settings = settings
        self.seen: dict = {}
        self.conds: dict = {}
        self.t = T0
        self.obs = {"execs": {"shared1": "/usr/local/sbin/hasthook-exec"}, **obs}

    def passes(self, n: int = 1, every: float = 60.0, **obs) -> list:
        events = []
        for _ in range(n):
            o = Observation("host1", self.t, **{"up": True, **self.obs, **obs})
            out = step(o, self.seen, self.conds, self.settings)
            self.seen, self.conds = out.seen, out.conditions
            events += [(e.event, e.resource, e.severity) for e in out.events]
            self.t += every
        return events

    def active(self) -> set:
        return {k for k, c in self.conds.items() if c["active"]}


def errors(read=0, write=0, delete=0, flush=0) -> dict:
    return {"read": read, "write": write, "delete": delete, "flush": flush}


# -- each condition: fires after fall passes, once; resolves after rise, once -------------


def test_a_healthy_pair_raises_nothing_over_many_passes():
    run = Run()
    assert run.passes(50, resources={"shared1": res(), "shared2": res("shared2",
                                                                      role="secondary")},
                      execs={"shared1": "/x/hasthook-exec", "shared2": "/x/hasthook-exec"}) == []
    assert run.conds == {}


def test_io_errors_fire_after_fall_passes_once_and_resolve_after_rise_once():
    run = Run()
    assert run.passes(resources={"shared1": res(errors=errors())}) == []   # the baseline
    evs = []
    for i in range(1, 8):  # the disk fails more every pass
        evs += run.passes(resources={"shared1": res(errors=errors(read=3 * i))})
    assert evs == [("io-errors", "shared1", "critical")]
    c = run.conds[("shared1", "io-errors")]
    assert c["active"] and c["since"] == T0 + 60 and "read +3 (now read 21" in c["detail"]
    assert run.passes(resources={"shared1": res(errors=errors(read=21))}) == []  # 1 good
    assert run.passes(5, resources={"shared1": res(errors=errors(read=21))}) == [
        ("io-errors-resolved", "shared1", "info")]
    assert run.conds == {}


def test_one_bad_pass_between_good_ones_never_fires():
    run = Run()
    run.passes(resources={"shared1": res()})
    evs = []
    for i in range(1, 10):  # a rise every other pass: never fall=2 in a row
        evs += run.passes(resources={"shared1": res(errors=errors(write=(i + 1) // 2))})
    assert evs == [] and not run.active()


def test_a_flapping_condition_stays_one_episode():
    run = Run()
    run.passes(resources={"shared1": res()})
    evs = run.passes(2, resources={"shared1": res(errors=errors(read=1))})  # 1 bad only
    for i in range(2, 6):
        evs += run.passes(resources={"shared1": res(errors=errors(read=i))})  # bad
    for i in range(6, 12):  # bad, good, bad, good: never rise=2 good in a row
        evs += run.passes(resources={"shared1": res(errors=errors(read=i - i % 2))})
    assert evs == [("io-errors", "shared1", "critical")]


def test_flush_errors_of_a_file_backed_provider_are_no_dying_disk():
    run = Run()
    for n in range(6):
        assert run.passes(resources={"shared1": res(errors=errors(flush=100 * n),
                                                    localpath="/var/hast/disk.img")},
                          file_backed=["shared1"]) == []
    # The same counter on a real disk is one.
    run = Run()
    evs = [run.passes(resources={"shared1": res(errors=errors(flush=n))}) for n in range(4)]
    assert sum(evs, []) == [("io-errors", "shared1", "critical")]


def test_a_restarted_worker_resets_the_counters_without_an_alert():
    run = Run()
    run.passes(resources={"shared1": res(errors=errors(read=50))})
    assert run.passes(4, resources={"shared1": res(errors=errors())}) == []


def test_degraded_after_degraded_after_with_the_backlog_and_its_growth():
    run = Run()
    evs = []
    for minute in range(12):
        evs += run.passes(resources={"shared1": res(status="degraded",
                                                    dirty=minute * 64 * 1024 ** 2)})
        if minute == 5:
            assert evs == []  # 5 minutes degraded, the 1st bad pass
    assert evs == [("degraded", "shared1", "warning")]
    detail = run.conds[("shared1", "degraded")]["detail"]
    assert "primary without its secondary for 11m" in detail
    assert "704MB dirty" in detail and "growing by 64MB/min" in detail
    assert run.passes(2, resources={"shared1": res()}) == [
        ("degraded-resolved", "shared1", "info")]


def test_a_secondary_without_its_primary_is_not_degraded():
    run = Run()
    assert run.passes(20, resources={"shared1": res(role="secondary", status="degraded")}) == []


def test_sync_stalled_when_dirty_does_not_go_down_during_a_sync():
    run = Run(syncing=["shared1"])
    mb = 1024 ** 2
    assert run.passes(resources={"shared1": res(dirty=6 * mb)}) == []
    assert run.passes(resources={"shared1": res(dirty=4 * mb)}) == []  # progress
    evs = run.passes(3, resources={"shared1": res(dirty=4 * mb)})
    assert evs == [("sync-stalled", "shared1", "warning")]
    assert "4.0MB dirty, not going down" in run.conds[("shared1", "sync-stalled")]["detail"]
    evs = run.passes(resources={"shared1": res(dirty=2 * mb)})
    assert evs + run.passes(resources={"shared1": res(dirty=1 * mb)}) == [
        ("sync-stalled-resolved", "shared1", "info")]


def test_keepdirty_extents_of_a_busy_healthy_primary_are_no_stalled_sync():
    run = Run()  # no sync running: up to keepdirty * extentsize stays dirty by design
    assert run.passes(10, resources={"shared1": res(dirty=3 * 2097152)}) == []
    # Beyond that window the backlog is real even when the history missed syncstart.
    assert run.passes(3, resources={"shared1": res(dirty=65 * 2097152)}) == [
        ("sync-stalled", "shared1", "warning")]


def test_stuck_init_after_init_after_says_why():
    run = Run(init_notes={"shared1": "recovery #3 was interrupted"})
    evs = run.passes(10, resources={"shared1": res(role="init", status=None)})
    assert evs == []  # 9 minutes
    evs = run.passes(2, resources={"shared1": res(role="init", status=None)})
    assert evs == [("stuck-init", "shared1", "warning")]
    assert "recovery #3 was interrupted" in run.conds[("shared1", "stuck-init")]["detail"]
    # Intended: expect_role init.
    run = Run(expect={"shared1": "init"})
    assert run.passes(30, resources={"shared1": res(role="init", status=None)}) == []


def test_role_unexpected_only_with_expect_role():
    run = Run(expect={"shared1": "primary"})
    assert run.passes(3, resources={"shared1": res(role="secondary")}) == [
        ("role-unexpected", "shared1", "warning")]
    assert "role secondary, but resources.shared1.expect_role is primary" in \
        run.conds[("shared1", "role-unexpected")]["detail"]
    assert run.passes(2, resources={"shared1": res()}) == [
        ("role-unexpected-resolved", "shared1", "info")]
    assert Run().passes(5, resources={"shared1": res(role="secondary")}) == []


@pytest.mark.parametrize(("execs", "why"), [
    ({"shared1": None}, "sets no exec for shared1"),
    ({"shared1": "/usr/local/sbin/other-hook"}, "is /usr/local/sbin/other-hook, not hasthook"),
])
def test_exec_not_wired(execs, why):
    run = Run(execs=execs)
    assert run.passes(2, resources={"shared1": res()}) == [
        ("exec-not-wired", "shared1", "warning")]
    assert why in run.conds[("shared1", "exec-not-wired")]["detail"]


def test_an_unreadable_hast_conf_leaves_exec_not_wired_as_it_was():
    run = Run(execs={"shared1": None})
    run.passes(2, resources={"shared1": res()})
    assert run.passes(5, resources={"shared1": res()}, execs=None) == []
    assert ("shared1", "exec-not-wired") in run.active()


def test_hastd_down_on_every_known_resource_others_frozen_then_resolved():
    run = Run(known=["shared1", "shared2"])
    run.passes(resources={"shared1": res(), "shared2": res("shared2")},
               execs={"shared1": None, "shared2": "/x/hasthook-exec"})  # 1 bad exec pass
    evs = run.passes(3, up=False, why_down="exit status 71: Connection refused",
                     resources={})
    assert evs == [("hastd-down", "shared1", "critical"), ("hastd-down", "shared2", "critical")]
    assert run.conds[("shared1", "exec-not-wired")]["bad"] == 1  # not judged while down
    assert "Connection refused" in run.conds[("shared1", "hastd-down")]["detail"]
    evs = run.passes(2, resources={"shared1": res(), "shared2": res("shared2")},
                     execs={"shared1": "/x/hasthook-exec", "shared2": "/x/hasthook-exec"})
    assert evs == [("hastd-down-resolved", "shared1", "info"),
                   ("hastd-down-resolved", "shared2", "info")]


def test_hastd_down_with_no_resource_known_names_all():
    run = Run(known=[])
    assert run.passes(2, up=False, why_down="timed out") == [("hastd-down", ALL, "critical")]
    assert run.passes(2, resources={}) == [("hastd-down-resolved", ALL, "info")]


def test_a_resource_gone_from_hastd_resolves_its_conditions():
    run = Run(expect={"shared1": "primary"})
    run.passes(2, resources={"shared1": res(role="secondary")})
    assert run.passes(2, resources={}) == [("role-unexpected-resolved", "shared1", "info")]


def test_the_events_carry_cause_watch_the_state_and_what():
    o = Observation("host1", T0, True, resources={"shared1": res(role="secondary")},
                    expect={"shared1": "primary"})
    out = step(o, {}, {}, Watch(fall=1))
    [ev] = out.events
    assert (ev.cause, ev.role, ev.status, ev.host, ev.time) == (
        "watch", "secondary", "complete", "host1", T0)
    assert ev.summary.startswith("[shared1] role secondary, but resources.shared1.expect_role")


# -- the words: classify, rules, silences, the resolving table ---------------------------


def test_every_condition_is_an_event_word_with_its_resolver():
    for cond, severity in CONDITIONS.items():
        ev = classify([cond, "shared1"], "host1", T0)
        assert (ev.known, ev.severity) == (True, severity)
        assert ENDED_BY[cond] == (f"{cond}-resolved",)
        assert RESOLVES[f"{cond}-resolved"] == (cond,)
        assert RESOLVED_BY[cond] == (f"{cond}-resolved",)
        assert silences.check_event(cond) == cond
        assert classify([f"{cond}-resolved", "shared1"], "host1").severity == "info"
    with pytest.raises(ValueError, match="unknown event"):
        silences.check_event("io-error")


def test_match_event_io_errors_and_the_schema_takes_it():
    from hasthook.config.schema import validate

    data = {"channels": {"ops": "json://127.0.0.1:9/x"},
            "resources": {"shared1": {"expect_role": "primary"}},
            "settings": {"watch": {"fall": 3, "heartbeat": "https://hc.example/ping/x"},
                         "metrics_textfile": "/var/db/node_exporter/hasthook.prom"},
            "rules": [{"name": "disk", "match": {"event": ["io-errors", "hastd-down"]},
                       "actions": [{"notify": "ops"}]}]}
    assert validate(data) == []
    cfg = from_data(data)
    ev = classify(["io-errors", "shared1"], "host1")
    assert [m.name for m in rules.match(ev, cfg.rules)] == ["disk"]
    assert rules.match(classify(["degraded", "shared1"], "host1"), cfg.rules) == []
    assert cfg.settings.watch.fall == 3
    bad = {**data, "resources": {"shared1": {"expect_role": "master"}}}
    assert validate(bad)


# -- through the pipeline: one message per onset, one resolved, silences -----------------


def pipeline_run(tmp_path, rule: dict, passes: list[dict], settings: Watch = W):
    """Each pass's events through a real store's pipeline; the outbox rows it made."""
    cfg = from_data({"channels": {"ops": "json://127.0.0.1:9/x"}, "rules": [rule],
                     "settings": {"hostname": "host1", "state_dir": str(tmp_path)}})
    store = Store(str(tmp_path))
    p = Pipeline(cfg, store, RecordingLog())
    t = time.time()
    for i, obs in enumerate(passes):
        seen, conds = store.watch_state("host1")
        out = step(Observation("host1", t + 60 * i, True, **obs), seen, conds, settings)
        for h in p.record_all(out.events, then=lambda db, o=out, n=t + 60 * i:
                              store.save_watch_state(db, "host1", n, o.seen, o.conditions)):
            p.run(h)
    return store


def test_one_alert_and_one_resolved_message_through_the_outbox(tmp_path):
    rule = {"name": "disk", "match": {"event": "io-errors"}, "send_resolved": True,
            "actions": [{"notify": "ops"}]}
    bad = [{"resources": {"shared1": res(errors=errors(read=i))}} for i in range(8)]
    good = [{"resources": {"shared1": res(errors=errors(read=7))}}] * 6
    store = pipeline_run(tmp_path, rule, bad + good)
    rows = [(r["kind"], r["event"], r["resource"]) for r in store.outbox_list(("pending",))]
    assert rows == [("alert", "io-errors", "shared1"),
                    ("resolved", "io-errors-resolved", "shared1")]
    hist = [(e["event"], e["cause"]) for e in reversed(store.history())]
    assert hist == [("io-errors", "watch"), ("io-errors-resolved", "watch")]
    assert store.watch_active() == [] and store.watch_last_pass() is not None
    assert store.unresolved_alerts(ENDED_BY) == []


def test_an_active_condition_is_an_unresolved_alert_until_it_ends(tmp_path):
    rule = {"name": "r", "match": {"event": "*"}, "actions": []}
    store = pipeline_run(tmp_path, rule, [{"resources": {"shared1": res(role="init")}}] * 3,
                         Watch(fall=1, init_after=60))
    [a] = store.unresolved_alerts(ENDED_BY)
    assert (a["event"], a["resource"], a["severity"]) == ("stuck-init", "shared1", "warning")
    [c] = store.watch_active()
    assert (c["condition"], c["severity"]) == ("stuck-init", "warning")


def test_a_silence_holds_the_message_but_the_condition_is_recorded(tmp_path):
    store = Store(str(tmp_path))
    now = time.time()
    store.silence_add(now - 10, now + 3600, "shared*", "io-errors", "ops", "disk swap")
    store.close()
    rule = {"name": "disk", "match": {"event": "io-errors"}, "actions": [{"notify": "ops"}]}
    store = pipeline_run(tmp_path, rule, [{"resources": {"shared1": res(
        errors=errors(read=i))}} for i in range(4)])
    assert store.outbox_list(("pending",)) == []
    [ev] = store.history(event="io-errors")
    assert ev["outcome"]["suppressed"][0]["by"] == "silence"


def test_many_resources_at_once_are_one_message(tmp_path):
    names = [f"r{i}" for i in range(20)]
    rule = {"name": "wired", "match": {"event": "exec-not-wired"}, "actions": [{"notify": "ops"}]}
    store = pipeline_run(tmp_path, rule, [{"resources": {n: res(n) for n in names},
                                           "execs": dict.fromkeys(names)}] * 3)
    rows = store.outbox_list(("pending",))
    assert len(rows) == 20 and {r["group_key"] for r in rows} == {"wired|warning"}


# -- the heartbeat ------------------------------------------------------------------------


def test_heartbeat_is_one_get_and_a_failure_is_logged_without_the_secret():
    with HttpSink() as sink:
        log = RecordingLog()
        assert heartbeat(f"http://{sink.base}/ping/0f1e2d3c-secret", 5, log) == "ok"
        [r] = sink.received("/ping/")
        assert (r["method"], r["path"]) == ("GET", "/ping/0f1e2d3c-secret")
        sink.status = 500
        why = heartbeat(f"http://user:pw-secret@{sink.base}/ping/0f1e2d3c-secret", 5, log)
        assert "HTTP 500" in why
        auth = sink.received("/ping/")[-1]["headers"]["Authorization"]
        assert auth == "Basic dXNlcjpwdy1zZWNyZXQ="  # user:pw-secret
    text = str(log.lines)
    assert "0f1e2d3c" not in text and "pw-secret" not in text and sink.base in text


def test_a_heartbeat_receiver_that_hangs_costs_at_most_the_timeout():
    with HttpSink() as sink:
        sink.hold.clear()  # takes the request, never answers
        log = RecordingLog()
        why = heartbeat(f"http://{sink.base}/ping/abc", 0.5, log)
        # Back while the receiver still holds the request: the timeout ended the wait.
        assert not sink.hold.is_set() and len(sink.received("/ping/")) == 1
        sink.hold.set()
    assert "failed" in why and log.lines[-1][0] == "warning"


def test_shown_keeps_only_scheme_and_host():
    assert shown("https://u:p@hc.example:8443/ping/uuid?x=1") == "https://hc.example:8443/…"
