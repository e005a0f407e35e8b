"""The fleet view: etc/prometheus's alerting rules and etc/grafana's dashboard, checked
with Debian's real promtool against what `hasthook metrics` really prints on the two
nodes of a simulated pair."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SyslogSink, check_doc_settings, command, doc_yaml, run_cmd
from test_metrics import hast_conf, parse

from hasthook.event import Event
from hasthook.sim import SimCluster
from hasthook.store import Store

ROOT = REPO
RULES = ROOT / "etc" / "prometheus" / "hasthook.rules.yml"
RULE_TESTS = ROOT / "etc" / "prometheus" / "hasthook.rules.test.yml"
DASHBOARD = ROOT / "etc" / "grafana" / "hasthook-dashboard.json"
PAIR = "host1+host2"
RESOURCES = ("shared1", "shared2")
SCRAPE = {"job": "node"}  # what a scrape adds besides instance
# node_exporter's own series the rules and dashboard may use besides hasthook's.
NODE_EXPORTER = {"node_textfile_mtime_seconds": {"file", "instance", "job"}}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([path, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


# --- what the two nodes really print, through a life of the pair -------------------------

# (minutes it lasts, what happens first): one snapshot of both nodes per phase.
PHASES = [
    (5, "steady: host1 primary, host2 secondary"),
    (6, "link lost; CARP moves shared1 to host2 while host1 keeps it"),
    (4, "host1 gives shared1 up"),
    (7, "host2 too; host1 puts shared2 in init"),
]


def _populate(state_dir: Path) -> None:
    """History, outbox and recoveries, so every family prints samples."""
    store = Store(str(state_dir))
    for i, (event, res) in enumerate([("disconnect", "shared1"), ("split-brain", "shared2")]):
        store.record(Event(event, res, "host1", 1_700_000_000 + i))
    with store.transaction() as db:
        ids = [store.outbox_add(db, created=1_700_000_000 + i, channel="ops", group_key="g",
                                severity="warning", title="t", body="b", due=0)
               for i in range(2)]
    store.outbox_settle([{"id": ids[0], "delivered": ["x"], "sent": True, "due": 0,
                          "error": None}], 1_700_000_100)
    store.recovery_add("shared2", "host1", "action", "recovered", 1_700_000_000)
    with store.transaction() as db:  # a watch pass that holds a condition active
        store.save_watch_state(db, state_dir.name, 1_700_000_200, {}, {
            ("shared1", "io-errors"): {"active": True, "bad": 2, "good": 0,
                                       "since": 1_700_000_140, "severity": "critical",
                                       "detail": "read +1"}})
    store.close()


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """{"phases": [{node: parsed metrics}], "unpaired": parsed metrics without hast.conf}."""
    tmp = tmp_path_factory.mktemp("fleet")
    sink = SyslogSink()
    cluster = SimCluster(tmp / "sim", [{"name": r, "localpath": f"/dev/ada{i}"}
                                       for i, r in enumerate(RESOURCES)])
    try:
        configs = {}
        for name, node in cluster.nodes.items():
            _populate(tmp / name)
            configs[name] = tmp / f"{name}.yaml"
            configs[name].write_text(yaml.safe_dump({
                "channels": {"ops": "json://127.0.0.1:1/x", "pager": "json://127.0.0.1:1/y"},
                "settings": {"hostname": name, "hastctl": node.hastctl_path,
                             "state_dir": str(tmp / name),
                             "hast_conf": hast_conf(tmp / f"hast.conf.{name}", RESOURCES),
                             "syslog": {"socket": sink.path}}}))

        def snap(cfg: Path) -> dict:
            r = run_cmd(command("hasthook"), "metrics", "-c", str(cfg))
            assert r.returncode == 0, r.stderr
            return parse(r.stdout)

        steps = [
            lambda: (cluster.steady("host1"),
                     cluster.host1.set_state("shared1", dirty_extents=3,
                                             errors={"read": 1, "flush": 4})),
            lambda: (cluster.link_loss(), cluster.host2.set_role("shared1", "primary")),
            lambda: cluster.host1.set_role("shared1", "secondary"),
            lambda: (cluster.host2.set_role("shared1", "secondary"),
                     cluster.host1.set_role("shared2", "init")),
        ]
        phases = []
        for step in steps:
            step()
            phases.append({name: snap(cfg) for name, cfg in configs.items()})
        unpaired = configs["host1"].read_text().replace("hast.conf.host1", "missing")
        configs["host1"].write_text(unpaired)
        yield {"phases": phases, "unpaired": snap(configs["host1"])}
    finally:
        cluster.close()
        sink.close()


def vocabulary(snapshots) -> dict[str, dict[str, set[str]]]:
    """{metric: {label: values}} over everything the two nodes printed."""
    out: dict[str, dict[str, set[str]]] = {}
    printed = [m for phase in snapshots["phases"] for m in phase.values()]
    for m in printed + [snapshots["unpaired"]]:
        for name, labels in m:
            labels = dict(labels)
            known = out.setdefault(name, {k: set() for k in labels})
            assert set(known) == set(labels), f"{name}: label names vary"
            for k, v in labels.items():
                known[k].add(v)
    return out


def test_the_simulated_life_prints_what_the_rules_look_at(snapshots):
    """The fixture really went through the states the rules are about."""
    def roles(m):
        return sorted((dict(lb)["resource"], dict(lb)["role"]) for n, lb in m
                      if n == "hast_resource_role")

    both = snapshots["phases"][1]
    assert roles(both["host1"]) == [("shared1", "primary"), ("shared2", "primary")]
    assert roles(both["host2"]) == [("shared1", "primary"), ("shared2", "secondary")]
    last = snapshots["phases"][3]
    assert roles(last["host1"]) == [("shared1", "secondary"), ("shared2", "init")]
    assert roles(last["host2"]) == [("shared1", "secondary"), ("shared2", "secondary")]
    assert {dict(lb)["pair"] for lb in [lb for _, lb in snapshots["unpaired"]]} == {""}
    assert len(vocabulary(snapshots)) == 13  # every family printed samples


# --- promtool ---------------------------------------------------------------------------

def test_promtool_check_rules_is_clean():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout


def test_promtool_unit_tests_pass():
    r = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_must_not():
    cases = [t for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for t in test["alert_rule_test"]]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never fires"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} never must not"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert set(rule["annotations"]) == {"summary", "runbook"}, rule["alert"]


def test_unit_test_series_are_shaped_like_hasthook_output(snapshots):
    vocab = vocabulary(snapshots)
    selector = re.compile(r'([a-z_]+)\{(.*)\}')
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for s in test["input_series"]:
            name, body = selector.fullmatch(s["series"]).groups()
            labels = dict(re.findall(r'(\w+)="([^"]*)"', body))
            assert labels.pop("instance") and labels.pop("job") == "node", s
            if name in NODE_EXPORTER:
                assert set(labels) | set(SCRAPE) | {"instance"} == NODE_EXPORTER[name]
                continue
            assert name in vocab, f"hasthook metrics never prints {name}"
            assert set(labels) == set(vocab[name]), (s, sorted(vocab[name]))
            for k, v in labels.items():
                if k == "pair":  # of the pair under test, or another pair, or unknown
                    assert v == "+".join(sorted(v.split("+"))) and v.count("+") in (0, 1), s
                    assert v.count("+") == 1 or v == "", s
                else:
                    assert v in vocab[name][k], (s, k, sorted(vocab[name][k]))
            if name == "hast_resource_role":  # always 1 while it holds
                assert all(re.fullmatch(r"1(x\d+)?|_(x\d+)?|stale", tok)
                           for tok in s["values"].split()), s


def annotations(rule: dict, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations rendered as Prometheus would for these labels."""
    out = {}
    for key, text in rule["annotations"].items():
        out[key] = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        assert "{{" not in out[key], "only {{ $labels.x }} templates here"
    return out


def series_of(phases: list[tuple[int, dict]]) -> list[dict[str, str]]:
    """promtool input series, one sample a minute, from (minutes, {node: metrics}) phases:
    a series a node stops printing goes stale at once, as after a real scrape."""
    keys: dict[tuple, None] = {}
    for _, nodes in phases:
        for node, m in nodes.items():
            for name, labels in m:
                keys[(node, name, labels)] = None
    out = []
    for node, name, labels in keys:
        tokens, before = [], False
        for minutes, nodes in phases:
            value = nodes[node].get((name, labels))
            if value is not None:
                tokens += [repr(float(value))] * minutes
            else:
                tokens += (["stale"] if before else ["_"]) + ["_"] * (minutes - 1)
            before = value is not None
        sel = ",".join(f'{k}="{v}"' for k, v in
                       [*sorted(labels), ("instance", f"{node}:9100"), *SCRAPE.items()])
        out.append({"series": f"{name}{{{sel}}}", "values": " ".join(tokens)})
    return out


def test_the_real_output_of_two_nodes_through_the_rules(snapshots, tmp_path):
    """Two primaries fires (after its `for`) and clears; no primary fires; nothing early."""
    phases = list(zip([m for m, _ in PHASES], snapshots["phases"], strict=True))
    by_name = {r["alert"]: r for r in rules()}

    def expect(alert: str, at: int, resources: tuple[str, ...]) -> dict:
        rule = by_name[alert]
        return {"eval_time": f"{at}m", "alertname": alert, "exp_alerts": [
            {"exp_labels": {**rule["labels"], "pair": PAIR, "resource": r},
             "exp_annotations": annotations(rule, {"pair": PAIR, "resource": r})}
            for r in resources]}

    start = [sum(m for m, _ in PHASES[:i]) for i in range(len(PHASES))]
    cases = [
        expect("HastTwoPrimaries", start[1] - 1, ()),        # a steady pair
        expect("HastTwoPrimaries", start[1] + 2, ()),        # both primary, for 2 of 3 min
        expect("HastTwoPrimaries", start[1] + 3, ("shared1",)),
        expect("HastTwoPrimaries", start[2] + 1, ()),        # host1 gave it up
        expect("HastNoPrimary", start[3] - 1, ()),
        expect("HastNoPrimary", start[3] + 4, ()),
        expect("HastNoPrimary", start[3] + 5, RESOURCES),
        expect("HastPairUnknown", start[3] + 6, ()),
    ]
    test = tmp_path / "real.test.yml"
    test.write_text(yaml.safe_dump({
        "rule_files": [str(RULES)], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series_of(phases),
                   "alert_rule_test": cases}]}, sort_keys=False, width=1000))
    r = promtool("test", "rules", str(test))
    assert r.returncode == 0, r.stdout + r.stderr


# --- names: the rules and the dashboard against what hasthook prints ---------------------

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan"}


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """([(metric, label names matched)], label names grouped on) of a PromQL expression,
    with Grafana's $variables: enough of PromQL for these files, not a parser."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    grouped: set[str] = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                         expr):
        grouped |= {w.strip() for w in m.group(1).split(",") if w.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  expr)
    found = []
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, matchers, call = m.groups()
        if call or name in KEYWORDS:
            continue
        found.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers or ""))))
    return found, grouped


def test_selectors_finds_names_labels_and_groupings():
    found, grouped = selectors(
        'count by (pair, resource) (hast_x{role="primary", pair!="a{b}"}) > 1 unless on (pair) '
        'rate(y_total[5m] offset $__interval) or vector(0) and z{q=~"$pair"} offset 1h30m')
    assert found == [("hast_x", {"role", "pair"}), ("y_total", set()), ("z", {"q"})]
    assert grouped == {"pair", "resource"}


def test_rules_and_dashboard_use_only_series_hasthook_prints(snapshots):
    vocab = vocabulary(snapshots)
    known = {name: set(labels) | {"instance", "job"} for name, labels in vocab.items()}
    known.update(NODE_EXPORTER)
    every_label = set().union(*known.values())
    templating = [v["definition"] for v in dashboard()["templating"]["list"]
                  if v["type"] == "query"]
    exprs = [r["expr"] for r in rules()] + dashboard_exprs()
    used = set()
    for expr in exprs + [re.fullmatch(r"label_values\((.*), \w+\)", q).group(1)
                         for q in templating]:
        found, grouped = selectors(expr)
        assert found, expr
        for name, labels in found:
            used.add(name)
            assert name in known, f"{name} is not printed by hasthook metrics: {expr}"
            assert labels <= known[name], (name, labels - known[name], expr)
        assert grouped <= every_label, (grouped - every_label, expr)
    for q in templating:
        assert re.fullmatch(r"label_values\(.*, (\w+)\)", q).group(1) in every_label
    for p in dashboard()["panels"]:
        for t in p.get("targets", []):
            assert set(re.findall(r"\{\{(\w+)\}\}", t["legendFormat"])) <= every_label
    # The dashboard shows every family hasthook prints.
    assert set(vocab) <= {n for e in dashboard_exprs() for n, _ in selectors(e)[0]}
    assert "node_textfile_mtime_seconds" in used


def test_the_stale_file_alert_watches_the_file_watch_writes():
    example = yaml.safe_load((ROOT / "rules.example.yaml").read_text())
    path = example["settings"]["metrics_textfile"]
    [rule] = [r for r in rules() if r["alert"] == "HasthookMetricsStale"]
    pattern = re.search(r'file=~"([^"]+)"', rule["expr"]).group(1)
    assert re.fullmatch(pattern, path) and re.fullmatch(pattern, Path(path).name)
    assert not re.fullmatch(pattern, "other.prom")
    assert path in rule["annotations"]["runbook"]


# --- the dashboard ----------------------------------------------------------------------

def test_dashboard_is_grafana_json_with_a_pair_variable():
    d = dashboard()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"] == {**variables["datasource"], "type": "datasource",
                                       "query": "prometheus"}
    pair = variables["pair"]
    assert pair["type"] == "query" and pair["multi"] and pair["includeAll"]
    assert pair["definition"] == pair["query"]["query"] == "label_values(hast_resource_role, pair)"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["type"] in ("stat", "timeseries", "state-timeline", "table"), p["type"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"] and p["description"], p["title"]
        for t in p["targets"]:
            assert t["refId"] and t["datasource"] == p["datasource"]
            assert "$pair" in t["expr"], f"{p['title']} ignores the pair variable"
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for wanted in ("role", "status", "dirty", "errors", "events", "outbox", "recoveries"):
        assert wanted in titles, wanted


GRAFANA_VARS = {"$pair": ".+", "$resource": ".+", "$__rate_interval": "5m",
                "$__interval": "1m"}


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def test_dashboard_queries_are_promql_promtool_accepts(tmp_path):
    exprs = dashboard_exprs()
    f = tmp_path / "dashboard.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{i}", "expr": grafana_to_promql(e)}
        for i, e in enumerate(exprs)]}]}))
    r = promtool("check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in r.stdout


def test_dashboard_timelines_map_each_role_and_status_to_its_value(tmp_path):
    """The state timelines turn labels into numbers their value mappings name."""
    panels = {p["title"]: p for p in dashboard()["panels"]}

    def names(title: str) -> dict[str, str]:
        [m] = panels[title]["fieldConfig"]["defaults"]["mappings"]
        return {v["text"]: k for k, v in m["options"].items()}

    lb = f'pair="{PAIR}",instance="host1:9100",job="node"'
    inputs = [{"series": f'hast_resource_role{{resource="{r}",role="{role}",{lb}}}',
               "values": "1"} for r, role in (("a", "init"), ("b", "secondary"),
                                              ("c", "primary"))]
    inputs += [{"series": f'hast_resource_status{{resource="{r}",role="primary",'
                          f'status="{s}",{lb}}}', "values": str(v)}
               for r, s, v in (("a", "complete", 0), ("a", "degraded", 0),
                               ("b", "complete", 0), ("b", "degraded", 1),
                               ("c", "complete", 1), ("c", "degraded", 0))]
    role, status = names("Role per resource and node"), names("Status per resource and node")
    want = {"Role per resource and node": {"a": role["init"], "b": role["secondary"],
                                           "c": role["primary"]},
            "Status per resource and node": {"a": status["no worker"], "b": status["degraded"],
                                             "c": status["complete"]}}
    tests = [{"expr": grafana_to_promql(panels[title]["targets"][0]["expr"]), "eval_time": "0m",
              "exp_samples": [{"labels": f'{{pair="{PAIR}",resource="{r}",instance="host1:9100"}}',
                               "value": float(v)} for r, v in values.items()]}
             for title, values in want.items()]
    f = tmp_path / "timelines.test.yml"
    f.write_text(yaml.safe_dump({"tests": [{"interval": "1m", "input_series": inputs,
                                            "promql_expr_test": tests}]}, width=1000))
    r = promtool("test", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr


# --- docs/fleet.md's examples -------------------------------------------------------------

def fleet_doc_yaml(first_line: str) -> str:
    return doc_yaml("fleet.md", first_line)


def test_docs_settings_example_passes_check(tmp_path):
    check_doc_settings(tmp_path, "fleet.md", "settings:\n  pair:")


def test_docs_prometheus_config_loads_the_rules(tmp_path):
    text = fleet_doc_yaml("# prometheus.yml")
    assert "/usr/local/etc/prometheus/hasthook.rules.yml" in text
    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace("/usr/local/etc/prometheus/hasthook.rules.yml", str(RULES)))
    r = promtool("check", "config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout


def test_docs_alertmanager_route_is_valid(tmp_path):
    path = tmp_path / "alertmanager.yml"
    path.write_text(fleet_doc_yaml("# alertmanager.yml"))
    r = run_cmd("/usr/bin/amtool", "check-config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
