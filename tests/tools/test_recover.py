"""The recovery library: guards (pure), the sequence, its failure paths, cause marking.

An in-process stand-in for hastctl keeps these fast and exact; the simulator
tests (test_recover_sim.py) show the same through real processes.
"""

from __future__ import annotations

import os
import signal

import pytest

from hasthook.config.settings import Settings
from hasthook.event import Event
from hasthook.hast import Resource, Result
from hasthook.store import Store
from hasthook.tools.recover import (
    SETTLE,
    Limits,
    Recoverer,
    decide,
    expected_changes,
    mark_cause,
    resource_lock,
)

MUTATING = ("role", "create")


class FakeHastctl:
    """Roles per resource, a call log, and `fail[verb or "role ROLE"] = stderr`."""

    path = "/sbin/hastctl"

    def __init__(self, roles=None):
        self.roles = dict(roles or {"shared1": "secondary"})
        self.calls: list[list[str]] = []
        self.fail: dict[str, str] = {}
        self.on_list = None  # callable run before answering `list`

    def list(self, name):
        self.calls.append(["list", name])
        if self.on_list:
            self.on_list()
        if "list" in self.fail:
            return {}, Result(["hastctl", "list", name], 71, "", self.fail["list"])
        if name not in self.roles:
            return {name: Resource(name, error=1)}, Result(["hastctl", "list", name], 1)
        return ({name: Resource(name, role=self.roles[name])},
                Result(["hastctl", "list", name], 0))

    def role(self, role, name):
        self.calls.append(["role", role, name])
        argv = [self.path, "role", role, name]
        err = self.fail.get(f"role {role}")
        if err:
            return Result(argv, 1, "", err)
        self.roles[name] = role
        return Result(argv, 0)

    def create(self, name):
        self.calls.append(["create", name])
        argv = [self.path, "create", name]
        if "create" in self.fail:
            return Result(argv, 1, "", self.fail["create"])
        return Result(argv, 0)

    def mutating(self):
        return [c for c in self.calls if c[0] in MUTATING]


class FakeLog:
    def __init__(self):
        self.lines: list[tuple] = []

    def __call__(self, level, msg, *, facility=None, tag=None):
        self.lines.append((level, msg, facility, tag))

    def __getattr__(self, level):
        return lambda msg: self(level, msg)


@pytest.fixture
def env(tmp_path):
    class Env:
        ctl = FakeHastctl()
        log = FakeLog()
        store = Store(str(tmp_path / "state"))
        settings = Settings(state_dir=str(tmp_path / "state"))
        sent: list[Event] = []
        now = [1_000_000.0]

        def publish(self, ev):
            self.sent.append(ev)
            return self.store.record(ev)

        def rec(self, **kw):
            return Recoverer(self.ctl, self.log, self.settings, "host2", store=self.store,
                             publish=self.publish, sleep=lambda s: None,
                             clock=lambda: self.now[0], **kw)

    e = Env()
    yield e
    e.store.close()


SEQ = [["role", "init", "shared1"], ["create", "shared1"], ["role", "secondary", "shared1"]]


# -- the sequence ---------------------------------------------------------------


def test_secondary_runs_init_create_secondary_and_logs_the_articles_line(env):
    o = env.rec().run("shared1", delay=0)
    assert o.state == "recovered" and o.ok
    assert env.ctl.mutating() == SEQ
    assert (o.role_before, o.role_after) == ("secondary", "secondary")
    assert ("notice", "HAST [shared1] recover role secondary", 1, "hast-recover") in env.log.lines
    [ev] = env.sent
    assert (ev.event, ev.cause, ev.severity) == ("recover", "recover", "warning")
    assert "discarded" in ev.summary and "resync" in ev.summary
    assert [s["rc"] for s in ev.extra["steps"]] == [0, 0, 0]
    [row] = env.store.history(event="recover")
    assert row["extra"]["state"] == "recovered" and row["cause"] == "recover"


def test_syslog_priority_and_tag_are_configurable(env):
    env.settings = Settings.from_dict({"state_dir": env.settings.state_dir, "recover": {
        "syslog": {"facility": "local3", "level": "warning", "tag": "hr"}}})
    env.rec().run("shared1", delay=0)
    assert ("warning", "HAST [shared1] recover role secondary", 19, "hr") in env.log.lines


def test_primary_is_left_alone(env):
    env.ctl.roles["shared1"] = "primary"
    o = env.rec().run("shared1", delay=0)
    assert o.state == "primary" and o.ok
    assert env.ctl.mutating() == [] and env.sent == []


def test_no_role_does_nothing_and_alerts(env):
    env.ctl.fail["list"] = "Unable to connect to hastd via uds:///var/run/hastctl"
    o = env.rec().run("shared1", delay=0)
    assert o.state == "no-role" and not o.ok
    assert env.ctl.mutating() == []
    assert "Unable to connect" in o.alert and env.sent[0].severity == "critical"


def test_init_goes_back_to_init_unless_restore_role(env):
    env.ctl.roles["shared1"] = "init"
    env.rec().run("shared1", delay=0)
    assert env.ctl.mutating() == [["role", "init", "shared1"], ["create", "shared1"],
                                  ["role", "init", "shared1"]]
    env.ctl.calls.clear()
    env.rec().run("shared1", delay=0, restore_role="secondary")
    assert env.ctl.mutating() == [["role", "init", "shared1"], ["create", "shared1"],
                                  ["role", "secondary", "shared1"]]
    env.ctl.calls.clear()
    env.ctl.roles["shared1"] = "init"
    env.settings = Settings.from_dict({"state_dir": env.settings.state_dir,
                                       "recover": {"restore_role": "secondary"}})
    env.rec().run("shared1", delay=0)
    assert env.ctl.mutating()[-1] == ["role", "secondary", "shared1"]


def test_role_read_after_the_delay_turning_primary_means_no_action(env):
    """The delay is where CARP may promote this node: the role is read after it."""
    def promoted(_seconds):
        env.ctl.roles["shared1"] = "primary"

    r = Recoverer(env.ctl, env.log, env.settings, "host2", store=env.store, sleep=promoted)
    o = r.run("shared1", delay=2)
    assert o.state == "primary"
    assert env.ctl.mutating() == []


def test_create_failing_stops_restores_the_role_and_alerts_with_stderr(env):
    env.ctl.fail["create"] = "[shared1] Unable to open /dev/ada1: Device busy."
    o = env.rec().run("shared1", delay=0)
    assert o.state == "failed" and not o.ok
    assert env.ctl.mutating() == [["role", "init", "shared1"], ["create", "shared1"],
                                  ["role", "secondary", "shared1"]]
    assert [s.name for s in o.steps] == ["init", "create", "restore"]
    assert env.ctl.roles["shared1"] == "secondary" and o.role_after == "secondary"
    assert o.alert == "recovery failed: [shared1] Unable to open /dev/ada1: Device busy."
    [ev] = env.sent
    assert ev.severity == "critical" and "Device busy" in ev.summary
    assert any(lv == "crit" for lv, *_ in env.log.lines)
    [row] = env.store.recoveries("shared1")
    assert row["state"] == "failed" and len(row["steps"]) == 3


def test_role_init_failing_changes_nothing_more(env):
    env.ctl.fail["role init"] = "[shared1] Received error 5 from hastd."
    o = env.rec().run("shared1", delay=0)
    assert o.state == "failed"
    assert env.ctl.mutating() == [["role", "init", "shared1"]]  # role unchanged: no restore


def test_pre_steps_run_first_and_a_failing_one_aborts(env, tmp_path):
    mark = tmp_path / "snap"
    ok = ["sh", "-c", f"echo done > {mark}"]
    o = env.rec().run("shared1", delay=0, pre=[ok])
    assert o.state == "recovered" and mark.exists()
    assert [s.name for s in o.steps] == ["pre", "init", "create", "role"]
    env.ctl.calls.clear()
    env.now[0] += 3600 * 2
    o = env.rec().run("shared1", delay=0, pre=[ok, ["sh", "-c", "echo no space >&2; exit 1"],
                                               ok])
    assert o.state == "pre-failed" and env.ctl.mutating() == []
    assert o.alert == "pre-step failed: no space"
    assert [s.name for s in o.steps] == ["pre", "pre"]
    o = env.rec().run("shared1", delay=0, pre=[["/nonexistent/zfs", "snapshot", "x@y"]])
    assert o.state == "pre-failed" and "No such file" in o.alert


def test_dry_run_changes_nothing(env):
    o = env.rec().run("shared1", delay=0, dry_run=True, pre=[["zfs", "snapshot", "t@s"]])
    assert o.state == "dry-run" and o.ok
    assert env.ctl.mutating() == []
    assert [s.argv[1:] for s in o.steps][1:] == [["role", "init", "shared1"],
                                                 ["create", "shared1"],
                                                 ["role", "secondary", "shared1"]]
    assert env.sent[0].severity == "info"
    # A rehearsal does not count against the real thing.
    assert env.rec().run("shared1", delay=0, limits=Limits(), event_time=env.now[0]
                         ).state == "recovered"


def test_busy_lock_leaves_at_once(env):
    with resource_lock(env.settings.state_dir, "shared1") as held:
        assert held.held
        held.mark_owner()
        o = env.rec().run("shared1", delay=0)
    assert o.state == "busy" and str(os.getpid()) in o.detail
    assert env.ctl.calls == []


def test_lock_names_are_safe_for_any_resource_name(tmp_path):
    lock = resource_lock(str(tmp_path), "../evil name")
    assert os.path.dirname(lock.path) == str(tmp_path)
    with lock:
        assert lock.held


def test_time_box_cannot_cut_the_sequence(env):
    """SIGALRM during the hastctl calls is held until the outcome is recorded."""
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(len(env.ctl.calls)))
    try:
        orig = env.ctl.create

        def create_then_alarm(name):
            os.kill(os.getpid(), signal.SIGALRM)
            return orig(name)

        env.ctl.create = create_then_alarm
        o = env.rec().run("shared1", delay=0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert o.state == "recovered"
    assert fired and fired[0] >= 4  # after role secondary and the final list


def test_interrupted_recovery_is_reaped_and_alerted(env):
    env.store.recovery_add("shared1", "host2", "hook", "running", env.now[0] - 30, pid=999,
                           role_before="secondary", expect=[["secondary", "init"]])
    o = env.rec().run("shared1", delay=0, limits=Limits(), event_time=env.now[0])
    assert env.sent[0].extra["state"] == "interrupted"
    assert env.sent[0].severity == "critical"
    # The dead attempt counts as one: no new attempt now, and no second alert.
    assert o.state == "handled" and o.alert is None
    env.now[0] += SETTLE + 1
    o = env.rec().run("shared1", delay=0, limits=Limits(), event_time=env.now[0])
    assert o.state == "cooldown" and o.alert is None
    assert env.ctl.mutating() == [] and len(env.sent) == 1


# -- guards (pure) ---------------------------------------------------------------


def row(id, state, started, finished=None, reason=None):
    return {"id": id, "state": state, "started": started,
            "finished": started + 1 if finished is None else finished, "reason": reason}


def test_decide_first_time_runs():
    assert decide([], 100, 100, Limits()).state == "run"


def test_decide_split_brain_from_before_the_recovery_settled_is_handled():
    rows = [row(1, "recovered", 1000)]
    d = decide(rows, 1000.5, 1003, Limits())
    assert d.state == "handled" and not d.alert
    assert decide(rows, 1001 + SETTLE - 0.1, 1020, Limits()).state == "handled"


def test_decide_split_brain_again_within_cooldown_is_a_loop_alerted_once():
    rows = [row(1, "recovered", 1000)]
    d = decide(rows, 1100, 1100, Limits(cooldown=600))
    assert d.state == "cooldown" and d.alert
    rows.insert(0, row(2, "blocked", 1100, reason="cooldown"))
    d = decide(rows, 1110, 1110, Limits(cooldown=600))
    assert d.state == "cooldown" and not d.alert
    assert decide(rows, 1602, 1602, Limits(cooldown=600)).state == "run"


def test_decide_after_a_failed_attempt_cooldown_is_quiet():
    d = decide([row(1, "failed", 1000)], 1100, 1100, Limits())
    assert d.state == "cooldown" and not d.alert


def test_decide_max_attempts_within_window():
    lim = Limits(cooldown=60, max_attempts=3, window=3600)
    rows = [row(3, "recovered", 2000), row(2, "recovered", 1500), row(1, "recovered", 1000)]
    d = decide(rows, 2100, 2100, lim)
    assert d.state == "max-attempts" and d.alert
    assert "3 recoveries within 1h" in d.detail
    rows.insert(0, row(4, "blocked", 2100, reason="max-attempts"))
    assert not decide(rows, 2200, 2200, lim).alert
    assert decide(rows, 4601, 4601, lim).state == "run"  # the first fell out of the window


def test_expected_changes():
    assert expected_changes("secondary", "secondary") == [["secondary", "init"],
                                                           ["init", "secondary"]]
    assert expected_changes("init", "init") == []
    assert expected_changes("init", "secondary") == [["init", "secondary"]]


# -- guards through the store ------------------------------------------------------


def test_cooldown_and_max_attempts_from_the_store(env):
    lim = Limits(cooldown=600, max_attempts=2, window=3600)
    t0 = env.now[0]
    assert env.rec().run("shared1", delay=0, limits=lim, event_time=t0).state == "recovered"
    env.now[0] = t0 + 5
    assert env.rec().run("shared1", delay=0, limits=lim, event_time=t0 + 1).state == "handled"
    env.now[0] = t0 + 60
    o = env.rec().run("shared1", delay=0, limits=lim, event_time=t0 + 60)
    assert o.state == "cooldown" and o.alert == "recovery loop"
    env.now[0] = t0 + 70
    o = env.rec().run("shared1", delay=0, limits=lim, event_time=t0 + 70)
    assert o.state == "cooldown" and o.alert is None
    env.now[0] = t0 + 700
    assert env.rec().run("shared1", delay=0, limits=lim, event_time=t0 + 700
                         ).state == "recovered"
    env.now[0] = t0 + 1400
    o = env.rec().run("shared1", delay=0, limits=lim, event_time=t0 + 1400)
    assert o.state == "max-attempts" and o.alert == "recovery loop"
    assert env.ctl.mutating() == SEQ * 2
    alerts = [e for e in env.sent if e.severity == "critical"]
    assert [a.extra["state"] for a in alerts] == ["cooldown", "max-attempts"]


# -- cause marking -------------------------------------------------------------------


def role_event(old, new, t):
    return Event("role", "shared1", "host2", t, old_role=old, new_role=new)


def test_role_events_caused_by_the_recovery_are_marked(env):
    rid = env.store.recovery_add("shared1", "host2", "hook", "running", 100.0,
                                 expect=expected_changes("secondary", "secondary"))
    evs = [role_event("secondary", "init", 101), role_event("init", "secondary", 102)]
    for ev in evs:
        mark_cause(ev, env.store)
    assert [e.cause for e in evs] == ["recover", "recover"]
    assert evs[0].extra["recovery_id"] == rid
    # Each change is claimed once: the admin's own change a moment later is not ours.
    later = role_event("secondary", "init", 103)
    mark_cause(later, env.store)
    assert later.cause is None


def test_role_hook_arriving_after_the_recovery_ended_is_still_marked(env):
    rid = env.store.recovery_add("shared1", "host2", "hook", "running", 100.0,
                                 expect=expected_changes("secondary", "secondary"))
    env.store.recovery_update(rid, state="recovered", finished=101.0)
    ev = role_event("init", "secondary", 130)
    mark_cause(ev, env.store)
    assert ev.cause == "recover"
    stale = role_event("secondary", "init", 1000)
    mark_cause(stale, env.store)
    assert stale.cause is None


def test_mark_cause_never_raises(tmp_path):
    class Broken:
        def recovery_claim(self, *a):
            raise OSError("disk gone")

    ev = role_event("secondary", "init", 1)
    mark_cause(ev, Broken())
    assert ev.cause is None
