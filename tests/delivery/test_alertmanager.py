"""Alertmanager channels: the payload builder, and a real Alertmanager on loopback.

The server is Debian's prometheus-alertmanager, started per test on a free
127.0.0.1 port with clustering off, its own storage and a webhook receiver
(an HttpSink) so its own notifications can be read too. What Alertmanager
holds is read back through its API: an alert resolved disappears from
GET /api/v2/alerts, which lists only alerts whose endsAt is still ahead.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import check_doc_settings, command, doc_yaml, run_cmd
from receivers import HttpSink, free_port, wait_until

from hasthook import exec as hook_exec
from hasthook import redact
from hasthook.config.schema import check_url
from hasthook.delivery import alertmanager as am
from hasthook.event import CONDITIONS
from hasthook.sim import SimCluster
from hasthook.store import Store

AM_BIN = "/usr/bin/prometheus-alertmanager"
RES = "shared1"



class Alertmanager:
    """A real Alertmanager on 127.0.0.1: no cluster gossip, its own storage dir, every
    alert routed to one webhook receiver (with resolved notifications)."""

    def __init__(self, root: Path, webhook: str | None = None, port: int | None = None):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        receiver = {"name": "hook"}
        if webhook:
            receiver["webhook_configs"] = [{"url": webhook, "send_resolved": True}]
        (root / "alertmanager.yml").write_text(yaml.safe_dump({
            "route": {"receiver": "hook", "group_by": ["alertname", "cluster", "resource"],
                      "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [receiver]}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "alertmanager.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [AM_BIN, f"--config.file={self.root / 'alertmanager.yml'}",
             f"--storage.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        wait_until(self._ready, timeout=120, what=f"alertmanager ready on {self.url}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("alertmanager exited: "
                                 + (self.root / "alertmanager.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str):
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as r:
            body = r.read().decode()
        return json.loads(body) if path.startswith("/api") else body

    def active(self, alertname: str | None = None) -> list[dict]:
        """The alerts Alertmanager holds as active (endsAt ahead), optionally by name."""
        return [a for a in self.get("/api/v2/alerts?active=true")
                if alertname is None or a["labels"]["alertname"] == alertname]

    def received(self, status: str) -> float:
        """alertmanager_alerts_received_total{status=...} of the v2 API."""
        for line in self.get("/metrics").splitlines():
            if (line.startswith("alertmanager_alerts_received_total{")
                    and f'status="{status}"' in line and 'version="v2"' in line):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def alertmanager(tmp_path, http):
    """A running Alertmanager; stopped (killed if need be) at teardown."""
    server = Alertmanager(tmp_path / "am", f"http://{http.base}/am")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def am_down(tmp_path, http):
    """An Alertmanager not running yet: its port refuses until the test starts it."""
    server = Alertmanager(tmp_path / "am", f"http://{http.base}/am")
    yield server
    server.stop()


def notifications(http: HttpSink) -> list[dict]:
    return [r["body"] for r in http.received("/am")]


def rules(urls, ttl: str = "5m", events=("disconnect", "syncintr", "split-brain"),
          **settings) -> dict:
    return {"settings": {"cluster": "pair1", "group_wait": "0s", **settings},
            "channels": {"fleet": {"alertmanager": list(urls), "ttl": ttl}},
            "rules": [{"name": "link", "match": {"event": list(events)},
                       "actions": [{"notify": "fleet"}]}]}


# -- pure: the payload ----------------------------------------------------------------


def test_alertnames():
    assert [am.alertname(e) for e in ("split-brain", "disconnect", "syncintr")] == [
        "HastSplitBrain", "HastDisconnected", "HastSyncInterrupted"]
    assert am.alertname("some-new_word") == "HastSomeNewWord"
    assert am.alertname("disconnect", rule="hasthook") == "HasthookAlert"
    assert am.RESOLVED_BY == {"disconnect": ("connect",), "syncintr": ("syncdone",),
                              "syncstart": ("syncdone",),
                              "split-brain": ("syncdone", "connect"),
                              # hasthook watch's conditions end with NAME-resolved
                              **{c: (f"{c}-resolved",) for c in CONDITIONS}}
    assert am.alertname("io-errors") == "HastIoErrors"


def _row(event, kind="alert", created=1000.0, resource=RES, host="host1", severity="warning",
         rule="link"):
    return {"id": 1, "created": created, "kind": kind, "event": event, "resource": resource,
            "host": host, "severity": severity, "rule": rule, "title": f"{event} title",
            "body": f"{event} body"}


def _cond(event="disconnect", since=1000.0, resolved_at=None, severity="warning"):
    return {"event": event, "resource": RES, "host": "host1", "severity": severity,
            "title": "lost its peer", "body": "details", "since": since,
            "resolved_at": resolved_at}


def test_an_open_condition_is_active_until_now_plus_ttl():
    [a] = am.alerts([_row("disconnect")], [_cond()], cluster="pair1", ttl=300, now=2000.0)
    assert a == {"labels": {"alertname": "HastDisconnected", "resource": RES, "host": "host1",
                            "severity": "warning", "cluster": "pair1"},
                 "annotations": {"summary": "lost its peer", "description": "details"},
                 "startsAt": "1970-01-01T00:16:40.000Z", "endsAt": "1970-01-01T00:38:20.000Z"}


def test_the_resolution_has_the_same_labels_and_ends_at_the_resolving_event():
    [firing] = am.alerts([_row("disconnect")], [_cond()], cluster=None, ttl=300, now=1500.0)
    [ended] = am.alerts([_row("connect", kind="resolved", severity="info")],
                        [_cond(resolved_at=1200.0)], cluster=None, ttl=300, now=9999.0)
    assert ended["labels"] == firing["labels"] and "cluster" not in ended["labels"]
    assert ended["endsAt"] == "1970-01-01T00:20:00.000Z"
    # An alert sent after its condition ended goes out ended, not active for ttl.
    [late] = am.alerts([_row("disconnect")], [_cond(resolved_at=1200.0)], cluster=None,
                       ttl=300, now=9999.0)
    assert late["endsAt"] == ended["endsAt"]


def test_rows_without_a_told_condition_and_one_shots():
    # syncdone ends syncintr, syncstart and split-brain; only what was told goes out
    out = am.alerts([_row("syncdone", kind="resolved")],
                    [_cond("split-brain", resolved_at=1100.0, severity="critical")],
                    cluster=None, ttl=60, now=2000.0)
    assert [a["labels"]["alertname"] for a in out] == ["HastSplitBrain"]
    assert am.alerts([_row("connect", kind="resolved")], [], cluster=None, ttl=60,
                     now=2000.0) == []
    [role] = am.alerts([_row("role", severity="info")], [], cluster="c", ttl=60, now=2000.0)
    assert role["labels"]["alertname"] == "HastRoleChanged"
    assert (role["startsAt"], role["endsAt"]) == ("1970-01-01T00:16:40.000Z",
                                                  "1970-01-01T00:34:20.000Z")
    # never an end before the start: Alertmanager refuses the whole batch for one
    [a] = am.alerts([_row("disconnect")], [_cond(since=1000.0, resolved_at=999.0)],
                    cluster=None, ttl=60, now=2000.0)
    assert a["startsAt"] == a["endsAt"]


def test_urls_hide_passwords_and_must_be_http():
    assert redact.url("https://ops:s3cret@am1:9093/x") == "https://ops:****@am1:9093/x"
    with pytest.raises(ValueError, match="not an http"):
        check_url("am1:9093")


def test_post_path_prefix_and_basic_auth():
    sink = HttpSink()
    try:
        assert am.post(f"http://ops:pw@{sink.base}/am", [{"labels": {"a": "b"}}], 5) is None
        [req] = sink.received()
        assert req["path"] == "/am/api/v2/alerts" and req["body"] == [{"labels": {"a": "b"}}]
        assert req["headers"]["Authorization"] == "Basic b3BzOnB3"
        sink.status = 400
        why = am.post(f"http://ops:pw@{sink.base}", [], 5)
        assert why.startswith("HTTP 400") and "pw" not in why
    finally:
        sink.down()


# -- a real Alertmanager, hooks in this process ---------------------------------------


@pytest.fixture
def hook(monkeypatch):
    """hasthook-exec in this process: run(config, *words) -> exit status."""

    def run(cfg: Path, *words: str) -> int:
        monkeypatch.setenv("HASTHOOK_CONFIG", str(cfg))
        return hook_exec.main(list(words))

    return run


def test_disconnect_then_connect_active_then_resolved(alertmanager, http, write_config,
                                                      hook):
    cfg = write_config(rules([alertmanager.url]))
    assert hook(cfg, "disconnect", RES) == 0
    [a] = wait_until(lambda: alertmanager.active("HastDisconnected"), what="the alert")
    assert a["labels"] == {"alertname": "HastDisconnected", "resource": RES, "host": "host1",
                           "severity": "warning", "cluster": "pair1"}
    assert a["annotations"]["summary"] == f"[warning] {RES} lost its peer (host1)"
    assert a["status"]["state"] == "active"
    assert hook(cfg, "connect", RES) == 0
    wait_until(lambda: not alertmanager.active(), what="the alert resolved")
    done = wait_until(lambda: [n for n in notifications(http) if n["status"] == "resolved"],
                      what="Alertmanager's resolved notification")
    assert done[-1]["alerts"][0]["labels"] == a["labels"]


def test_connect_ends_a_split_brain_on_the_node_that_never_sees_syncdone(alertmanager,
                                                                         write_config, hook):
    cfg = write_config(rules([alertmanager.url]))
    for words in (["disconnect", RES], ["split-brain", RES], ["split-brain", RES]):
        assert hook(cfg, *words) == 0
    wait_until(lambda: len(alertmanager.active()) == 2, what="disconnect and split-brain")
    assert hook(cfg, "connect", RES) == 0    # the reset secondary: connect, no syncdone
    wait_until(lambda: not alertmanager.active(), what="both ended by the connect")
    r = run_cmd(command("hasthook"), "flush", "-c", str(cfg))
    assert r.returncode == 0 and "re-sent" not in r.stdout, r.stdout


def test_resolved_while_down_never_fires(am_down, write_config, hook, tmp_path):
    cfg = write_config(rules([am_down.url]))
    assert hook(cfg, "disconnect", RES) == 0
    assert hook(cfg, "connect", RES) == 0
    rows = Store(str(tmp_path / "state")).outbox_list(("pending",))
    assert [(r["kind"], r["attempts"]) for r in rows] == [("alert", 1), ("resolved", 1)]
    assert "refused" in rows[0]["last_error"]
    am_down.start()
    r = run_cmd(command("hasthook"), "flush", "--all", "-c", str(cfg))
    assert r.returncode == 0 and r.stdout.startswith("2 sent"), r.stdout + r.stderr
    assert am_down.received("resolved") >= 1 and am_down.received("firing") == 0
    assert am_down.active() == []


def test_flush_keeps_an_open_condition_active_with_a_fresh_end(alertmanager, write_config,
                                                                hook):
    cfg = write_config(rules([alertmanager.url], ttl="5m"))
    assert hook(cfg, "disconnect", RES) == 0
    [first] = wait_until(lambda: alertmanager.active("HastDisconnected"), what="the alert")
    cfg = write_config(rules([alertmanager.url], ttl="10m"))
    r = run_cmd(command("hasthook"), "flush", "-c", str(cfg))
    assert r.returncode == 0 and "alertmanager: 1 open alerts re-sent" in r.stdout, r.stdout
    [again] = alertmanager.active("HastDisconnected")
    assert again["startsAt"] == first["startsAt"]
    assert _t(again["endsAt"]) - _t(first["endsAt"]) >= 300 - 0.001
    # once resolved, flush no longer re-sends it
    assert hook(cfg, "connect", RES) == 0
    wait_until(lambda: not alertmanager.active(), what="the alert resolved")
    r = run_cmd(command("hasthook"), "flush", "-c", str(cfg))
    assert r.returncode == 0 and "re-sent" not in r.stdout, r.stdout
    assert alertmanager.active() == []


def _t(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_ha_cluster_any_member_taking_it_is_enough(alertmanager, write_config, hook, tmp_path,
                                                   syslog):
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = write_config(rules([dead, alertmanager.url]))
    assert hook(cfg, "disconnect", RES) == 0
    wait_until(lambda: alertmanager.active("HastDisconnected"), what="the alert")
    store = Store(str(tmp_path / "state"))
    [row] = store.outbox_list(("sent",))
    assert row["delivered"] == ["fleet#alertmanager"]  # the channel, never its URLs
    r = run_cmd(command("hasthook"), "flush", "-q", "-c", str(cfg))
    assert r.returncode == 0
    syslog.wait_for(f"alertmanager fleet: {dead} did not take the refresh")
    # no member at all: queued, retried, every member's reason kept
    alertmanager.stop()
    assert hook(cfg, "split-brain", RES) == 0
    [row] = store.outbox_list(("pending",))
    assert row["last_error"].count("refused") == 2, row["last_error"]
    r = run_cmd(command("hasthook"), "flush", "-q", "-c", str(cfg))
    assert r.returncode == 75


def test_an_episode_starts_after_the_last_resolution(am_down, write_config, hook, tmp_path):
    cfg = write_config(rules([am_down.url]))
    for words in (["disconnect", RES], ["connect", RES], ["disconnect", RES],
                  ["disconnect", RES]):
        assert hook(cfg, *words) == 0
    store = Store(str(tmp_path / "state"))
    alerts = [r for r in store.outbox_list(("pending",)) if r["kind"] == "alert"]
    [cond] = store.outbox_conditions("fleet", am.RESOLVED_BY)
    assert cond["resolved_at"] is None and cond["since"] == alerts[1]["created"]
    am_down.start()
    assert run_cmd(command("hasthook"), "flush", "-c", str(cfg)).returncode == 0
    [a] = am_down.active("HastDisconnected")
    assert _t(a["startsAt"]) == pytest.approx(alerts[1]["created"], abs=0.001)


def test_notify_test_sends_a_test_alert(alertmanager, write_config):
    cfg = write_config(rules([alertmanager.url]))
    r = run_cmd(command("hasthook"), "notify-test", "fleet", "-c", str(cfg))
    assert r.returncode == 0 and r.stdout.startswith(f"ok    alertmanager {alertmanager.url}")
    [a] = alertmanager.active("HasthookTest")
    assert a["labels"]["host"] == "host1" and a["labels"]["cluster"] == "pair1"


def test_check_accepts_the_channel_and_names_mistakes(write_config, tmp_path):
    cfg = write_config(rules(["http://am1:9093", "https://am2:9093"]))
    r = run_cmd(command("hasthook"), "check", "-c", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels:\n  a: {alertmanager: am1:9093}\n"
                   "  b: {alertmanager: [http://am1:9093], urls: json://x}\n")
    r = run_cmd(command("hasthook"), "check", "-c", str(bad))
    assert r.returncode == 78
    assert "channels.a.alertmanager: not an http:// or https:// URL" in r.stderr
    assert "channels.b: an alertmanager channel takes no urls or apprise_config" in r.stderr


# -- on the simulator: both nodes' real hooks ------------------------------------------


def configure(c: SimCluster, tmp_path: Path, data: dict) -> dict[str, Path]:
    """Each node's rules file (its own host name and state dir) and a hook that uses it."""
    cfgs = {}
    for name, node in c.nodes.items():
        d = {**data, "settings": {**data["settings"], "hostname": name,
                                  "state_dir": str(tmp_path / f"state-{name}"),
                                  "hastctl": node.hastctl_path,
                                  "syslog": {"socket": "/nonexistent"}}}
        cfgs[name] = tmp_path / f"{name}.yaml"
        cfgs[name].write_text(yaml.safe_dump(d, sort_keys=False))
        hook = tmp_path / f"hook-{name}"
        hook.write_text(f"#!/bin/sh\nHASTHOOK_CONFIG={cfgs[name]} exec "
                        f"{command('hasthook-exec')} \"$@\"\n")
        hook.chmod(0o755)
        node.set_exec(str(hook))
    return cfgs


@pytest.fixture
def pair(tmp_path):
    c = SimCluster(tmp_path / "sim", [{"name": RES, "localpath": "/dev/ada1"}])
    c.steady("host1")
    yield c
    c.close()


def _hosts(alerts: list[dict]) -> list[str]:
    return sorted(a["labels"]["host"] for a in alerts)


def test_sim_pair_disconnect_connect_through_alertmanager(pair, alertmanager, http,
                                                          tmp_path):
    configure(pair, tmp_path, rules([alertmanager.url]))
    assert pair.disconnect(RES)
    pair.wait_hooks(180)
    both = wait_until(lambda: _hosts(alertmanager.active("HastDisconnected")) == [
        "host1", "host2"] and alertmanager.active("HastDisconnected"),
        timeout=60, what="both nodes' alerts")
    assert {a["labels"]["cluster"] for a in both} == {"pair1"}
    # Alertmanager groups by cluster and resource: one notification names both hosts
    wait_until(lambda: any(n["status"] == "firing" and _hosts(n["alerts"]) == ["host1", "host2"]
                           for n in notifications(http)),
               timeout=60, what="one firing notification for the pair")
    assert pair.connect(RES)
    pair.wait_hooks(180)
    wait_until(lambda: not alertmanager.active(), timeout=60, what="both alerts resolved")
    wait_until(lambda: any(n["status"] == "resolved" and _hosts(n["alerts"]) == ["host1", "host2"]
                           for n in notifications(http)),
               timeout=60, what="the pair's resolved notification")
    for node in pair.nodes.values():
        assert all(h["exitcode"] == 0 for h in node.hooks())


def test_sim_alertmanager_down_at_the_event_arrives_after_flush(pair, am_down, tmp_path):
    cfgs = configure(pair, tmp_path, rules([am_down.url]))
    assert pair.disconnect(RES)
    pair.wait_hooks(180)
    for name in cfgs:
        [row] = Store(str(tmp_path / f"state-{name}")).outbox_list(("pending",))
        assert row["attempts"] == 1 and "refused" in row["last_error"]
    am_down.start()
    assert am_down.active() == []
    for cfg in cfgs.values():      # cron's flush on each node, once
        r = run_cmd(command("hasthook"), "flush", "-c", str(cfg))
        assert r.returncode == 0 and "alertmanager: 1 open alerts re-sent" in r.stdout, r.stdout
    assert _hosts(am_down.active("HastDisconnected")) == ["host1", "host2"]
    assert pair.connect(RES)
    pair.wait_hooks(180)
    wait_until(lambda: not am_down.active(), timeout=60, what="both alerts resolved")


# -- docs/alertmanager.md's examples ---------------------------------------------------

def _doc_yaml(first_line: str) -> str:
    return doc_yaml("alertmanager.md", first_line)


def test_docs_alertmanager_route_is_valid(tmp_path):
    path = tmp_path / "alertmanager.yml"
    path.write_text(_doc_yaml("# alertmanager.yml"))
    r = run_cmd("/usr/bin/amtool", "check-config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_docs_channel_example_passes_check(tmp_path):
    check_doc_settings(tmp_path, "alertmanager.md", "settings:\n  cluster:")
