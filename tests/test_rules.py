"""Rules: matching (pure), throttle and repeat_interval on a controlled clock, the pipeline
that applies them inside the event's transaction, and the `command` action."""

from __future__ import annotations

import json
import sys
import time

import pytest
from conftest import RecordingLog, command, evaluate, run_cmd

from hasthook import actions, rules
from hasthook.config import from_data
from hasthook.event import classify
from hasthook.rules import RuleState, decide, match
from hasthook.store import Store


def event(words="split-brain shared1", host="host1", t=1000.0, **state):
    """`role RES OLD NEW` is split on spaces; for other events the rest is the resource."""
    word, rest = words.split(" ", 1)
    ev = classify([word, *rest.split()] if word == "role" else [word, rest], host, now=t)
    for k, v in state.items():
        setattr(ev, k, v)
    return ev


def names(ev, rule_list):
    return [m.name for m in match(ev, rule_list)]


# -- every match key -------------------------------------------------------------

@pytest.mark.parametrize("m,ev,expected", [
    ({"event": "split-brain"}, event(), True),
    ({"event": "connect"}, event(), False),
    ({"event": ["disconnect", "split-brain"]}, event(), True),
    ({"event": "*"}, event("resync-paused shared1"), True),
    ({"resource": "shared*"}, event(), True),
    ({"resource": "db?"}, event(), False),
    ({"resource": ["db*", "shared1"]}, event(), True),
    ({"resource": "re:shared[0-9]+"}, event(), True),
    ({"resource": "re:shared"}, event(), False),           # regexes are anchored
    ({"resource": "Shared1"}, event(), False),             # names are case-sensitive
    ({"role": "secondary"}, event(role="secondary"), True),
    ({"role": ["primary", "init"]}, event(role="secondary"), False),
    ({"role": "primary"}, event(role=None), False),        # unknown role matches no role
    ({"old_role": "primary", "new_role": "secondary"},
     event("role shared1 primary secondary"), True),
    ({"new_role": "primary"}, event("role shared1 primary secondary"), False),
    ({"old_role": "primary"}, event(), False),             # not a role event
    ({"host": "host*"}, event(), True),
    ({"host": ["db1", "re:h.st2"]}, event(), False),
    ({"severity": "critical"}, event(), True),
    ({"severity": ["info", "warning"]}, event(), False),
    ({"severity_at_least": "warning"}, event("disconnect shared1"), True),
    ({"severity_at_least": "warning"}, event("connect shared1"), False),
    ({"severity_at_least": "critical"}, event(), True),
    ({"status": "degraded"}, event(status="degraded"), True),
    ({"status": "complete"}, event(status=None), False),
    ({"dirty_over": "1G"}, event(dirty=2 * 2**30), True),
    ({"dirty_over": "1G"}, event(dirty=2**30), False),     # over, not at
    ({"dirty_over": 0}, event(dirty=None), False),         # unknown is not over
    ({"dirty_over": 4096}, event(dirty=4097), True),
    ({"cause": "recover"}, event("role shared1 secondary init", cause="recover"), True),
    ({"cause": "recover"}, event("role shared1 secondary init"), False),
    ({"cause": "none"}, event("role shared1 secondary init"), True),
    ({"event": "split-brain", "role": "secondary", "status": "degraded"},
     event(role="primary", status="degraded"), False),     # every key must hold
    ({}, event(), True),                                   # no keys: every event
])
def test_match_keys(m, ev, expected):
    assert rules.matches(ev, m) is expected


def test_every_match_key_is_tested_above_and_in_the_schema():
    from hasthook.config.schema import schema

    assert set(rules.MATCH_KEYS) == set(schema()["$defs"]["match"]["properties"])


# -- order ------------------------------------------------------------------------

RULES = [
    {"name": "sb-secondary", "match": {"event": "split-brain", "role": "secondary"},
     "continue": True, "actions": [{"command": {"argv": ["true"]}}]},
    {"name": "sb", "match": {"event": "split-brain"}, "actions": [{"notify": "ops"}]},
    {"name": "critical", "match": {"severity": "critical"}, "actions": [{"notify": "pager"}]},
    {"name": "everything", "actions": []},
]


def test_first_match_wins():
    assert names(event(role="primary"), RULES) == ["sb"]


def test_continue_goes_on_to_the_next_match():
    assert names(event(role="secondary"), RULES) == ["sb-secondary", "sb"]


def test_later_rules_catch_what_earlier_ones_do_not():
    assert names(event("disconnect shared1"), RULES) == ["everything"]
    assert names(event("connect shared1"), RULES[:3]) == []


def test_actions_are_normalised():
    [m] = match(event(role="primary"), RULES)
    assert m.actions == (("notify", {"channels": ["ops"]}),)
    assert rules.action_of({"notify": ["a", "b"]}) == ("notify", {"channels": ["a", "b"]})
    assert rules.action_of({"notify": {"channels": "a", "title": "t"}}) == (
        "notify", {"channels": ["a"], "title": "t"})
    assert rules.action_of({"recover": None}) == ("recover", {})


# -- throttle and repeat_interval, pure --------------------------------------------

def run_clock(rule, times):
    """Feed events at these times through decide(); returns (fired at, suppressed told)."""
    state, fired = None, []
    for t in times:
        d = decide(rule, state, t)
        state = d.state
        if d.fire:
            fired.append((t, d.suppressed))
    return fired, state


def test_throttle_allows_max_per_window_then_tells_how_many_were_held():
    rule = {"throttle": {"max": 2, "window": "1m"}}
    fired, state = run_clock(rule, [0, 1, 2, 3, 59, 60, 61, 62])
    assert fired == [(0, 0), (1, 0), (60, 3), (61, 0)]
    assert state.suppressed == 1


def test_decide_holds_back_with_the_reason():
    d = decide({"throttle": {"max": 1, "window": 10}}, RuleState(0.0, 1, 0.0, 0), 5.0)
    assert (d.fire, d.reason, d.state.suppressed) == (False, "throttle", 1)
    d = decide({"repeat_interval": "1h"}, RuleState(last_fired=0.0), 5.0)
    assert (d.fire, d.reason) == (False, "repeat")


def test_repeat_interval_reminds_every_interval():
    """hastd repeats split-brain every 10 s: one message, then one per interval."""
    rule = {"repeat_interval": "10m"}
    fired, _ = run_clock(rule, range(0, 1801, 10))
    assert fired == [(0, 0), (600, 59), (1200, 59), (1800, 59)]


def test_without_throttle_or_repeat_every_event_acts():
    fired, _ = run_clock({}, [0, 1, 2])
    assert fired == [(0, 0), (1, 0), (2, 0)]


def test_key_defaults_to_event_resource_host_and_can_be_narrowed():
    a, b = event(), event("split-brain shared2")
    assert rules.key_of({}, a) != rules.key_of({}, b)
    assert rules.key_of({"key": ["host"]}, a) == rules.key_of({"key": ["host"]}, b)


# -- the pipeline: one transaction, state in the store, resolution ------------------

@pytest.fixture
def pipeline(tmp_path):
    """evaluate() as the hook calls it, on a real store; returns the jobs it would run."""
    store, log = Store(str(tmp_path / "state")), RecordingLog()

    def run(cfg, ev):
        return evaluate(store, cfg, ev, log)

    run.store, run.log = store, log.lines
    yield run
    store.close()


SB_RULE = {"name": "sb", "match": {"event": "split-brain"}, "repeat_interval": "10m",
           "actions": [{"command": {"argv": ["true"]}}]}


def test_split_brain_storm_notifies_once_then_reminds_until_resolved(pipeline):
    cfg = from_data({"rules": [SB_RULE]})
    acted = []
    for t in range(0, 1200, 10):  # 20 minutes of hastd's 10-second retries
        jobs, matched, held = pipeline(cfg, event(t=float(t)))
        assert matched == ["sb"]
        if jobs:
            acted.append((t, jobs[0].ctx.suppressed))
        else:
            [h] = held
            assert (h["rule"], h["by"]) == ("sb", "repeat")
    assert acted == [(0, 0), (600, 59)]
    pipeline(cfg, event("syncdone shared1", t=1200.0))  # the reset node resynced
    jobs, _, held = pipeline(cfg, event(t=1210.0))
    assert len(jobs) == 1 and held == []
    assert jobs[0].ctx.suppressed == 59  # the reminders held since 600 s are still told


def test_resolution_only_ends_its_own_resource(pipeline):
    cfg = from_data({"rules": [SB_RULE]})
    pipeline(cfg, event("split-brain shared1", t=0.0))
    pipeline(cfg, event("split-brain shared2", t=0.0))
    pipeline(cfg, event("syncdone shared2", t=5.0))
    assert pipeline(cfg, event("split-brain shared1", t=10.0))[0] == []
    assert len(pipeline(cfg, event("split-brain shared2", t=10.0))[0]) == 1


def test_throttle_state_survives_resolution(pipeline):
    """A flapping link: connect resolves each disconnect, the throttle still holds."""
    rule = {"name": "link", "match": {"event": "disconnect"},
            "throttle": {"max": 2, "window": "1h"}, "actions": [{"command": {"argv": ["true"]}}]}
    cfg = from_data({"rules": [rule]})
    acted = 0
    for t in range(0, 100, 10):
        acted += len(pipeline(cfg, event("disconnect shared1", t=float(t)))[0])
        pipeline(cfg, event("connect shared1", t=t + 5.0))
    assert acted == 2


def test_a_failing_prepare_costs_its_action_not_the_event(pipeline, monkeypatch):
    from hasthook.actions import command as command_action

    def broken(params, ctx, db):
        db.execute("INSERT INTO rule_state (rule, key, event, resource, host) "
                   "VALUES ('x', 'x', 'x', 'x', 'x')")
        raise RuntimeError("boom")

    monkeypatch.setattr(command_action, "prepare", broken)
    cfg = from_data({"rules": [SB_RULE]})
    [job], _, _ = pipeline(cfg, event())
    assert job.failed["ok"] is False and "boom" in job.failed["detail"]
    assert job.run()["detail"] == job.failed["detail"]  # execute is skipped
    rows = pipeline.store.db.execute("SELECT rule FROM rule_state").fetchall()
    assert [r[0] for r in rows] == ["sb"]  # its writes were rolled back, the rule's kept
    assert len(pipeline.store.history()) == 1


def test_missing_action_module_is_logged_and_recorded_as_failed(pipeline, monkeypatch):
    monkeypatch.setitem(sys.modules, "hasthook.actions.recover", None)  # not installed
    cfg = from_data({"rules": [{"name": "r", "actions": [{"recover": {}}]}]})
    [job], _, _ = pipeline(cfg, event())
    out = job.run()
    assert out == {"rule": "r", "action": "recover", "ok": False,
                   "detail": "action 'recover' is not available in this installation"}
    assert any(level == "err" and "not available" in msg for level, msg in pipeline.log)


# -- end to end through hasthook-exec -------------------------------------------------

def hook(cfg, *words):
    return run_cmd(command("hasthook-exec"), *words, env={"HASTHOOK_CONFIG": str(cfg)})


def history(cfg):
    r = run_cmd(command("hasthook"), "history", "--json", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[::-1]


def test_suppressed_events_are_recorded_with_the_rule_that_held_them(write_config, tmp_path):
    out = tmp_path / "acted"
    cfg = write_config({"rules": [
        {"name": "sb-once", "match": {"event": "split-brain"}, "repeat_interval": "1h",
         "actions": [{"command": {"argv": ["sh", "-c", 'echo "$1" >> "$0"', str(out),
                                           "{resource} {count}"]}}]}]},
        hastctl="/nonexistent")
    for _ in range(3):
        assert hook(cfg, "split-brain", "shared1").returncode == 0
    assert hook(cfg, "connect", "shared1").returncode == 0
    rows = history(cfg)
    assert [r["rules"] for r in rows] == [["sb-once"]] * 3 + [None]
    assert rows[0]["outcome"]["actions"][0]["ok"] is True
    assert [r["outcome"]["suppressed"] for r in rows[1:3]] == [
        [{"rule": "sb-once", "by": "repeat", "count": 1}],
        [{"rule": "sb-once", "by": "repeat", "count": 2}]]
    assert out.read_text() == "shared1 1\n"


def test_no_rule_matches_event_still_recorded(write_config):
    cfg = write_config({"rules": [{"name": "x", "match": {"event": "syncdone"}}]},
                       hastctl="/nonexistent")
    assert hook(cfg, "disconnect", "shared1").returncode == 0
    [row] = history(cfg)
    assert (row["event"], row["rules"], row["outcome"]) == ("disconnect", None, None)


# -- the command action ------------------------------------------------------------------

def command_ctx(tmp_path, path=None, resource="shared1", dry_run=False):
    class Log:
        def __init__(self):
            self.lines = []

        def __call__(self, level, msg):
            self.lines.append((level, msg))

        def __getattr__(self, level):
            return lambda msg: self.lines.append((level, msg))

    ev = event(f"split-brain {resource}", role="secondary")
    return actions.Context(ev, 7, "r", from_data({}, path), None, Log(), actions.no_hastctl,
                           ev.time, dry_run=dry_run)


def test_command_argv_is_rendered_per_element_never_through_a_shell(tmp_path):
    out = tmp_path / "argv.json"
    script = "import json, os, sys; json.dump([sys.argv[1:], os.environ['HASTHOOK_ROLE']], " \
             f"open({str(out)!r}, 'w'))"
    ctx = command_ctx(tmp_path, resource="a b;touch pwned;$(id)")
    result = actions.execute("command", {"argv": [sys.executable, "-c", script, "{resource}",
                                                  "--role={role}", "{resource.__class__}"]},
                             ctx)
    assert result["ok"] is True and result["rc"] == 0
    assert json.loads(out.read_text()) == [
        ["a b;touch pwned;$(id)", "--role=secondary", "{resource.__class__}"], "secondary"]
    assert not (tmp_path / "pwned").exists()


def test_command_stdin_is_dev_null_and_failure_is_recorded(tmp_path):
    ctx = command_ctx(tmp_path)
    result = actions.execute("command", {"argv": ["sh", "-c", "cat; echo oops >&2; exit 3"]},
                             ctx)
    assert (result["ok"], result["rc"], result["output"], result["detail"]) == (
        False, 3, "oops", "exit 3")
    assert ctx.log.lines[-1][0] == "err" and "exited 3: oops" in ctx.log.lines[-1][1]


def test_command_timeout_kills_it_and_what_it_started(tmp_path):
    pidfile = tmp_path / "child.pid"
    ctx = command_ctx(tmp_path)
    result = actions.execute("command", {"argv": [
        "sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], "timeout": "300ms"}, ctx)
    assert (result["ok"], result["rc"], result["detail"]) == (
        False, None, "timed out after 300ms; killed")
    assert gone(int(pidfile.read_text()))


def gone(pid, timeout=5.0):
    """SIGKILL is sent; wait (bounded) for the kernel to finish the process off."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def test_command_missing_program_is_a_failed_outcome(tmp_path):
    result = actions.execute("command", {"argv": ["/nonexistent/prog"]}, command_ctx(tmp_path))
    assert (result["ok"], result["detail"]) == (False, "/nonexistent/prog: No such file or "
                                                       "directory")


def test_command_dry_run_says_what_it_would_run(tmp_path):
    result = actions.execute("command", {"argv": ["logger", "{resource} split"]},
                             command_ctx(tmp_path, dry_run=True))
    assert result == {"action": "command", "ok": True, "argv": ["logger", "shared1 split"],
                      "detail": "would run logger 'shared1 split' (timeout 10s)"}


def test_command_refused_when_others_can_write_the_config(tmp_path):
    cfg = tmp_path / "conf" / "rules.yaml"
    cfg.parent.mkdir()
    cfg.write_text("{}")
    marker = tmp_path / "ran"
    params = {"argv": ["touch", str(marker)]}
    assert actions.execute("command", params, command_ctx(tmp_path, str(cfg)))["ok"]
    marker.unlink()
    for target, mode in ((cfg, 0o666), (cfg.parent, 0o777)):
        target.chmod(mode)
        result = actions.execute("command", params, command_ctx(tmp_path, str(cfg)))
        assert result["ok"] is False and "writable by group or other" in result["detail"]
        assert not marker.exists()
        target.chmod(0o700 if target.is_dir() else 0o600)


def test_own_alerts_are_literal_text_and_raised_once_per_run(tmp_path):
    store = Store(str(tmp_path / "state"))
    cfg = from_data({"channels": {"ops": "json://127.0.0.1:9/x", "mail": "json://127.0.0.1:9/y"},
                     "settings": {"alert_channels": "ops"}})
    ev = event()
    with store.transaction() as db:
        ctx = actions.Context(ev, store.record(ev, db), None, cfg, store, None,
                              actions.no_hastctl, ev.time)
        assert actions.alert(ctx, db, "bad {resource}", "see {0} and {rule}") is not None
        assert actions.alert(ctx, db, "bad {resource}", "again") is None
    rows = store.db.execute("SELECT channel, title, body FROM outbox").fetchall()
    assert [tuple(r) for r in rows] == [("ops", "bad {resource}", "see {0} and {rule}")]
    store.close()


def test_own_alerts_take_the_alert_channels_title_template(tmp_path):
    store = Store(str(tmp_path / "state"))
    cfg = from_data({"channels": {"ops": {"urls": "json://127.0.0.1:9/x",
                                          "title": "HAST {severity}: {summary}"}}})
    ev = event()
    with store.transaction() as db:
        ctx = actions.Context(ev, store.record(ev, db), None, cfg, store, None,
                              actions.no_hastctl, ev.time)
        actions.alert(ctx, db, "hasthook on host1: database damaged", "moved aside")
    [row] = store.db.execute("SELECT title, body FROM outbox").fetchall()
    assert tuple(row) == (f"HAST {ev.severity}: hasthook on host1: database damaged",
                          "hasthook on host1: database damaged\n\nmoved aside")
    store.close()


# -- causes read from the history: restart, reconnect --------------------------------

NOTIFY_ROLES = {"channels": {"ops": "json://127.0.0.1:9/"},
                "rules": [{"name": "roles", "match": {"event": "role"}, "group_wait": "30s",
                           "actions": [{"notify": "ops"}]}]}


def causes(store):
    return [(r["event"], r["old_role"], r["new_role"], r["cause"])
            for r in reversed(store.history(limit=10))]


def pending(store):
    return [r["event_id"] for r in store.db.execute(
        "SELECT event_id FROM outbox WHERE state = 'pending'")]


@pytest.mark.parametrize("first,second", [("secondary init", "init secondary"),
                                          ("init secondary", "secondary init")])
def test_x_init_x_within_seconds_is_a_restart_in_either_order(pipeline, first, second):
    """hastd runs the two hooks at once: whichever is recorded second finds the other."""
    cfg = from_data(NOTIFY_ROLES)
    pipeline(cfg, event(f"role shared1 {first}", t=1000.0))
    assert len(pending(pipeline.store)) == 1
    pipeline(cfg, event(f"role shared1 {second}", t=1000.4))
    a, b = causes(pipeline.store)
    assert a[3] == b[3] == "restart"
    [left] = pending(pipeline.store)  # one message tells both halves
    assert left == pipeline.store.history(limit=1)[0]["id"]


def test_role_changes_minutes_apart_or_elsewhere_are_not_a_restart(pipeline):
    cfg = from_data(NOTIFY_ROLES)
    pipeline(cfg, event("role shared1 secondary init", t=1000.0))
    pipeline(cfg, event("role shared1 init secondary", t=1060.0))   # a minute later
    pipeline(cfg, event("role shared2 secondary init", t=2000.0))
    pipeline(cfg, event("role shared3 init secondary", t=2000.1))   # another resource
    pipeline(cfg, event("role shared4 secondary init", t=3000.0))
    pipeline(cfg, event("role shared4 init primary", t=3000.1))     # not back to X
    assert {c[3] for c in causes(pipeline.store)} == {None}
    assert len(pending(pipeline.store)) == 6


def test_a_recovery_s_role_changes_are_not_a_restart(pipeline):
    cfg = from_data(NOTIFY_ROLES)
    pipeline(cfg, event("role shared1 secondary init", t=1000.0, cause="recover"))
    pipeline(cfg, event("role shared1 init secondary", t=1001.0, cause="recover"))
    assert [c[3] for c in causes(pipeline.store)] == ["recover", "recover"]


def test_the_restart_message_says_what_happened():
    from hasthook import render

    ev = event("role shared1 init secondary", cause="restart")
    title, body = render.message(ev, "roles")
    assert title == "[info] shared1 restarted by hastd on host1"
    assert body.startswith("hastd restarted shared1 (config reload or an admin's role "
                           "change): secondary → init → secondary on host1.")


def test_connect_after_connect_is_a_reconnect_and_ends_nothing(pipeline):
    rule = {"name": "link", "match": {"event": "disconnect"}, "send_resolved": True,
            "actions": [{"notify": "ops"}]}
    cfg = from_data({"channels": {"ops": "json://127.0.0.1:9/"}, "rules": [rule]})
    pipeline(cfg, event("connect shared1", t=1000.0))
    pipeline(cfg, event("disconnect shared1", t=1010.0))
    pipeline(cfg, event("connect shared1", t=1020.0))     # ends the disconnect
    pipeline(cfg, event("connect shared1", t=1030.0))     # a restarted worker
    assert [c[3] for c in causes(pipeline.store)] == [None, None, None, "reconnect"]
    kinds = [r[0] for r in pipeline.store.db.execute("SELECT kind FROM outbox ORDER BY id")]
    assert kinds == ["alert", "resolved"]


def test_a_connect_recorded_before_its_disconnect_is_not_left_a_reconnect(pipeline):
    """hastd runs the two hooks a moment apart; the connect's may record first."""
    cfg = from_data({"rules": []})
    pipeline(cfg, event("connect shared1", t=1000.0))
    pipeline(cfg, event("connect shared1", t=1020.3))     # its hook won the race
    pipeline(cfg, event("disconnect shared1", t=1020.0))  # ... this one's lost it
    pipeline(cfg, event("connect shared2", t=1000.0))
    pipeline(cfg, event("connect shared2", t=1020.3))     # another resource: untouched
    pipeline(cfg, event("disconnect shared1", t=1100.0))  # long after: untouched
    rows = {(r["resource"], r["event"], r["time"]): r["cause"]
            for r in pipeline.store.history(limit=10)}
    assert rows[("shared1", "connect", 1020.3)] is None
    assert rows[("shared2", "connect", 1020.3)] == "reconnect"
