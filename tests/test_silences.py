"""Silences: the pure matching, the store on a controlled clock, the hook's pipeline,
`hasthook silence add|list|del` as an admin runs it, and silences end to end through
real hasthook-exec processes fired by the simulator with a real HTTP receiver."""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import RecordingLog, command, evaluate, run_cmd
from receivers import HttpSink, wait_until

from hasthook import silences
from hasthook.config import from_data
from hasthook.event import classify
from hasthook.sim.driver import SimNode
from hasthook.store import SCHEMA_VERSION, Store
from hasthook.units import iso

T0 = 1_800_000_000.0


def event(words: str, t: float = T0, cause: str | None = None):
    ev = classify(words.split(), "host1", now=t)
    ev.cause = cause
    return ev


def silence(resource: str = "r1", event_: str | None = None, sid: int = 1) -> dict:
    return {"id": sid, "resource": resource, "event": event_, "ends": "x", "author": "a",
            "comment": None}


# -- pure: building and matching -----------------------------------------------------

@pytest.mark.parametrize("pattern,words,muted", [
    ("r1", "disconnect r1", True),
    ("r1", "disconnect r10", False),
    ("r*", "disconnect r10", True),
    ("shared[12]", "disconnect shared2", True),
    ("re:db\\d+", "disconnect db12", True),
    ("re:db\\d+", "disconnect xdb12", False),       # anchored, as in a rule
    ("*", "split-brain anything", True),
    ("*", "role r1 secondary primary", True),
])
def test_a_pattern_means_what_it_means_in_a_rule(pattern, words, muted):
    assert silences.covers(silence(pattern), event(words)) is muted


def test_event_narrows_and_a_recovery_report_is_never_muted():
    s = silence("r1", "disconnect")
    assert silences.covers(s, event("disconnect r1"))
    assert not silences.covers(s, event("split-brain r1"))
    assert not silences.covers(silence("*"), event("recover r1", cause="recover"))
    assert silences.silencing(event("disconnect r1"), [silence("x", sid=1),
                                                       silence("r*", sid=2),
                                                       silence("*", sid=3)])["id"] == 2


@pytest.mark.parametrize("resource,duration,ev,comment,why", [
    ("r1", "1x", None, None, "not a duration"),
    ("r1", "-5m", None, None, "not a duration"),
    ("r1", "0", None, None, "must be more than 0"),
    ("r1", "400d", None, None, "longer than"),
    ("r1", "1h", "diskonnect", None, "unknown event 'diskonnect'"),
    ("", "1h", None, None, "empty resource"),
    ("  ", "1h", None, None, "empty resource"),
    ("r1\nhost1 Nov 25 fake line", "1h", None, None, "control characters"),
    ("r1\x1b[2J", "1h", None, None, "control characters"),
    ("re:(", "1h", None, None, "bad regular expression"),
    ("x" * 256, "1h", None, None, "longer than 255"),
    ("r1", "1h", None, "two\nlines", "control characters"),
])
def test_bad_input_is_refused_with_a_reason(resource, duration, ev, comment, why):
    with pytest.raises(ValueError, match=why):
        silences.new(resource, duration, T0, ev, comment, by="alice")


def test_new_row_and_author():
    row = silences.new(None, "90m", T0, "disconnect", "disk swap", by="alice")
    assert row == {"created": T0, "ends": T0 + 5400, "resource": "*", "event": "disconnect",
                   "author": "alice", "comment": "disk swap"}
    assert silences.author({"SUDO_USER": "bob", "USER": "root"}) == "bob"
    assert silences.author({"USER": "carol"}) == "carol"
    assert silences.author({"SUDO_USER": "x\ny", "USER": "carol"}) == "carol"


# -- the store, on a controlled clock -------------------------------------------------

@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def add(store: Store, resource: str = "r1", start: float = T0, seconds: float = 3600,
        event_: str | None = None) -> int:
    return store.silence_add(start, start + seconds, resource, event_, "alice", None)


def test_expired_silences_drop_out_by_themselves(store):
    a = add(store, "r1", seconds=60)
    b = add(store, "r2", seconds=600)
    assert [s["id"] for s in store.active_silences(T0 + 1)] == [a, b]
    assert [s["id"] for s in store.active_silences(T0 + 60)] == [b]
    assert store.active_silences(T0 + 600) == []
    assert store.active_silences(T0 + 1)[0] == {
        "id": a, "resource": "r1", "event": None, "ends": T0 + 60,
        "author": "alice", "comment": None, "created": T0}
    assert iso(T0 + 60) == "2027-01-15T08:01:00.000Z"  # the store speaks epoch seconds
    assert store.prune(T0 + 61) == 0 and store.silence_delete(a) is None  # pruned with history
    assert store.silence_delete(b)["resource"] == "r2"


def test_ids_are_never_reused(store):
    a = add(store)
    assert store.silence_delete(a)
    assert add(store) == a + 1


def test_an_older_database_gets_the_table(tmp_path):
    s = Store(str(tmp_path / "state"))
    s.db.execute("DROP TABLE silences")
    s.db.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    s.close()
    s = Store(str(tmp_path / "state"))
    assert s.active_silences() == [] and add(s) >= 1
    s.close()


# -- the hook's pipeline (exec.evaluate) ------------------------------------------------

NOTIFY_ONLY = {"name": "link", "match": {"event": ["disconnect", "split-brain"]},
               "repeat_interval": "1h", "actions": [{"notify": "ops"}]}
CHANNELS = {"ops": "json://127.0.0.1:9/j"}


@pytest.fixture
def pipeline(store):
    log = RecordingLog()

    def run(cfg, ev):
        jobs, matched, held = evaluate(store, cfg, ev, log)
        return [j.name for j in jobs], matched, held

    run.lines = log.lines
    return run


def test_silenced_event_is_not_notified_and_leaves_repeat_state_alone(pipeline, store):
    cfg = from_data({"channels": CHANNELS, "rules": [NOTIFY_ONLY]})
    sid = add(store, "r1", seconds=100)
    jobs, matched, held = pipeline(cfg, event("disconnect r1", T0 + 10))
    assert jobs == [] and matched == ["link"]
    assert held == [{"by": "silence", "silence": sid, "resource": "r1", "event": None,
                     "ends": "2027-01-15T08:01:40.000Z", "author": "alice", "comment": None}]
    assert store.outbox_list(("pending", "sending", "sent", "dead")) == []
    assert ("info", f"[r1] disconnect silenced by silence {sid}: recorded, not notified") \
        in pipeline.lines
    # Other resources are told; after the silence ends r1 is told at once, as the
    # silenced event did not start the rule's repeat_interval.
    assert pipeline(cfg, event("disconnect r2", T0 + 20))[0] == ["notify"]
    jobs, _, held = pipeline(cfg, event("disconnect r1", T0 + 100))
    assert jobs == ["notify"] and held == []


def test_recover_and_command_still_run_under_a_silence(pipeline, store):
    rule = {"name": "sb", "match": {"event": "split-brain"},
            "actions": [{"notify": "ops"}, {"recover": {"delay": "0s"}},
                        {"command": {"argv": ["true"]}}]}
    cfg = from_data({"channels": CHANNELS, "rules": [rule]})
    add(store, "*", event_="split-brain")
    assert pipeline(cfg, event("split-brain r1", T0 + 1))[0] == ["recover", "command"]
    assert pipeline(cfg, event("disconnect r1", T0 + 1))[2] == []   # other events: not muted


def test_a_throttled_command_is_still_throttled_under_a_silence(pipeline, store):
    rule = {"name": "cmd", "match": {"event": "disconnect"}, "throttle": {"max": 1, "window": "1h"},
            "actions": [{"notify": "ops"}, {"command": {"argv": ["true"]}}]}
    cfg = from_data({"channels": CHANNELS, "rules": [rule]})
    add(store, "r1")
    assert pipeline(cfg, event("disconnect r1", T0 + 1))[0] == ["command"]
    jobs, _, held = pipeline(cfg, event("disconnect r1", T0 + 2))
    assert jobs == [] and [h["by"] for h in held] == ["silence", "throttle"]


def test_a_recovery_report_is_told_under_a_silence(pipeline, store):
    rule = {"name": "rec", "match": {"cause": "recover"}, "actions": [{"notify": "ops"}]}
    cfg = from_data({"channels": CHANNELS, "rules": [rule]})
    add(store, "*")
    jobs, _, held = pipeline(cfg, event("recover r1", T0 + 1, cause="recover"))
    assert jobs == ["notify"] and held == []


# -- `hasthook silence` as an admin runs it ---------------------------------------------

def hasthook(cfg, *args, env=None):
    """-c last, where an admin adds it; after `--` it must come first (see `first`)."""
    return run_cmd(command("hasthook"), *args, "-c", str(cfg), env=env)


def first(cfg, *args):
    return run_cmd(command("hasthook"), "-c", str(cfg), *args)


def listed(cfg) -> list[dict]:
    r = hasthook(cfg, "silence", "list", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_add_list_del(write_config):
    cfg = write_config(hastctl="/nonexistent")
    r = hasthook(cfg, "silence", "add", "shared*", "--for", "2h", "--event", "disconnect",
                 "--comment", "disk swap, ticket 42", env={"SUDO_USER": "alice"})
    assert r.returncode == 0 and r.stderr == (
        "hasthook: silence add: warning: 'shared*' matches no resource known in the history "
        "(hastctl dump failed); added anyway\n")
    sid = int(r.stdout)
    r = run_cmd(command("hasthook"), "-c", str(cfg), "silence", "add", "--all", "--for", "10m",
                env={"SUDO_USER": "", "USER": "bob"})
    all_id = int(r.stdout)
    [a, b] = listed(cfg)
    assert (a["id"], a["resource"], a["event"], a["author"], a["comment"]) == (
        sid, "shared*", "disconnect", "alice", "disk swap, ticket 42")
    assert (b["id"], b["resource"], b["event"], b["author"], b["comment"]) == (
        all_id, "*", None, "bob", None)
    text = hasthook(cfg, "silence", "list").stdout.splitlines()
    assert text[0].split() == ["ID", "RESOURCE", "EVENT", "ENDS", "LEFT", "AUTHOR", "COMMENT"]
    assert text[1].split()[:3] == [str(sid), "shared*", "disconnect"]
    assert text[1].endswith("alice   disk swap, ticket 42")
    assert text[2].split()[:3] == [str(all_id), "*", "*"]
    r = hasthook(cfg, "silence", "del", str(sid))
    assert r.returncode == 0 and r.stdout == f"silence {sid} deleted\n"
    assert [s["id"] for s in listed(cfg)] == [all_id]
    r = hasthook(cfg, "silence", "del", str(sid))
    assert (r.returncode, r.stderr) == (65, f"hasthook: silence del: no silence {sid}\n")
    hasthook(cfg, "silence", "del", str(all_id))
    assert hasthook(cfg, "silence", "list").stdout == "no active silences\n"


def test_expiry_needs_no_cron(write_config, tmp_path):
    cfg = write_config(hastctl="/nonexistent")
    assert hasthook(cfg, "silence", "add", "r1", "--for", "1s").returncode == 0
    wait_until(lambda: listed(cfg) == [], timeout=120, what="the silence to expire")
    # One that ended while nobody looked is still there to delete until the retention.
    db = sqlite3.connect(tmp_path / "state" / "hasthook.db")
    with db:
        sid = db.execute("INSERT INTO silences (created, ends, resource) VALUES (1, 2, 'r2')"
                         ).lastrowid
    db.close()
    r = hasthook(cfg, "silence", "del", str(sid))
    assert r.returncode == 0 and r.stdout == f"silence {sid} deleted (it had already ended)\n"


def test_a_pattern_that_matches_no_known_resource_is_warned_of(tmp_path, write_config):
    """Known: hast.conf's resources (`hastctl dump`) and the history's. A typo still makes
    the silence (the resource may come later), but the admin is told it mutes nothing."""
    n = SimNode(tmp_path / "n", "host1", [{"name": "shared1", "localpath": "/dev/ada1"}])
    try:
        cfg = write_config(hastctl=n.hastctl_path)
        r = hasthook(cfg, "silence", "add", "shard1", "--for", "1h")
        assert r.returncode == 0 and r.stdout.strip().isdigit()
        assert r.stderr == ("hasthook: silence add: warning: 'shard1' matches no resource "
                            "known in `hastctl dump` or the history; added anyway\n")
        for pattern in ("shared1", "shared*", "re:sh.*", "--all"):
            args = ("--all",) if pattern == "--all" else ("--", pattern)
            r = first(cfg, "silence", "add", "--for", "1h", *args)
            assert (r.returncode, r.stderr) == (0, ""), pattern
        assert [s["resource"] for s in listed(cfg)] == [
            "shard1", "shared1", "shared*", "re:sh.*", "*"]
    finally:
        n.close()


@pytest.mark.parametrize("args,why", [
    (["add", "r1", "--for", "soon"], "silence add: not a duration: 'soon'"),
    (["add", "r1", "--for", "0s"], "must be more than 0"),
    (["add", "r1", "--for", "1h", "--event", "spilt-brain"],
     "unknown event 'spilt-brain' (did you mean 'split-brain'?)"),
    (["add", "r1\nNov 25 host1 hasthook: all clear", "--for", "1h"], "control characters"),
    (["add", "re:[", "--for", "1h"], "bad regular expression"),
    (["add", "", "--for", "1h"], "empty resource"),
])
def test_bad_add_is_a_one_line_usage_error(write_config, args, why):
    cfg = write_config(hastctl="/nonexistent")
    r = hasthook(cfg, "silence", *args)
    assert r.returncode == 64, r.stderr
    assert why in r.stderr and len(r.stderr.splitlines()) == 1 and r.stdout == ""
    assert listed(cfg) == []


@pytest.mark.parametrize("args,why", [
    (["add", "r1"], "the following arguments are required: --for"),
    (["add", "--for", "1h"], "one of the arguments RESOURCE --all is required"),
    (["add", "r1", "--all", "--for", "1h"], "argument --all: not allowed with argument RESOURCE"),
])
def test_add_without_what_it_requires_shows_the_usage_and_exits_64(write_config, args, why):
    cfg = write_config(hastctl="/nonexistent")
    r = hasthook(cfg, "silence", *args)
    assert r.returncode == 64 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "usage: hasthook silence add (RESOURCE | --all) --for DURATION [--event E] "
        "[--comment TEXT] [-n] [-c FILE]", f"hasthook silence add: error: {why}"]
    assert listed(cfg) == []


def test_dry_run_add_and_del_change_nothing(write_config, tmp_path):
    cfg = write_config(hastctl="/nonexistent")
    r = hasthook(cfg, "silence", "add", "shared*", "--for", "2h", "--comment", "disk swap", "-n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("would add a silence of resource shared*, every event until ")
    assert r.stdout.endswith(" (disk swap); dry run: nothing added\n")
    assert not (tmp_path / "state").exists()          # not even the state dir
    sid = hasthook(cfg, "silence", "add", "r1", "--for", "1h").stdout.strip()
    r = hasthook(cfg, "silence", "del", "--dry-run", sid)
    assert (r.returncode, r.stdout) == (0, f"would delete silence {sid} (resource r1, every "
                                           "event); dry run: nothing deleted\n")
    assert [str(s["id"]) for s in listed(cfg)] == [sid]
    r = hasthook(cfg, "silence", "del", "-n", "999")
    assert (r.returncode, r.stderr) == (65, "hasthook: silence del: no silence 999\n")


@pytest.mark.parametrize("given,shown", [
    ("42", "42"), ("abc", "'abc'"), ("-1", None), ("1; DROP TABLE silences", None),
    ("x\ny", "'x\\ny'"), ("99999999999999999999999", "'99999999999999999999999'"),
])
def test_del_unknown_id_is_65_naming_it(write_config, given, shown):
    cfg = write_config(hastctl="/nonexistent")
    sid = hasthook(cfg, "silence", "add", "r1", "--for", "1h").stdout.strip()
    r = first(cfg, "silence", "del", "--", given)
    assert r.returncode == 65
    assert r.stderr == f"hasthook: silence del: no silence {shown or repr(given)}\n"
    assert [str(s["id"]) for s in listed(cfg)] == [sid]


@pytest.mark.parametrize("name", [
    "'; DROP TABLE silences; --", "../../../etc/passwd", "{resource.__class__}", "-rf",
    "$(reboot)", "r1 r2",
])
def test_hostile_resource_names_are_just_text(write_config, name):
    cfg = write_config(hastctl="/nonexistent")
    r = first(cfg, "silence", "add", "--for", "1h", "--", name)
    assert r.returncode == 0, r.stderr
    [s] = listed(cfg)
    assert s["resource"] == name and s["id"] == int(r.stdout)
    assert name in hasthook(cfg, "silence", "list").stdout


def test_no_action_prints_usage_and_exits_64(write_config):
    r = first(write_config(hastctl="/nonexistent"), "silence")
    assert r.returncode == 64 and r.stderr.startswith("usage: hasthook silence")


# -- end to end: hastd (the simulator) runs hasthook-exec --------------------------------

RESOURCES = ("r00", "r01", "r02")


@pytest.fixture
def node(tmp_path, write_config, http):
    """One node, three primaries, every disconnect told to a json:// receiver at once.
    Lines go to the state dir's log file: a test syslog socket nobody reads fills up."""
    data = {"channels": {"hooks": f"json://{http.base}/j"},
            "rules": [{**NOTIFY_ONLY, "group_wait": "0s", "actions": [{"notify": "hooks"}]}]}
    cfg = write_config(data, syslog={"socket": "/nonexistent"})
    n = SimNode(tmp_path / "node", "host1",
                [{"name": r, "localpath": f"/dev/ada{i}"} for i, r in enumerate(RESOURCES)],
                exec=command("hasthook-exec"), env={"HASTHOOK_CONFIG": str(cfg)})
    for r in RESOURCES:
        n.set_state(r, role="primary", connected=True)
    n.cfg = write_config(data, syslog={"socket": "/nonexistent"}, hastctl=n.hastctl_path,
                         hastd_pidfile=str(n.pidfile))
    yield n
    n.close()


def fire(node: SimNode, *words: str) -> None:
    node.fire(*words)
    runs = node.wait_hooks(timeout=180)
    assert [r["exitcode"] for r in runs] == [0] * len(runs), runs


def told(http: HttpSink) -> list[str]:
    return [r["body"]["title"] for r in http.received("/j")]


def test_silences_end_to_end_through_hasthook_exec(node, http, tmp_path):
    cfg = node.cfg
    sid = int(hasthook(cfg, "silence", "add", "r00", "--for", "1h", "--comment",
                       "replacing ada0").stdout)

    fire(node, "disconnect", "r00")
    [row] = json.loads(hasthook(cfg, "history", "--json").stdout)
    assert (row["event"], row["resource"], row["role"]) == ("disconnect", "r00", "primary")
    assert row["rules"] == ["link"] and row["outcome"]["actions"] == []
    [held] = row["outcome"]["suppressed"]
    assert (held["by"], held["silence"], held["comment"]) == ("silence", sid, "replacing ada0")
    assert f"r00  role=primary status=complete dirty=0 silenced-by={sid}" in hasthook(
        cfg, "history").stdout
    # The hook has exited: whatever it would send is in the outbox by now, and nothing is.
    assert json.loads(hasthook(cfg, "queue", "--json", "--sent").stdout) == []
    assert told(http) == []
    log = (tmp_path / "state" / "hasthook.log").read_text()
    assert f"[r00] disconnect silenced by silence {sid}: recorded, not notified" in log

    fire(node, "disconnect", "r01")                     # not silenced: told
    assert told(http) == ["[warning] r01 lost its peer (host1)"]

    r = hasthook(cfg, "status", "--json")
    assert [(s["id"], s["resource"], s["comment"]) for s in json.loads(r.stdout)["silences"]] \
        == [(sid, "r00", "replacing ada0")]
    lines = hasthook(cfg, "status").stdout.splitlines()
    line = lines[lines.index("Active silences:") + 1]
    assert line.startswith(f"  id={sid} resource=r00 ends=")
    assert " comment=replacing ada0 created=" in line

    assert hasthook(cfg, "silence", "del", str(sid)).returncode == 0
    fire(node, "disconnect", "r00")                     # deleted: told again, at once
    assert told(http)[1:] == ["[warning] r00 lost its peer (host1)"]

    # Expiry: a silence that has run out by itself mutes nothing.
    assert hasthook(cfg, "silence", "add", "r02", "--for", "1s").returncode == 0
    wait_until(lambda: listed(cfg) == [], timeout=120, what="the silence to expire")
    fire(node, "disconnect", "r02")
    assert told(http)[2:] == ["[warning] r02 lost its peer (host1)"]
    assert "Active silences: none" in hasthook(cfg, "status").stdout


def test_recovery_runs_and_is_reported_under_a_silence(tmp_path, write_config, http):
    """A silence mutes who is told about the split-brain; it does not stop the reset
    of the secondary, and the recovery's own report still goes out."""
    rule = {"name": "sb", "match": {"event": "split-brain"}, "group_wait": "0s",
            "actions": [{"notify": "ops"}, {"recover": {"delay": "0s"}}]}
    data = {"channels": {"ops": f"json://{http.base}/j"}, "rules": [rule]}
    cfg = write_config(data, syslog={"socket": "/nonexistent"}, group_wait="0s")
    n = SimNode(tmp_path / "node", "host2", [{"name": "r00", "localpath": "/dev/ada1"}],
                exec=command("hasthook-exec"), env={"HASTHOOK_CONFIG": str(cfg)})
    try:
        n.set_state("r00", role="secondary", connected=False)
        cfg = write_config(data, syslog={"socket": "/nonexistent"}, group_wait="0s",
                           hastctl=n.hastctl_path, hostname="host2")
        sid = int(hasthook(cfg, "silence", "add", "r00", "--for", "1h").stdout)
        fire(n, "split-brain", "r00")
        steps = [c for c in n.calls() if c[0] in ("role", "create")]
        assert steps == [["role", "init", "r00"], ["create", "r00"],
                         ["role", "secondary", "r00"]]
        [sb] = json.loads(hasthook(cfg, "history", "--json", "--event", "split-brain").stdout)
        assert [h["silence"] for h in sb["outcome"]["suppressed"]] == [sid]
        assert [a["action"] for a in sb["outcome"]["actions"]] == ["recover"]
        [report] = wait_until(lambda: told(http), what="the recovery report")
        assert "split-brain recovered" in report and "SPLIT-BRAIN" not in report
    finally:
        n.close()
