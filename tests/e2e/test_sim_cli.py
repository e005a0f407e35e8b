"""`hasthook sim` from the shell, as a user trying their own rules: one process starts
the pair, later ones drive it, the nodes' hastd run the installed hasthook-exec with
rules files the test wrote from the printed settings, messages reach a real HTTP
receiver on 127.0.0.1, and after `stop` no process of the pair is left."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import command, run_cmd
from receivers import wait_until

RES = "shared1"
NODES = ("host1", "host2")
STAND_INS = ("/sbin/hastd", f"hastd: {RES} (primary)", f"hastd: {RES} (secondary)")


def sim(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`hasthook sim ARGS` as its own process, from /, as a shell would run it."""
    base = {k: v for k, v in os.environ.items() if k != "HASTHOOK_SIM_DIR"}
    return subprocess.run([command("hasthook"), "sim", *args], capture_output=True, text=True,
                          timeout=900, cwd="/", stdin=subprocess.DEVNULL,
                          env={**base, **(env or {})})


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def command_line(pid: int) -> str | None:
    """A live process's arguments joined by spaces; None when gone or a zombie."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or stat.rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X"):
        return None
    return " ".join(a.decode(errors="replace")
                    for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a)


def pair_processes(root: Path) -> dict[int, str]:
    """Live processes (zombies are gone) that belong to the pair in root: its daemon
    (root in its arguments) and whatever carries one of its nodes in its environment
    (the stand-ins, the hooks), pid -> command line."""
    mine = os.fsencode(root)
    found = {}
    for entry in os.listdir("/proc"):
        line = command_line(int(entry)) if entry.isdigit() else None
        if line is None:
            continue
        argv = _read(f"/proc/{entry}/cmdline").split(b"\0")
        env = _read(f"/proc/{entry}/environ").split(b"\0")
        marked = any(v.startswith(k + b"=" + mine + b"/") for v in env
                     for k in (b"HASTHOOK_SIM_PROC", b"HASTHOOK_SIM_NODE"))
        if marked or any(a == mine or a.startswith(mine + b"/") for a in argv):
            found[int(entry)] = line
    return found


@pytest.fixture
def root(tmp_path):
    """A directory for the pair; whatever the test leaves running there is ended."""
    d = tmp_path / "p"
    yield d
    if (d / "control.sock").exists():
        sim("stop", "-d", str(d), "--wait", "5")
    for pid in pair_processes(d):  # only if stop failed: the test's own processes
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def rules_file(path: Path, settings: dict, url: str) -> Path:
    """A user's rules: recover a split-brained secondary, tell ops of split-brains
    and lost links; everything else recorded only."""
    path.write_text(yaml.safe_dump({
        "settings": {**settings, "group_wait": "0s"},
        "channels": {"ops": url},
        "rules": [
            {"name": "split-brain-recover",
             "match": {"event": "split-brain", "role": "secondary"}, "continue": True,
             "actions": [{"recover": {"delay": "0s"}}]},
            {"name": "split-brain", "match": {"event": "split-brain"},
             "repeat_interval": "1h", "actions": [{"notify": "ops"}]},
            {"name": "link-loss", "match": {"event": "disconnect"},
             "actions": [{"notify": "ops"}]},
            {"name": "the-rest", "match": {"event": "*"}, "actions": []},
        ]}, sort_keys=False))
    path.chmod(0o600)
    return path


def titles(http, node: str) -> list[str]:
    return [str(r["body"].get("title")) for r in http.received(f"/{node}")
            if isinstance(r["body"], dict)]


def hastctl_calls(root: Path, node: str) -> list[list[str]]:
    lines = (root / node / "calls.jsonl").read_text().splitlines()
    return [json.loads(line)["argv"] for line in lines if line.strip()]


def test_rules_on_a_simulated_pair_from_the_shell(root, tmp_path, http):
    r = sim("start", str(root))
    assert r.returncode == 0, r.stderr
    printed = yaml.safe_load(r.stdout)  # the whole output is YAML, comments included
    assert f"export HASTHOOK_SIM_DIR={root}" in r.stdout
    assert {n: printed[n]["roles"] for n in NODES} == {"host1": {RES: "primary"},
                                                      "host2": {RES: "secondary"}}
    started = pair_processes(root)
    assert sorted(t for t in started.values() if t in STAND_INS) == sorted(
        ["/sbin/hastd", "/sbin/hastd", f"hastd: {RES} (primary)",
         f"hastd: {RES} (secondary)"])
    assert any("hasthook.sim.pair" in t for t in started.values())  # the daemon

    # Each node's rules file, from the settings it printed; wired as it says.
    rules = {}
    for n in NODES:
        rules[n] = rules_file(tmp_path / f"rules-{n}.yaml", printed[n]["settings"],
                              http.url(n))
        check = run_cmd(command("hasthook"), "-c", str(rules[n]), "check")
        assert check.returncode == 0, check.stdout + check.stderr
        assert printed[n]["hook"] == f"hasthook sim hook -d {root} {n} RULES"
        assert printed[n]["exec"] == command("hasthook-exec")
    r = sim("hook", "host1", str(rules["host1"]), env={"HASTHOOK_SIM_DIR": str(root)})
    assert r.returncode == 0, r.stderr
    r = sim("hook", "-d", str(root), "host2", str(rules["host2"]))
    assert r.returncode == 0, r.stderr
    assert http.requests == []  # nothing fired yet
    assert f"exec {command('hasthook-exec')}" in (root / "host2" / "hast.conf").read_text()

    # The cable is pulled: a disconnect on each node, each told to ops.
    r = sim("link", "down", "-d", str(root))
    assert r.returncode == 0, r.stderr
    assert f"host1  disconnect {RES}" in r.stdout and f"host2  disconnect {RES}" in r.stdout
    assert "host1: 1 hook ran, all exited 0" in r.stdout
    for n in NODES:  # nothing before: no rule tells of roles or connects
        wait_until(lambda n=n: [t for t in titles(http, n) if RES in t and f"({n})" in t],
                   what=f"the message from {n} of the lost link")

    # Both wrote while apart; the link comes back and hastd finds a split-brain. The
    # recover rule on the secondary re-creates it; the pair resyncs in full.
    r = sim("split-brain", "-d", str(root))
    assert r.returncode == 0, r.stderr
    assert f"{RES}: split-brain over, the pair is connected again" in r.stdout
    assert f"host2  split-brain {RES}" in r.stdout and f"host1  split-brain {RES}" in r.stdout
    assert f"host1  syncdone {RES}" in r.stdout
    for n in NODES:
        wait_until(lambda n=n: any("SPLIT-BRAIN" in t.upper() and RES in t
                                   for t in titles(http, n)),
                   what=f"the split-brain message from {n}")
    wait_until(lambda: any("recovered" in t for t in titles(http, "host2")),
               what="the recovery report from host2")
    history = run_cmd(command("hasthook"), "-c", str(rules["host2"]), "history", "--json",
                      "--event", "recover")
    assert history.returncode == 0, history.stderr
    assert [(row["extra"] or {}).get("state") for row in json.loads(history.stdout)] == [
        "recovered"]
    mutating = [c for c in hastctl_calls(root, "host2") if c[0] in ("role", "create")]
    assert mutating == [["role", "init", RES], ["create", RES], ["role", "secondary", RES]]
    assert not [c for c in hastctl_calls(root, "host1") if c[0] in ("role", "create")]

    # A failing disk: the counters rise where hastctl shows them (watch's to notice).
    r = sim("disk-errors", "-d", str(root), "host2", RES, "--write", "3")
    assert r.returncode == 0, r.stderr
    listed = run_cmd(printed["host2"]["settings"]["hastctl"], "list", RES)
    assert "local errors: read: 0, write: 3, delete: 0, flush: 0" in listed.stdout

    r = sim("status", "--json", "-d", str(root))
    assert r.returncode == 0, r.stderr
    state = json.loads(r.stdout)
    assert state["link"] == "up"
    assert {n: (state["nodes"][n]["resources"][RES]["role"],
                state["nodes"][n]["resources"][RES]["connected"]) for n in NODES} == {
        "host1": ("primary", True), "host2": ("secondary", True)}
    assert state["nodes"]["host2"]["resources"][RES]["local_errors"]["write"] == 3
    for n in NODES:
        hooks = state["nodes"][n]["hooks"]
        assert hooks["run"] > 0 and (hooks["running"], hooks["failed"]) == (0, 0), (n, hooks)
    assert state["nodes"]["host1"]["rules"] == str(rules["host1"])
    r = sim("show", "-d", str(root))
    assert r.returncode == 0 and f"{RES}   host2  secondary  complete" in r.stdout, r.stdout

    # Stop: everything the pair started is gone, whatever its environment says now.
    before = pair_processes(root)
    assert sorted(t for t in before.values() if t in STAND_INS) == sorted(
        ["/sbin/hastd", "/sbin/hastd", f"hastd: {RES} (primary)", f"hastd: {RES} (secondary)"])
    r = sim("stop", "-d", str(root))
    assert r.returncode == 0, r.stderr
    assert pair_processes(root) == {}
    assert {pid: t for pid, t in before.items() if command_line(pid) == t} == {}
    r = sim("status", "-d", str(root))
    assert r.returncode == 69
    assert r.stderr.strip() == (f"hasthook: {root}: no simulated pair runs there "
                                f"(hasthook sim start {root})")


def test_usage_errors_name_what_is_wrong(root):
    r = sim("status")
    assert r.returncode == 64
    assert r.stderr.strip() == ("hasthook: which pair? give -d DIR or set HASTHOOK_SIM_DIR "
                                "(`hasthook sim start DIR` prints it)")
    r = sim("start", str(root), "-r", "r1", "-r", "bad name")
    assert r.returncode == 64 and not root.exists()
    assert r.stderr.strip() == ("hasthook: bad resource names: 'bad name' (letters, digits "
                                "and ._:- , each once)")
    assert sim("start", str(root), "-r", "r1", "-r", "r2").returncode == 0
    env = {"HASTHOOK_SIM_DIR": str(root)}
    for args, what in [(("role", "host3", "r1", "primary"), "host3: no such node"),
                       (("role", "host1", "r9", "primary"), "r9: no such resource"),
                       (("split-brain", "r1", "--rounds", "0"), "--rounds 0: at least 1"),
                       (("link", "up", "--idle"), "link up: --idle goes with link down"),
                       (("sync", "--wait", "soon"), "--wait:"),
                       (("hook", "host1"), "hook host1: which rules file?")]:
        r = sim(*args, env=env)
        assert (r.returncode, r.stdout) == (64, ""), (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and what in r.stderr, (args, r.stderr)
    r = sim("hook", "host1", str(root / "missing.yaml"), env=env)
    assert r.returncode == 66 and f"{root / 'missing.yaml'}: no such rules file" in r.stderr
    r = sim("start", str(root))
    assert r.returncode == 73 and "a pair is running there already" in r.stderr
    # Nothing of the above changed the pair.
    r = sim("status", "--json", env=env)
    assert sorted(json.loads(r.stdout)["nodes"]["host1"]["resources"]) == ["r1", "r2"]
    assert sim("stop", env=env).returncode == 0
    assert pair_processes(root) == {}


def test_the_other_scenarios_play_what_hastd_does(root):
    """Without hooks: the events each step fires, and the state it leaves."""
    env = {"HASTHOOK_SIM_DIR": str(root)}
    assert sim("start", env=env).returncode == 0

    def play(*args: str) -> str:
        r = sim(*args, env=env)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    def state(node: str) -> dict:
        r = sim("status", "--json", env=env)
        return json.loads(r.stdout)["nodes"][node]["resources"][RES]

    out = play("link", "down", "--idle")  # idle: the secondary notices first
    assert out.index(f"host2  disconnect {RES}") < out.index(f"host1  disconnect {RES}")
    assert "no hook wired" in out
    play("link", "up")
    out = play("sync", "--stall", "--extents", "3")
    assert f"host1  syncstart {RES}" in out and "syncdone" not in out
    assert state("host1")["syncing"] and state("host1")["dirty"] == 3 * 2 * 1024 * 1024
    out = play("sync")
    assert f"host1  syncdone {RES}" in out and "syncstart" not in out
    assert (state("host1")["syncing"], state("host1")["dirty"]) == (False, 0)

    out = play("role", "host1", RES, "secondary")
    assert f"host1  role {RES} primary secondary" in out and f"host2  disconnect {RES}" in out
    out = play("role", "host2", RES, "primary")
    assert f"host2  role {RES} secondary primary" in out
    assert f"host1  connect {RES}" in out and f"host2  connect {RES}" in out
    assert (state("host2")["role"], state("host2")["connected"]) == ("primary", True)

    conf = root / "host1" / "hast.conf"  # an admin raises the timeout, then SIGHUP
    conf.write_text(conf.read_text().replace("\tlocal /dev/ada1\n",
                                             "\tlocal /dev/ada1\n\ttimeout 40\n"))
    out = play("reload", "host1")
    assert f"host1: {RES} restarted" in out
    assert f"host1  role {RES} secondary init" in out and f"host1  role {RES} init secondary" \
        in out
    assert out.index(f"host2  disconnect {RES}") < out.index(f"host2  connect {RES}")

    r = sim("disk-errors", "host2", RES, "--read", "2", env=env)
    assert r.returncode == 0 and state("host2")["local_errors"] == {
        "read": 2, "write": 0, "delete": 0, "flush": 0}
    assert "last 3 events:" in play("status", "--events", "3")
    assert play("stop") == f"stopped the pair in {root}; its files stay there\n"
    assert pair_processes(root) == {}


def test_a_killed_daemon_takes_its_pair_along(root):
    assert sim("start", str(root)).returncode == 0
    pid = json.loads((root / "pair.json").read_text())["pid"]
    assert pid in pair_processes(root) and len(pair_processes(root)) >= 4
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: pair_processes(root) == {}, what="the stand-ins to exit")
    r = sim("status", "-d", str(root))
    assert r.returncode == 69
    r = sim("start", str(root))
    assert r.returncode == 73
    assert r.stderr.strip() == (f"hasthook: {root}: not empty; a new pair needs a new or "
                                "empty directory")
