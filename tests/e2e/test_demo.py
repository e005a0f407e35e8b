"""`hasthook demo` as a newcomer runs it: the installed command, from `/`, exit 0,
and a timeline that shows what the README promises it shows."""

from __future__ import annotations

import re
import subprocess

from conftest import command


def demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([command("hasthook"), "demo", *args], capture_output=True, text=True,
                          timeout=600, cwd="/", stdin=subprocess.DEVNULL)


def test_demo_runs_from_root_and_tells_the_whole_story():
    r = demo()
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "hasthook-exec for every event" in out
    # the life of the pair, in order
    steps = ["1. hastd starts", "2. the nodes connect for the first time", "3. host2 drops out",
             "4. split-brain", "5. config reload", "6. a disk starts to fail",
             "7. a cable pull", "Summary"]
    assert [out.index(s) for s in steps] == sorted(out.index(s) for s in steps)
    phase = {s: out[out.index(s):out.index(steps[i + 1])] for i, s in enumerate(steps[:-1])}
    # events per host, with the rules they matched
    assert re.search(r"host1  role init -> primary .*rules: role-changes", out)
    assert re.search(r"host1  syncintr .*rules: sync-interrupted", out)
    assert re.search(r"host2  split-brain .*rules: split-brain-recover, split-brain", out)
    # a brand-new pair: an ID at the first connection, nothing to copy
    first = phase["2. the nodes connect for the first time"]
    assert re.search(r"host1  connect ", first) and re.search(r"host2  connect ", first)
    assert not re.search(r"host\d  syncstart", first)
    assert "host1  hastd: [INFO] [shared1] (primary) Nodes are in sync." in first
    # the reload: hastd restarts the changed secondary resource; host1 reconnects
    reload = phase["5. config reload"]
    # Both halves are one restart (cause restart): one message tells it, not two.
    assert re.search(r"host2  role secondary -> init shared1 .*rules: (hastd-restarts, )?"
                     r"role-changes", reload)
    assert re.search(r"host2  role init -> secondary shared1 .*rules: hastd-restarts, "
                     r"role-changes \(cause restart\)", reload)
    assert reload.count(">> message to ops: [info] shared1 restarted by hastd on host2") == 1
    assert reload.index("role secondary -> init") < reload.index("role init -> secondary")
    assert re.search(r"host1  disconnect .*rules: link-loss", reload)
    assert re.search(r"host1  connect ", reload) and re.search(r"host2  connect ", reload)
    assert ("host2  hastd: [INFO] Resource shared1 configuration was modified, restarting it."
            in reload)
    # a failing disk, which hastd never announces: watch finds it, tells once, resolves
    disk = phase["6. a disk starts to fail"]
    assert re.search(r"host1  io-errors +shared1 .*rules: disk-failing", disk)
    assert disk.count(">> message to ops: [critical] io-errors on shared1 (host1)") == 1
    assert disk.count(">> message to ops: [resolved] io-errors-resolved on shared1 (host1)") == 1
    assert disk.index("[critical] io-errors") < disk.index("[resolved] io-errors-resolved")
    assert "watch: io-errors on shared1 (host1) raised once and resolved once in 8 passes" in out
    # the recovery: on the secondary only, the article's three steps, its syslog line
    assert "recover: RECOVERED" in out
    for step in ("hastctl role init shared1 -> exit 0", "hastctl create shared1 -> exit 0",
                 "hastctl role secondary shared1 -> exit 0"):
        assert step in out
    assert "HAST [shared1] recover role secondary" in out
    # messages the local receiver got
    assert ">> message to ops: [critical] SPLIT-BRAIN on shared1 (host1)" in out
    assert ">> message to oncall: [critical] SPLIT-BRAIN on shared1 (host2)" in out
    assert "split-brain recovered: local writes discarded" in out
    assert ">> message to ops: [resolved] connect on shared1" in out
    assert re.search(r">> message to ops: \[warning\] disconnect on \d+ resources \(host1\)",
                     out)
    # the summary's counts
    m = re.search(r"events recorded: (\d+) \(host1 (\d+), host2 (\d+)\), from (\d+) hook runs",
                  out)
    assert m and int(m[1]) == int(m[2]) + int(m[3]) and int(m[4]) >= 40 + 20
    m = re.search(r"messages received: (\d+) \(ops (\d+), oncall (\d+)\); 0 left in the "
                  r"outboxes", out)
    assert m and int(m[1]) == int(m[2]) + int(m[3]) and int(m[3]) >= 4
    assert "recovery: recovered on host2" in out and "host1 untouched" in out
    m = re.search(r"burst: 40 disconnects -> (\d+) messages? from host1, (\d+) messages? "
                  r"from host2", out)
    assert m and 1 <= int(m[1]) <= 20 and 1 <= int(m[2]) <= 20
    assert "FAILED" not in out


def test_demo_prints_its_rules():
    r = demo("--rules")
    assert r.returncode == 0
    assert "name: split-brain-recover" in r.stdout and "recover:" in r.stdout
