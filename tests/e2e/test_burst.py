"""Bursts cost what quiet bursts cost: one deliverer, one validation per config edit.

hastd forks a hook per event, so a cable pull on a node with many resources is a
burst of processes. Real hooks here, started as hastd starts them; which modules
each one loaded is read from its own `-X importtime` report (PYTHONPROFILEIMPORTTIME),
never from a clock.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import command
from receivers import HttpSink, wait_until

QUIET = {"socket": "/nonexistent"}  # log to state/hasthook.log: every line kept


def start(cfg: Path, words: list[str], report: Path | None = None) -> subprocess.Popen:
    """hasthook-exec as hastd starts it; with `report`, its import report goes there."""
    env = {**os.environ, "HASTHOOK_CONFIG": str(cfg)}
    err = subprocess.DEVNULL
    if report is not None:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
        err = open(report, "wb")  # noqa: SIM115 - closed by the caller's wait
    return subprocess.Popen([command("hasthook-exec"), *words], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err, env=env)


def imported(report: Path) -> set[str]:
    """The modules a process imported, from its -X importtime report."""
    out = set()
    for line in report.read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            out.add(m.group(1))
    return out


def rows(state: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(state / "hasthook.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_notifying_burst_has_one_deliverer_and_the_others_load_no_delivery(
        write_config, tmp_path):
    http = HttpSink()
    http.hold.clear()  # the deliverer's send waits here until every other hook has left
    try:
        cfg = write_config(
            {"channels": {"ops": f"json://{http.base}/ops"},
             "rules": [{"name": "link", "match": {"event": "disconnect"}, "group_wait": "1s",
                        "actions": [{"notify": "ops"}]}]},
            hastctl="/nonexistent", syslog=QUIET, hook_timeout="300s", send_timeout="240s")
        state = tmp_path / "state"
        assert start(cfg, ["connect", "warm"]).wait(60) == 0  # the config cache is made
        n = 100
        reports = [tmp_path / f"hook{i}.imports" for i in range(n)]
        procs = [start(cfg, ["disconnect", f"r{i:03d}"], reports[i]) for i in range(n)]
        wait_until(lambda: http.received("/ops"), timeout=240, what="the first send")
        # Every hook but the deliverer commits its row, finds the lock held and leaves.
        wait_until(lambda: sum(p.poll() is not None for p in procs) == n - 1, timeout=240,
                   what="99 hooks to leave")
        [deliverer] = [i for i, p in enumerate(procs) if p.poll() is None]
        http.hold.set()
        assert [p.wait(240) for p in procs] == [0] * n
        loaded = [imported(r) for r in reports]
        assert [i for i, mods in enumerate(loaded) if "apprise" in mods] == [deliverer]
        others = [sorted(m for m in mods if m.startswith("hasthook.delivery"))
                  for i, mods in enumerate(loaded) if i != deliverer]
        assert others == [[]] * (n - 1)
        # Nothing lost, and at most two messages: what the deliverer had claimed, then
        # everything that was committed while it sent.
        messages = http.received("/ops")
        assert 1 <= len(messages) <= 2
        named = " ".join(str(m["body"]) for m in messages)
        assert all(f"r{i:03d}" in named for i in range(n))
        assert rows(state, "SELECT state, COUNT(*) FROM outbox GROUP BY state") == [
            ("sent", n)]
    finally:
        http.hold.set()
        http.down()


def test_an_edit_is_validated_once_in_a_burst_and_a_broken_file_is_remembered(
        write_config, tmp_path):
    cfg = write_config({"rules": [{"name": "quiet", "match": {"event": "*"}, "actions": []}]},
                       hastctl="/nonexistent", syslog=QUIET)
    state = tmp_path / "state"
    assert start(cfg, ["connect", "warm"]).wait(60) == 0
    log = state / "hasthook.log"
    validated = f"config {cfg} changed: validated"
    assert log.read_text().count(validated) == 1
    cfg.write_text(cfg.read_text().replace("name: quiet", "name: edited"))  # an edit
    procs = [start(cfg, ["disconnect", f"r{i:02d}"]) for i in range(50)]
    assert [p.wait(120) for p in procs] == [0] * 50
    assert log.read_text().count(validated) == 2  # the first edit, then once for 50 hooks
    assert len(rows(state, "SELECT id FROM events WHERE event = 'disconnect'")) == 50
    assert {r[0] for r in rows(state, "SELECT rules FROM events WHERE event = 'disconnect'")
            } == {'["edited"]'}

    # Broken: judged once, then each hook runs on the last good copy as cheaply as on
    # an unchanged file, and still says why.
    cfg.write_text(cfg.read_text().replace("actions: []", "actions: [{notify: nowhere}]"))
    assert start(cfg, ["connect", "first"]).wait(60) == 0
    code = ("import sys; from hasthook.exec import main; code = main(sys.argv[1:]); "
            "print(code, *sorted(m for m in ('yaml', 'jsonschema') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, "connect", "later"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "HASTHOOK_CONFIG": str(cfg)})
    assert r.stdout.split() == ["0"], r.stderr  # neither YAML nor jsonschema
    text = log.read_text()
    assert text.count(validated) == 2  # nobody validated the broken file twice
    assert text.count("unknown channel 'nowhere'") >= 2  # every hook still says why
    assert rows(state, "SELECT rules FROM events WHERE resource = 'later'") == [
        ('["edited"]',)]  # the last good copy acted
