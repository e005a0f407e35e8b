"""hasthook-exec as hastd runs it: a real process, argv only, nothing on stdout."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
from conftest import command, run_cmd


def hook(cfg, *words, env=None):
    return run_cmd(command("hasthook-exec"), *words,
                   env={"HASTHOOK_CONFIG": str(cfg), **(env or {})})


def history(cfg, *args):
    r = run_cmd(command("hasthook"), "history", "--json", "-c", str(cfg), *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def fake_hastctl(tmp_path, body: str):
    p = tmp_path / "hastctl"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


@pytest.mark.parametrize("argv", [
    [], ["connect"], ["role", "shared1", "init"], ["role", "shared1", "boss", "primary"],
    ["disconnect", "shared1", "extra"],
])
def test_malformed_call_exits_64_and_logs_raw_argv(write_config, syslog, argv, tmp_path):
    cfg = write_config(hastctl="/nonexistent/hastctl")
    r = hook(cfg, *argv)
    assert r.returncode == 64
    assert r.stdout == "" and r.stderr == ""
    line = syslog.wait_for("malformed call")
    assert json.dumps(argv) in line
    assert history(cfg) == []
    assert list((tmp_path / "state").glob("turns/*")) == []  # its turn, if any, let go


@pytest.mark.parametrize("flag", ["--help", "-h", "--version"])
def test_help_and_version_print_and_exit_0_recording_nothing(write_config, tmp_path, flag):
    """For a person at a terminal; hastd never passes them."""
    from hasthook import __version__

    cfg = write_config(hastctl="/nonexistent/hastctl")
    r = hook(cfg, flag)
    assert (r.returncode, r.stderr) == (0, "")
    if flag == "--version":
        assert r.stdout == f"hasthook-exec {__version__}\n"
    else:
        assert r.stdout.startswith("usage: hasthook-exec EVENT RESOURCE [OLDROLE NEWROLE]\n")
        assert "hasthook-exec(8)" in r.stdout
    assert not (tmp_path / "state").exists()


def test_unknown_event_word_is_recorded(write_config, syslog):
    cfg = write_config(hastctl="/nonexistent/hastctl")
    r = hook(cfg, "resync-paused", "shared1")
    assert r.returncode == 0
    [row] = history(cfg)
    assert (row["event"], row["resource"], row["severity"], row["known"]) == (
        "resync-paused", "shared1", "warning", False)
    syslog.wait_for("unknown event 'resync-paused'")


def test_hastctl_missing_event_still_recorded(write_config, syslog):
    cfg = write_config(hastctl="/nonexistent/hastctl")
    assert hook(cfg, "split-brain", "shared1").returncode == 0
    [row] = history(cfg)
    assert (row["event"], row["severity"], row["role"], row["dirty"]) == (
        "split-brain", "critical", None, None)
    syslog.wait_for("local state unknown")
    assert syslog.wait_for("SPLIT-BRAIN").startswith("<26>")  # daemon.crit


def test_hastctl_hanging_is_cut_by_its_timeout(write_config, tmp_path):
    cfg = write_config(hastctl=fake_hastctl(tmp_path, "exec sleep 60\n"),
                       hastctl_timeout="1s", hook_timeout="10s")
    t = time.monotonic()
    assert hook(cfg, "disconnect", "shared1").returncode == 0
    assert time.monotonic() - t < 10  # the time box, not a benchmark
    [row] = history(cfg)
    assert row["event"] == "disconnect" and row["role"] is None


def test_hastctl_timeout_longer_than_the_time_box_still_records(write_config, tmp_path, syslog):
    """hastctl_timeout 60s under a 3s time box: hastctl gets a third of the box, and the
    event is recorded as state unknown instead of being lost to the box."""
    cfg = write_config(hastctl=fake_hastctl(tmp_path, "exec sleep 60\n"),
                       hastctl_timeout="60s", hook_timeout="3s")
    assert hook(cfg, "split-brain", "shared1").returncode == 0
    [row] = history(cfg)
    assert (row["event"], row["role"]) == ("split-brain", None)
    assert "timed out" in syslog.wait_for("local state unknown")


def test_hastctl_garbled_output(write_config, tmp_path, syslog):
    cfg = write_config(hastctl=fake_hastctl(tmp_path, "echo 'Bus error (core dumped)'\n"))
    assert hook(cfg, "connect", "shared1").returncode == 0
    [row] = history(cfg)
    assert row["event"] == "connect" and row["status"] is None
    syslog.wait_for("unparseable output")


def test_state_dir_and_database_modes(write_config, tmp_path):
    cfg = write_config(hastctl="/nonexistent/hastctl")
    assert hook(cfg, "connect", "shared1").returncode == 0
    state = tmp_path / "state"
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "hasthook.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state / "turns").st_mode) == 0o700
    assert os.listdir(state / "turns") == []  # the hook's turn ended with it
    db = sqlite3.connect(state / "hasthook.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unwritable_database_spools_then_recovers(write_config, tmp_path, syslog):
    cfg = write_config(hastctl="/nonexistent/hastctl")
    assert hook(cfg, "connect", "shared1").returncode == 0
    db = tmp_path / "state" / "hasthook.db"
    db.rename(tmp_path / "state" / "saved.db")
    db.mkdir()  # as root, a mode stops nothing; a directory cannot be opened (test_faults: more)
    assert hook(cfg, "split-brain", "shared1").returncode == 0
    syslog.wait_for("spooled for later")
    assert (tmp_path / "state" / "spool.jsonl").exists()
    db.rmdir()
    (tmp_path / "state" / "saved.db").rename(db)
    assert hook(cfg, "syncdone", "shared1").returncode == 0
    events = [r["event"] for r in history(cfg)]
    assert sorted(events) == ["connect", "split-brain", "syncdone"]
    assert not (tmp_path / "state" / "spool.jsonl").exists()


def test_events_spooled_meanwhile_are_told_once_not_acted_on(write_config, tmp_path, http):
    """A split-brain the database could not take: recorded later by the next hook, and
    the admin told in one alert; its rule (notify, here) does not act on it late."""
    cfg = write_config({"channels": {"ops": f"json://{http.base}/ops"},
                        "rules": [{"name": "sb", "match": {"event": "split-brain"},
                                   "group_wait": "0s", "actions": [{"notify": "ops"}]}]},
                       hastctl="/nonexistent", group_wait="0s")
    assert hook(cfg, "connect", "shared0").returncode == 0
    db = tmp_path / "state" / "hasthook.db"
    db.rename(tmp_path / "state" / "saved.db")
    db.mkdir()
    assert hook(cfg, "split-brain", "shared1").returncode == 0  # spooled
    assert hook(cfg, "disconnect", "shared2").returncode == 0   # spooled
    db.rmdir()
    (tmp_path / "state" / "saved.db").rename(db)
    assert http.received("/ops") == []
    assert hook(cfg, "syncdone", "shared3").returncode == 0
    [msg] = [r["body"] for r in http.received("/ops")]  # two spool files: one alert
    assert msg["title"] == "hasthook on host1: 2 events recorded late, rules not applied"
    assert " split-brain shared1 on host1 (critical)" in msg["message"]
    assert " disconnect shared2 on host1 (warning)" in msg["message"]
    assert "No rule acted on them" in msg["message"]
    rows = {r["event"]: r for r in history(cfg)}
    assert rows["split-brain"]["outcome"] is None and rows["disconnect"]["outcome"] is None
    assert hook(cfg, "syncdone", "shared3").returncode == 0  # nothing left to tell
    assert len(http.received("/ops")) == 1


HEAVY = ("dataclasses", "inspect", "typing", "hashlib", "yaml", "jsonschema", "apprise",
         "hasthook.delivery")


def test_a_quiet_event_imports_nothing_heavy(write_config):
    """What hastd pays on every event: with the config cached and no message to send,
    the hook loads none of these (each costs milliseconds of start-up; bench/run.py (a))."""
    cfg = write_config({"rules": [{"name": "quiet", "match": {"event": "*"}, "actions": []}]},
                       hastctl="/nonexistent")
    code = ("import sys; from hasthook.exec import main; code = main(sys.argv[1:]); "
            f"print(code, *sorted(m for m in {HEAVY!r} if m in sys.modules))")
    env = {**os.environ, "HASTHOOK_CONFIG": str(cfg)}
    def hook_imports(*words):
        r = subprocess.run([sys.executable, "-c", code, *words], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.stderr == "", r.stderr
        return r.stdout.split()

    assert {"yaml", "jsonschema"} < set(hook_imports("connect", "r0"))  # validated, cached
    assert hook_imports("connect", "r1") == ["0"]
    assert hook_imports("role", "r1", "init", "secondary") == ["0"]
    assert [row["event"] for row in history(cfg)] == ["role", "connect", "connect"]


def test_fallback_spool_dir_is_named_after_the_state_dir():
    from hasthook.spool import paths as spool_paths

    assert spool_paths("/var/db/hasthook") == [
        "/var/db/hasthook/spool.jsonl", "/var/tmp/hasthook.%2Fvar%2Fdb%2Fhasthook/spool.jsonl"]
    assert spool_paths("/a%2Fb")[1] != spool_paths("/a/b")[1]  # one name per state dir
    deep = spool_paths("/" + "d" * 300)[1]
    assert len(os.path.basename(os.path.dirname(deep))) < 255
