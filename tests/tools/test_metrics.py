"""`hasthook metrics`: HAST state from the simulator's hastctl and hasthook's own state,
checked through prometheus_client's parser of the text format."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import REPO, command, run_cmd
from prometheus_client.parser import text_string_to_metric_families

from hasthook.event import Event
from hasthook.sim import SimNode
from hasthook.store import Store
from hasthook.tools import metrics

EXTENT = 2097152  # the simulator's default extentsize


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value}; the parser raises on anything malformed."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def series(m: dict, name: str, **labels: str) -> float:
    return m[(name, frozenset(labels.items()))]


def names(m: dict) -> set[str]:
    return {n for n, _ in m}


@pytest.fixture
def node(tmp_path):
    n = SimNode(tmp_path / "sim", "host1",
                [{"name": r, "localpath": f"/dev/ada{i}", "remoteaddr": "10.0.0.2"}
                 for i, r in enumerate(("db", "web", "spare"))])
    n.set_state("db", role="primary", connected=True, dirty_extents=3,
                errors={"read": 2, "write": 1})
    n.set_state("web", role="secondary", connected=True)
    yield n
    n.close()


@pytest.fixture
def cfg(write_config, node, tmp_path):
    path = write_config({"channels": {"ops": "json://127.0.0.1:1/x", "quiet": "json://x/y"}},
                        hastctl=node.hastctl_path)
    store = Store(str(tmp_path / "state"))
    for i, (event, res) in enumerate([("disconnect", "db"), ("connect", "db"),
                                      ("split-brain", "web"), ("split-brain", "web")]):
        store.record(Event(event, res, "host1", 1_700_000_000 + i,
                           severity="critical" if event == "split-brain" else "info"))
    with store.transaction() as db:
        ids = [store.outbox_add(db, created=1_700_000_000 + i, channel="ops", group_key="g",
                                severity="warning", title="t", body="b", due=0)
               for i in range(3)]
    store.outbox_settle([{"id": ids[0], "delivered": ["x"], "sent": True, "due": 0,
                          "error": None}], 1_700_000_100.5)
    store.outbox_expire(1_700_000_002)  # the second row: given up
    for state in ("recovered", "failed", "recovered", "blocked"):
        store.recovery_add("web", "host1", "action", state, 1_700_000_000)
    store.close()
    return path


def test_every_metric_from_hastctl_and_the_database(cfg):
    r = run_cmd(command("hasthook"), "metrics", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    m = parse(r.stdout)
    assert series(m, "hasthook_hastd_up") == 1
    roles = {(res, role): series(m, "hast_resource_role", resource=res, role=role)
             for res in ("db", "web", "spare") for role in ("init", "primary", "secondary")}
    assert [k for k, v in roles.items() if v == 1] == [
        ("db", "primary"), ("web", "secondary"), ("spare", "init")]
    assert sum(roles.values()) == 3
    assert series(m, "hast_resource_status", resource="db", status="complete") == 1
    assert series(m, "hast_resource_status", resource="db", status="degraded") == 0
    assert series(m, "hast_resource_status", resource="spare", status="complete") == 0
    assert series(m, "hast_resource_dirty_bytes", resource="db") == 3 * EXTENT
    assert series(m, "hast_resource_dirty_bytes", resource="web") == 0
    assert series(m, "hast_resource_local_errors_total", resource="db", operation="read") == 2
    assert series(m, "hast_resource_local_errors_total", resource="db", operation="write") == 1
    assert series(m, "hast_resource_info", resource="web", provname="web",
                  remoteaddr="10.0.0.2", replication="memsync") == 1
    assert series(m, "hast_resource_last_event_timestamp_seconds", resource="db") == \
        1_700_000_001
    assert series(m, "hast_resource_last_event_timestamp_seconds", resource="web") == \
        1_700_000_003
    assert series(m, "hasthook_history_events", event="split-brain") == 2
    assert series(m, "hasthook_history_events", event="connect") == 1
    assert series(m, "hasthook_outbox_messages", channel="ops", state="pending") == 1
    assert series(m, "hasthook_outbox_messages", channel="ops", state="dead") == 1
    assert series(m, "hasthook_outbox_messages", channel="quiet", state="dead") == 0
    assert series(m, "hasthook_last_delivery_timestamp_seconds", channel="ops") == \
        1_700_000_100.5
    assert series(m, "hasthook_recovery_attempts", resource="web", state="recovered") == 2
    assert series(m, "hasthook_recovery_attempts", resource="web", state="failed") == 1
    assert ("hasthook_recovery_attempts", frozenset(
        {"resource": "web", "state": "blocked"}.items())) not in m


def test_textfile_is_replaced_atomically(cfg, tmp_path):
    out = tmp_path / "textfile"
    out.mkdir()
    prom = out / "hasthook.prom"
    prom.write_text("old\n")
    reader = open(prom)  # a collector reading while cron writes keeps the whole old file
    try:
        r = run_cmd(command("hasthook"), "metrics", "--textfile", str(prom), "-c", str(cfg))
        assert r.returncode == 0 and r.stdout == "", r.stderr
        assert reader.read() == "old\n"
    finally:
        reader.close()
    assert os.listdir(out) == ["hasthook.prom"]         # no temporary file left behind
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node_exporter runs unprivileged
    stdout = run_cmd(command("hasthook"), "metrics", "-c", str(cfg)).stdout
    assert parse(prom.read_text()) == parse(stdout)
    r = run_cmd(command("hasthook"), "metrics", "--textfile", str(tmp_path / "no" / "x.prom"),
                "-c", str(cfg))
    assert r.returncode == 73 and "cannot write" in r.stderr


def test_hastd_down_still_exports_hasthooks_own(cfg, node):
    node.stop_hastd()
    r = run_cmd(command("hasthook"), "metrics", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    m = parse(r.stdout)
    assert series(m, "hasthook_hastd_up") == 0
    assert "hast_resource_role" not in names(m)
    assert series(m, "hasthook_history_events", event="split-brain") == 2


def test_label_values_are_escaped():
    fam = metrics.Family("x", "gauge", 'a "help" \\ line')
    fam.add(1.5, resource='we"ird\\na\nme')
    m = parse(metrics.render([fam]))
    assert m == {("x", frozenset({"resource": 'we"ird\\na\nme'}.items())): 1.5}


def test_cron_sample_writes_the_textfile_every_minute():

    text = (REPO / "etc" / "cron.d" / "hasthook").read_text()
    lines = [ln.split() for ln in text.splitlines() if ln and not ln.startswith("#")
             and "=" not in ln]
    [entry] = [e for e in lines if "metrics" in e]
    assert entry[:6] == ["*"] * 5 + ["root"]
    assert entry[6:] == ["/usr/local/bin/hasthook", "metrics", "--textfile",
                         "/var/tmp/node_exporter/hasthook.prom"]
