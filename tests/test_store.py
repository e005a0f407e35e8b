"""The store at scale: retention that keeps what guards need, and read paths that search
an index instead of reading the history (their query plans, read from SQLite itself)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import command, run_cmd

from hasthook.event import ENDED_BY, Event
from hasthook.store import Store
from hasthook.units import iso

T0 = 1_800_000_000.0  # 2027-01-15
DAY = 86400.0


def event(kind: str, resource: str, t: float, host: str = "host1", **kw) -> Event:
    sev = {"split-brain": "critical", "disconnect": "warning", "syncintr": "warning"}
    return Event(kind, resource, host, t, severity=sev.get(kind, "info"), **kw)


# -- retention ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def test_prune_drops_old_history_and_keeps_what_guards_and_open_conditions_need(store):
    old, now = T0 - 400 * DAY, T0
    with store.transaction() as db:
        for i in range(50):
            store.record(event("connect", "r1", old + i), db)          # old: goes
        store.record(event("disconnect", "r2", old), db)                 # ended: goes
        store.record(event("connect", "r2", old + 1), db)
        open_sb = store.record(event("split-brain", "r3", old), db)     # open: stays
        store.record(event("connect", "r4", now - 60), db)               # new: stays
        sent = store.outbox_add(db, created=old, event_id=None, rule="x", channel="ops",
                                group_key="k", kind="alert", severity="info", event="connect",
                                resource="r1", host="host1", title="t", body="b", due=old)
        waiting = store.outbox_add(db, created=old, event_id=None, rule="x", channel="ops",
                                   group_key="k", kind="alert", severity="info",
                                   event="connect", resource="r1", host="host1", title="t",
                                   body="b", due=old)
        told = store.outbox_add(db, created=old, event_id=open_sb, rule="sb", channel="am",
                                group_key="k", kind="alert", severity="critical",
                                event="split-brain", resource="r3", host="host1", title="t",
                                body="b", due=old)
        db.execute("UPDATE outbox SET state = 'sent' WHERE id IN (?, ?)", (sent, told))
    recent = store.recovery_add("r5", "host1", "hook", "recovered", now - 1800)
    ancient = store.recovery_add("r5", "host1", "hook", "recovered", old)
    running = store.recovery_add("r6", "host1", "hook", "running", old)
    ended = store.silence_add(old, old + 60, "r1", None, "alice", None)
    active = store.silence_add(old, now + 3600, "r2", None, "alice", None)

    gone = store.prune(now - 30 * DAY, ENDED_BY, guard_since=now - 3600 - 10)

    assert gone == 52
    assert sorted((r["event"], r["resource"]) for r in store.history()) == [
        ("connect", "r4"), ("split-brain", "r3")]
    assert store.unresolved_alerts(ENDED_BY)[0]["resource"] == "r3"  # still told by status
    assert [r["id"] for r in store.outbox_list(("pending", "sent", "dead"))] == [waiting, told]
    assert {r["id"] for r in store.recoveries("r5")} == {recent}
    assert [r["id"] for r in store.recoveries("r6")] == [running]
    assert ancient not in {r["id"] for r in store.recoveries("r5")}
    assert [s["id"] for s in store.active_silences(now)] == [active]
    assert store.silence_delete(ended) is None
    assert store.resource_names() == ["r3", "r4"]  # r1, r2 have no history left


def test_a_large_prune_shrinks_the_file(store, tmp_path):
    db = tmp_path / "state" / "hasthook.db"
    with store.transaction() as tx:
        for i in range(20000):
            store.record(event("connect", f"r{i % 50}", T0 - 100 * DAY + i,
                               extra={"what": "x" * 200}), tx)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.stat().st_size
    assert store.prune(T0, ENDED_BY) == 20000
    assert db.stat().st_size < before / 4


def test_a_database_made_before_auto_vacuum_is_vacuumed_once(tmp_path):
    path = tmp_path / "state" / "hasthook.db"
    path.parent.mkdir()
    old = sqlite3.connect(path)  # as an older hasthook made it: no auto_vacuum
    old.execute("CREATE TABLE filler (x)")
    old.executemany("INSERT INTO filler VALUES (?)", [("y" * 500,)] * 5000)
    old.execute("DROP TABLE filler")
    old.commit()
    old.close()
    store = Store(str(path.parent))
    try:
        assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        before = path.stat().st_size
        store.prune(T0, ENDED_BY)
        assert store.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert path.stat().st_size < before / 4
    finally:
        store.close()


def test_flush_prunes_at_most_hourly_and_a_hook_never(write_config, tmp_path):
    cfg = write_config(retention="1d", hastctl="/nonexistent")
    state = tmp_path / "state"
    assert run_cmd(command("hasthook-exec"), "connect", "new",
                   env={"HASTHOOK_CONFIG": str(cfg)}).returncode == 0
    store = Store(str(state))
    store.record(event("connect", "old", T0 - 400 * DAY))
    assert run_cmd(command("hasthook-exec"), "connect", "new2",
                   env={"HASTHOOK_CONFIG": str(cfg)}).returncode == 0
    assert len(store.history(resource="old")) == 1  # hooks do not prune
    assert run_cmd(command("hasthook"), "flush", "-q", "-c", str(cfg)).returncode == 0
    assert store.history(resource="old") == []
    store.record(event("connect", "old", T0 - 400 * DAY))
    assert run_cmd(command("hasthook"), "flush", "-q", "-c", str(cfg)).returncode == 0
    assert len(store.history(resource="old")) == 1  # pruned less than an hour ago
    r = run_cmd(command("hasthook"), "history", "-c", str(cfg))
    assert r.stdout.splitlines()[-1].startswith(
        f"# the history reaches back to {iso(T0 - 400 * DAY)}")  # the planted row
    assert "(settings.retention 1d)" in r.stdout
    store.close()


# -- read paths search an index -------------------------------------------------------


def _history(path: Path, resources: int = 20, per: int = 60) -> None:
    """A history shaped like a long-running pair: many resources, every kind."""
    store = Store(str(path))
    kinds = ["connect", "disconnect", "syncstart", "syncdone", "syncintr", "split-brain"]
    with store.transaction() as db:
        for i in range(resources * per):
            r = f"r{i % resources:02d}"
            store.record(event(kinds[(i // resources) % len(kinds)], r, T0 + i), db)
    store.close()


def _traced(monkeypatch) -> list[str]:
    """Every statement any Store in this process runs, parameters filled in."""
    seen: list[str] = []
    opened = Store._open

    def tracing(self):
        db = opened(self)
        db.set_trace_callback(seen.append)
        return db

    monkeypatch.setattr(Store, "_open", tracing)
    return seen


def _plans(db_path: Path, statements: list[str]) -> dict[str, str]:
    db = sqlite3.connect(db_path)
    try:
        out = {}
        for sql in statements:
            if re.match(r"\s*SELECT\b", sql, re.I) and re.search(r"\b(events|outbox)\b", sql):
                out[sql] = "\n".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql))
        return out
    finally:
        db.close()


def test_every_read_command_searches_an_index(tmp_path, monkeypatch):
    from hasthook import cli
    from hasthook.exec import main as hook_main

    state = tmp_path / "state"
    _history(state)
    hastctl = tmp_path / "hastctl"
    hastctl.write_text("#!/bin/sh\nprintf 'r00:\\n  role: primary\\n  status: complete\\n"
                       "  dirty: 0 (0B)\\n'\n")
    hastctl.chmod(0o755)
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(yaml.safe_dump({
        "settings": {"state_dir": str(state), "hastctl": str(hastctl), "hostname": "host1",
                     "syslog": {"socket": "/nonexistent"}, "send_timeout": "1s"},
        "channels": {"am": {"alertmanager": "http://127.0.0.1:9/"},
                     "ops": "json://127.0.0.1:9/ops"},
        "rules": [{"name": "all", "match": {"event": "*"}, "send_resolved": True,
                   "actions": [{"notify": ["am", "ops"]}]}]}))
    seen = _traced(monkeypatch)
    monkeypatch.setenv("HASTHOOK_CONFIG", str(cfg))
    # main, not run: it also disarms the hook's time box (SIGALRM) in this process.
    assert hook_main(["disconnect", "r03"]) == 0  # a hook, and outbox rows to read
    c = str(cfg)
    for args in (["status"], ["history"], ["history", "--limit", "5"],
                 ["history", "--resource", "r07"], ["history", "--event", "split-brain"],
                 ["history", "--since", "1h", "--resource", "r01", "--event", "connect"],
                 ["queue"], ["queue", "--sent"], ["metrics"], ["flush", "-q"], ["watch", "-q"],
                 ["silence", "add", "r0*", "--for", "1h"], ["test", "split-brain", "r02"]):
        code = cli.main([*args, "-c", c])
        assert code in (0, 1, 75), (args, code)  # status: 1 is "unwell"; flush: 75 retry
    plans = _plans(state / "hasthook.db", seen)
    assert len(plans) > 20, plans
    bad = {sql: plan for sql, plan in plans.items()
           if "CORRELATED" in plan or re.search(r"\bSCAN (events|outbox)\b(?! USING)", plan)}
    assert bad == {}
    # The history itself is only ever read through an index.
    scans = [p for p in plans.values() if re.search(r"\bSCAN events\b", p)]
    assert all("USING" in p for p in scans)
