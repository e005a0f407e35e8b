"""`hasthook metrics`: HAST state from the simulator's hastctl and hasthook's own state,
checked through prometheus_client's parser of the text format."""

from __future__ import annotations

import os
import re
import stat

import pytest
import yaml
from conftest import REPO, command, run_cmd
from prometheus_client.parser import text_string_to_metric_families

from hasthook.event import Event
from hasthook.sim import SimCluster, SimNode
from hasthook.store import Store
from hasthook.tools import metrics

EXTENT = 2097152  # the simulator's default extentsize
PAIR = "host1+host2"


def hast_conf(path, resources, hosts=("host2", "host1")) -> str:
    """Write a hast.conf pairing `hosts` for each resource (on sections in that order)."""
    on = "".join(f"    on {h} {{\n        remote 10.0.0.{i}\n    }}\n"
                 for i, h in enumerate(hosts, 1))
    path.write_text("exec /usr/local/bin/hasthook-exec\n" + "".join(
        f"resource {r} {{\n    local /dev/ada{i}\n{on}}}\n" for i, r in enumerate(resources)))
    return str(path)


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
                        hastctl=node.hastctl_path,
                        hast_conf=hast_conf(tmp_path / "hast.conf", ("db", "web", "spare")))
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
    store.outbox_expire(1_700_000_002, 1_700_000_003)  # the second row: given up
    for state in ("recovered", "failed", "recovered", "blocked"):
        store.recovery_add("web", "host1", "action", state, 1_700_000_000)
    with store.transaction() as tx:  # what a watch pass leaves: one active condition
        store.save_watch_state(tx, "host1", 1_700_000_200.0, {}, {
            ("db", "io-errors"): {"active": True, "bad": 3, "good": 0, "since": 1_700_000_080,
                                  "severity": "critical", "detail": "read +1"},
            ("web", "degraded"): {"active": False, "bad": 1, "good": 0, "since": 1_700_000_200,
                                  "severity": "warning", "detail": "pending"}})
    store.close()
    return path


def test_every_metric_from_hastctl_and_the_database(cfg):
    r = run_cmd(command("hasthook"), "metrics", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    m = parse(r.stdout)
    db, web, spare = ({"resource": res, "role": role, "pair": PAIR} for res, role in
                      (("db", "primary"), ("web", "secondary"), ("spare", "init")))
    assert series(m, "hasthook_hastd_up", pair=PAIR) == 1
    # One role series per resource, its role in the label: a role change is a new series.
    assert {labels: v for (name, labels), v in m.items() if name == "hast_resource_role"} == {
        frozenset(db.items()): 1, frozenset(web.items()): 1, frozenset(spare.items()): 1}
    assert series(m, "hast_resource_status", **db, status="complete") == 1
    assert series(m, "hast_resource_status", **db, status="degraded") == 0
    assert series(m, "hast_resource_status", **spare, status="complete") == 0
    assert series(m, "hast_resource_dirty_bytes", **db) == 3 * EXTENT
    assert series(m, "hast_resource_dirty_bytes", **web) == 0
    assert series(m, "hast_resource_local_errors_total", **db, operation="read") == 2
    assert series(m, "hast_resource_local_errors_total", **db, operation="write") == 1
    assert series(m, "hast_resource_info", **web, provname="web",
                  remoteaddr="10.0.0.2", replication="memsync") == 1
    assert series(m, "hast_resource_last_event_timestamp_seconds", **db) == 1_700_000_001
    assert series(m, "hast_resource_last_event_timestamp_seconds", **web) == 1_700_000_003
    assert series(m, "hasthook_history_events", pair=PAIR, event="split-brain") == 2
    assert series(m, "hasthook_history_events", pair=PAIR, event="connect") == 1
    assert series(m, "hasthook_outbox_messages", pair=PAIR, channel="ops", state="pending") == 1
    assert series(m, "hasthook_outbox_messages", pair=PAIR, channel="ops", state="dead") == 1
    assert series(m, "hasthook_outbox_messages", pair=PAIR, channel="quiet", state="dead") == 0
    assert series(m, "hasthook_last_delivery_timestamp_seconds", pair=PAIR, channel="ops") == \
        1_700_000_100.5
    assert series(m, "hasthook_recovery_attempts", **web, state="recovered") == 2
    assert series(m, "hasthook_recovery_attempts", **web, state="failed") == 1
    assert ("hasthook_recovery_attempts", frozenset({**web, "state": "blocked"}.items())) \
        not in m
    # hasthook watch: active conditions only, and when its last pass completed.
    assert {labels: v for (name, labels), v in m.items()
            if name == "hasthook_watch_condition_active"} == {
        frozenset({**db, "condition": "io-errors", "severity": "critical"}.items()): 1}
    assert series(m, "hasthook_watch_last_pass_timestamp_seconds", pair=PAIR) == 1_700_000_200


def test_labels_and_names_follow_prometheus_conventions(cfg):
    text = run_cmd(command("hasthook"), "metrics", "-c", str(cfg)).stdout
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert len(types) == 13
    for name, typ in types.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert name.endswith("_total") == (typ == "counter"), name  # _total: counters only
        assert not re.search(r"_(seconds|bytes)_|_(ms|milliseconds|kb|mb)\b", name), name
        if "timestamp" in name or "bytes" in name:
            assert name.endswith(("_timestamp_seconds", "_bytes")), name
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            assert s.timestamp is None  # node_exporter skips a textfile with timestamps
            assert s.labels["pair"] == PAIR, s
            if "resource" in s.labels:
                assert list(s.labels)[:3] == ["resource", "role", "pair"], s
    # ...nor a third field on any sample line: name, labels, value and nothing after.
    for ln in text.splitlines():
        if not ln.startswith("#"):
            assert re.fullmatch(r"[a-z_]+(\{.*\})? -?[0-9.e+]+", ln), ln


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
    assert series(m, "hasthook_hastd_up", pair=PAIR) == 0
    assert "hast_resource_role" not in names(m)
    assert series(m, "hasthook_history_events", pair=PAIR, event="split-brain") == 2
    # The role is unknown, the pair still comes from hast.conf.
    assert series(m, "hast_resource_last_event_timestamp_seconds", resource="db", role="",
                  pair=PAIR) == 1_700_000_001


def test_label_values_are_escaped():
    fam = metrics.Family("x", "gauge", 'a "help" \\ line')
    fam.add(1.5, resource='we"ird\\na\nme')
    m = parse(metrics.render([fam]))
    assert m == {("x", frozenset({"resource": 'we"ird\\na\nme'}.items())): 1.5}


def test_each_watch_pass_writes_the_textfile(cfg, tmp_path):
    """cron runs `hasthook watch` every minute (etc/cron.d); with settings.metrics_textfile
    (rules.example.yaml: node_exporter's directory) each pass rewrites the file, from
    the pass's own `hastctl list`."""
    example = yaml.safe_load((REPO / "rules.example.yaml").read_text())
    assert example["settings"]["metrics_textfile"] == "/var/db/node_exporter/hasthook.prom"
    out = tmp_path / "textfile" / "hasthook.prom"
    out.parent.mkdir()
    data = yaml.safe_load(cfg.read_text())
    data["settings"]["metrics_textfile"] = str(out)
    cfg.write_text(yaml.safe_dump(data))
    r = run_cmd(command("hasthook"), "watch", "-q", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    m = parse(out.read_text())
    assert series(m, "hasthook_hastd_up", pair=PAIR) == 1
    assert series(m, "hasthook_watch_last_pass_timestamp_seconds", pair=PAIR) > 1_700_000_200
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def node_config(tmp_path, syslog, name: str, node: SimNode, **settings) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"settings": {
        "hostname": name, "hastctl": node.hastctl_path, "state_dir": str(tmp_path / name),
        "syslog": {"socket": syslog.path, "tag": "hasthook"}, **settings}}))
    return str(path)


def pairs_printed(cfg: str) -> set[str]:
    r = run_cmd(command("hasthook"), "metrics", "-c", cfg)
    assert r.returncode == 0, r.stderr
    return {dict(labels)["pair"] for _, labels in parse(r.stdout)}


def test_both_nodes_of_a_pair_print_the_same_pair_label_unconfigured(tmp_path, syslog):
    resources = ("shared1", "shared2")
    with SimCluster(tmp_path / "sim", [{"name": r, "localpath": f"/dev/ada{i}"}
                                       for i, r in enumerate(resources)]) as cluster:
        cluster.steady("host1")
        printed = {}
        for name, node in cluster.nodes.items():
            # Each node reads its own copy of the one hast.conf, as on FreeBSD.
            conf = hast_conf(tmp_path / f"hast.conf.{name}", resources)
            r = run_cmd(command("hasthook"), "metrics", "-c",
                        node_config(tmp_path, syslog, name, node, hast_conf=conf))
            assert r.returncode == 0, r.stderr
            printed[name] = parse(r.stdout)
    for name, m in printed.items():
        assert {dict(labels)["pair"] for _, labels in m} == {PAIR}, name
        roles = {dict(labels)["resource"]: dict(labels)["role"]
                 for n, labels in m if n == "hast_resource_role"}
        assert roles == dict.fromkeys(resources, "primary" if name == "host1" else "secondary")


def test_settings_pair_names_every_series(tmp_path, syslog, node):
    cfg = node_config(tmp_path, syslog, "host1", node, pair="pair-db",
                      hast_conf=hast_conf(tmp_path / "hast.conf", ("db", "web", "spare")))
    assert pairs_printed(cfg) == {"pair-db"}


def test_resources_of_several_pairs_leave_the_nodes_own_series_unpaired(tmp_path, syslog, node):
    conf = tmp_path / "hast.conf"
    hast_conf(conf, ("db", "web"))
    conf.write_text(conf.read_text() + "resource spare {\n local /dev/ada9\n"
                    " on host1 { remote 10.0.0.3 }\n on host3 { remote 10.0.0.1 }\n}\n")
    m = parse(run_cmd(command("hasthook"), "metrics", "-c",
                      node_config(tmp_path, syslog, "host1", node, hast_conf=str(conf))).stdout)
    assert series(m, "hast_resource_role", resource="spare", role="init",
                  pair="host1+host3") == 1
    assert series(m, "hast_resource_role", resource="db", role="primary", pair=PAIR) == 1
    assert series(m, "hasthook_hastd_up", pair="") == 1


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read {path}: No such file or directory"),
    ("resource db {\n local /dev/ada0\n on host1 { bogus x }\n}\n",
     "{path}: line 3: 'bogus' is not allowed in on host1"),
])
def test_an_unusable_hast_conf_leaves_the_pair_empty_and_says_why(tmp_path, syslog, node,
                                                                  content, problem):
    conf = tmp_path / "hast.conf"
    if content is not None:
        conf.write_text(content)
    r = run_cmd(command("hasthook"), "metrics", "-c",
                node_config(tmp_path, syslog, "host1", node, hast_conf=str(conf)))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    m = parse(r.stdout)
    assert series(m, "hast_resource_role", resource="db", role="primary", pair="") == 1
    assert {dict(labels)["pair"] for _, labels in m} == {""}
    line = syslog.wait_for("pair label")
    assert problem.format(path=conf) in line and "settings.pair" in line, line


def test_pairs_is_pure_and_prefers_the_setting():
    from hasthook.hastconf import parse as parse_conf

    conf = parse_conf("resource a { on x { } on w { } } resource b { on w { } on x { } }")
    assert metrics.pairs(None, conf) == ({"a": "w+x", "b": "w+x"}, "w+x")
    assert metrics.pairs("mine", conf) == ({}, "mine")
    assert metrics.pairs(None, None) == ({}, "")


def test_hasthook_8_documents_every_series_with_its_own_labels(cfg):

    man = (REPO / "man" / "hasthook.8").read_text()
    section = man.split(".Sh METRICS", 1)[1].split(".Sh ", 1)[0]
    documented = {name: set(re.findall(r"(\w+)", labels or ""))
                  for name, labels in re.findall(r"^\.It Va (\w+)(?: Pq (.*))?$", section, re.M)}
    m = parse(run_cmd(command("hasthook"), "metrics", "-c", str(cfg)).stdout)
    printed: dict[str, set[str]] = {}
    for name, labels in m:
        printed.setdefault(name, set()).update(k for k, _ in labels)
    assert set(documented) == set(printed)
    for name, labels in printed.items():  # pair, resource and role are said once for all
        assert labels - {"pair", "resource", "role"} == documented[name], name
