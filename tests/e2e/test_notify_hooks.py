"""Notifications end to end: real hasthook-exec processes fired by the simulator,
real receivers on loopback, `hasthook flush|queue|notify-test` as an admin runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO, command, run_cmd
from receivers import SmtpSink, wait_until

from hasthook.sim.driver import SimNode


@pytest.fixture
def node_factory(tmp_path):
    nodes = []

    def make(n: int, cfg) -> SimNode:
        node = SimNode(tmp_path / "node", "host1",
                       [{"name": f"r{i:02d}", "localpath": f"/dev/ada{i}"} for i in range(n)],
                       exec=command("hasthook-exec"), env={"HASTHOOK_CONFIG": str(cfg)})
        for i in range(n):
            node.set_state(f"r{i:02d}", role="primary", connected=True, dirty_extents=2)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()


def rules(channels: dict, group_wait: str = "0s", **rule) -> dict:
    return {"channels": channels, "rules": [{
        "name": "link", "match": {"event": ["disconnect", "split-brain"]},
        "group_wait": group_wait, "actions": [{"notify": list(channels)}], **rule}]}


def hasthook(cfg, *args):
    return run_cmd(command("hasthook"), *args, "-c", str(cfg))


def queue(cfg) -> list[dict]:
    r = hasthook(cfg, "queue", "--json", "--sent")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def lock_holder(tmp_path) -> int:
    """The pid in deliver.lock, once a process has written it."""
    try:
        text = (tmp_path / "state" / "deliver.lock").read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


def test_burst_of_30_hooks_is_one_message_per_channel(write_config, node_factory, http, smtp):
    channels = {"hooks": f"json://{http.base}/j", "chat": f"mmost://{http.base}/tok",
                "mail": smtp.url()}
    # A window wide enough for the simulator to start all 30 hooks (about 2.5 s here).
    # Log to the state dir's file: 30 hooks' lines overflow a test syslog socket's queue.
    quiet = {"socket": "/nonexistent"}
    cfg = write_config(rules(channels, group_wait="10s"), syslog=quiet)
    node = node_factory(30, cfg)
    cfg = write_config(rules(channels, group_wait="10s"), hastctl=node.hastctl_path,
                       syslog=quiet)
    for i in range(30):
        node.fire("disconnect", f"r{i:02d}")
    runs = node.wait_hooks(timeout=60)
    assert [r["exitcode"] for r in runs] == [0] * 30
    [j] = http.received("/j")
    [m] = http.received("/hooks/tok")
    [mail] = smtp.mails
    names = [f"r{i:02d}" for i in range(30)]
    assert j["body"]["title"] == "[warning] disconnect on 30 resources (host1)"
    assert j["body"]["message"].splitlines()[0] == "disconnect: " + ", ".join(names)
    assert mail["Subject"] == j["body"]["title"]
    for name in names:
        assert name in m["body"]["text"] and name in SmtpSink.text(mail)
    assert {r["state"] for r in queue(cfg)} == {"sent"}


@pytest.mark.parametrize("down", ["smtp", "webhook"])
def test_channel_down_then_up_delivers_exactly_once_after_flush(
        write_config, node_factory, http, smtp, syslog, down):
    channels = {"mail": smtp.url()} if down == "smtp" else {"hooks": f"json://{http.base}/j"}
    sink_down, sink_up = (smtp.down, smtp.up) if down == "smtp" else (http.down, http.up)
    received = (lambda: smtp.mails) if down == "smtp" else (lambda: http.received("/j"))
    cfg = write_config(rules(channels))
    node = node_factory(1, cfg)
    sink_down()
    node.fire("split-brain", "r00")
    assert node.wait_hooks()[0]["exitcode"] == 0
    [row] = queue(cfg)
    assert row["state"] == "pending" and row["attempts"] == 1 and row["last_error"]
    r = hasthook(cfg, "flush")                      # still down, and in backoff
    assert r.returncode == 0 and "0 sent" in r.stdout and "1 still queued" in r.stdout
    r = hasthook(cfg, "flush", "--all")             # still down: tried, failed
    assert r.returncode == 75, r.stdout + r.stderr
    assert received() == []
    sink_up()
    r = hasthook(cfg, "flush", "--all")
    assert r.returncode == 0 and "1 sent, 0 failed" in r.stdout, r.stdout + r.stderr
    assert hasthook(cfg, "flush", "--all").stdout.startswith("0 sent")
    assert len(received()) == 1
    [row] = queue(cfg)
    assert row["state"] == "sent" and row["attempts"] == 3
    if down == "smtp":
        # The SMTP password is in the channel URL: nowhere else.
        everything = "\n".join([*syslog.drain(), json.dumps(queue(cfg)),
                                hasthook(cfg, "history", "--json").stdout, r.stdout, r.stderr])
        assert "mailto://alerts:****@127.0.0.1" in everything
        assert smtp.password not in everything


def test_kill_9_while_waiting_out_group_wait_loses_nothing(write_config, node_factory, http,
                                                           tmp_path):
    cfg = write_config(rules({"hooks": f"json://{http.base}/j"}, group_wait="30s"))
    node = node_factory(1, cfg)
    node.fire("disconnect", "r00")
    pid = wait_until(lambda: lock_holder(tmp_path), what="a hook holding the delivery lock")
    assert pid == node.hooks()[0]["pid"]
    wait_until(lambda: queue(cfg), what="the queued row")
    os.kill(pid, signal.SIGKILL)
    [run] = node.wait_hooks()
    assert run["signal"] == signal.SIGKILL
    assert [r["state"] for r in queue(cfg)] == ["pending"]
    r = hasthook(cfg, "flush", "--all")
    assert r.returncode == 0 and r.stdout.startswith("1 sent"), r.stdout + r.stderr
    assert len(http.received("/j")) == 1
    assert hasthook(cfg, "flush", "--all").stdout.startswith("0 sent")
    assert len(http.received("/j")) == 1


def test_kill_9_between_sending_and_marking_is_sent_again(write_config, node_factory, http,
                                                          tmp_path, syslog):
    """The one window where at-least-once shows: the receiver has the message but the
    deliverer died before marking it. The claim's lease runs out and a later run sends
    it again; it is never lost."""
    cfg = write_config(rules({"hooks": f"json://{http.base}/j"}), send_timeout="3s")
    node = node_factory(1, cfg)
    http.hold.clear()                                   # take the request, do not answer
    node.fire("disconnect", "r00")
    wait_until(lambda: http.received("/j"), what="the message at the receiver")
    pid = lock_holder(tmp_path)
    assert pid == node.hooks()[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert node.wait_hooks()[0]["signal"] == signal.SIGKILL
    http.hold.set()
    assert [r["state"] for r in queue(cfg)] == ["sending"]
    # A flush before the lease ends leaves the claim alone; poll until one takes it.
    wait_until(lambda: hasthook(cfg, "flush").stdout.startswith("1 sent"), timeout=30,
               what="a flush that sends the abandoned message")
    syslog.wait_for("stopped between sending and marking")
    assert len(http.received("/j")) == 2
    assert [r["state"] for r in queue(cfg)] == ["sent"]
    assert hasthook(cfg, "flush", "--all").stdout.startswith("0 sent")
    assert len(http.received("/j")) == 2


def test_resolved_message_with_outage_length(write_config, node_factory, http):
    cfg = write_config(rules({"hooks": f"json://{http.base}/j"}, send_resolved=True))
    node = node_factory(1, cfg)
    node.fire("disconnect", "r00")
    node.wait_hooks()
    node.fire("connect", "r00")
    node.wait_hooks()
    first, resolved = (r["body"] for r in http.received("/j"))
    assert first["title"] == "[warning] r00 lost its peer (host1)"
    assert resolved["type"] == "success"
    assert resolved["title"].startswith("[resolved] connect on r00 (host1) after ")
    assert "Resolves disconnect since" in resolved["message"]


def _imports_apprise(cfg, *words) -> bool:
    code = ("import sys; from hasthook.exec import main; "
            f"sys.exit(main({list(words)!r}))")
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                       text=True, env={**os.environ, "HASTHOOK_CONFIG": str(cfg)}, timeout=60)
    assert r.returncode == 0, r.stderr
    return any(line.rstrip().endswith(" apprise") for line in r.stderr.splitlines())


def test_apprise_is_imported_only_when_there_is_something_to_send(write_config, http):
    cfg = write_config(rules({"hooks": f"json://{http.base}/j"}), hastctl="/nonexistent")
    assert not _imports_apprise(cfg, "connect", "r00")         # no rule: nothing queued
    assert _imports_apprise(cfg, "disconnect", "r00")          # a message to send
    assert len(http.received("/j")) == 1
    assert not _imports_apprise(cfg, "syncstart", "r00")       # outbox empty again


def test_notify_test_reports_each_url(write_config, http, smtp):
    cfg = write_config({"channels": {"ops": [f"json://{http.base}/j", smtp.url()]}})
    r = hasthook(cfg, "notify-test", "ops")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"ok    json://{http.base}/j")
    assert lines[1].startswith("ok    mailto://alerts:****@127.0.0.1")
    assert smtp.mails[0]["Subject"] == "hasthook test message"
    smtp.down()
    r = hasthook(cfg, "notify-test", "ops")
    assert r.returncode == 69
    assert r.stdout.splitlines()[1].startswith("FAIL  mailto://alerts:****@127.0.0.1")
    assert smtp.password not in r.stdout + r.stderr
    r = hasthook(cfg, "notify-test", "nope")
    assert r.returncode == 78 and "'nope' is not in the config" in r.stderr
    assert queue(cfg) == []                                      # nothing queued


def test_queue_shows_pending_and_dead(write_config, tmp_path):
    cfg = write_config(rules({"hooks": "json://127.0.0.1:9/j"}), hastctl="/nonexistent")
    assert run_cmd(command("hasthook-exec"), "disconnect", "r00",
                   env={"HASTHOOK_CONFIG": str(cfg)}).returncode == 0
    r = hasthook(cfg, "queue")
    assert r.returncode == 0
    assert "pending hooks" in r.stdout and "r00 disconnect: 1 attempt, next in" in r.stdout
    assert "error: json://127.0.0.1:9/j" in r.stdout


def test_cron_sample_runs_watch_every_minute():
    """watch does what flush did (retries included) on every pass."""
    text = (REPO / "etc" / "cron.d" / "hasthook").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and "=" not in ln]
    assert "*       *    *    *     *    root /usr/local/bin/hasthook watch --quiet" in lines
