"""The HAST simulator: hastctl output byte for byte, hastd's hook handling, scenarios."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from samples import DUMP_SAMPLE, LIST_SAMPLE

from hasthook.hast import Hastctl, parse_dump, parse_list, parse_status
from hasthook.sim import SimCluster, SimError, SimNode, is_alive, wait_for
from hasthook.sim.core import cmdline
from hasthook.sim.hastctl import USAGE, main

DOWN = "[ERROR] Unable to connect to hastd via uds:///var/run/hastctl: Connection refused.\n"


def ctl(node: SimNode, *args: str) -> tuple[int, str, str]:
    """Run the fake hastctl in-process: fast, same code as the wrapper script."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args), node_dir=node.root)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def node(tmp_path):
    n = SimNode(tmp_path / "host1", "host1", [
        {"name": "storage", "localpath": "/dev/ada1", "remoteaddr": "192.168.1.130"},
        {"name": "r1", "localpath": "/dev/ada2", "remoteaddr": "10.0.0.2",
         "sourceaddr": "10.0.0.1", "provname": "disk1"},
    ])
    yield n
    n.close()


class Recorder:
    """An exec program that appends what hastd gave it (argv, stdio, cwd, env) to a file;
    it exits 3 for syncintr and kills itself for split-brain."""

    def __init__(self, tmp_path: Path):
        self.out = tmp_path / "hook-calls.jsonl"
        self.path = tmp_path / "bin" / "record-hook"
        self.path.parent.mkdir()
        self.path.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, sys
        fds = {{i: os.readlink(f"/proc/self/fd/{{i}}") for i in (0, 1, 2)}}
        rec = {{"argv": sys.argv, "fds": fds, "cwd": os.getcwd(),
               "env": {{k: os.environ.get(k) for k in ("SIMTEST", "HASTHOOK_SIM_NODE")}}}}
        with open({str(self.out)!r}, "a") as f:
            f.write(json.dumps(rec) + "\\n")
        if sys.argv[1:2] == ["syncintr"]:
            sys.exit(3)
        if sys.argv[1:2] == ["split-brain"]:
            os.kill(os.getpid(), 9)
        """))
        self.path.chmod(0o755)

    def __str__(self) -> str:
        return str(self.path)

    def calls(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(ln) for ln in self.out.read_text().splitlines()]


@pytest.fixture
def recorder(tmp_path):
    return Recorder(tmp_path)


# --------------------------------------------------------------------------- output


def test_list_matches_reference_sample(node):
    node.set_state("storage", role="secondary", connected=True, stats={"writes": 26})
    pid = node.worker_pid("storage")
    rc, out, err = ctl(node, "list", "storage")
    assert (rc, err) == (0, "")
    assert out == LIST_SAMPLE.format(pid=pid)
    res = parse_list(out)["storage"]
    assert (res.role, res.status, res.workerpid, res.dirty) == ("secondary", "complete", pid, 0)
    assert res.queues["idle"] == 255 and res.statistics["writes"] == 26
    # The worker is a real process with hastd's title.
    assert cmdline(pid) == ["hastd: storage (secondary)"]


def test_list_init_has_no_status_or_workerpid(node):
    rc, out, _ = ctl(node, "list")
    assert rc == 0
    blocks = parse_list(out)
    assert list(blocks) == ["storage", "r1"]
    assert "status:" not in out and "workerpid:" not in out
    # No worker: hastd has no extentsize/keepdirty/statistics to send, hastctl prints 0.
    assert out.startswith("storage:\n  role: init\n  provname: storage\n  localpath: /dev/ada1\n"
                          "  extentsize: 0 (0B)\n  keepdirty: 0\n  remoteaddr: 192.168.1.130\n"
                          "  replication: memsync\n  dirty: 0 (0B)\n  statistics:\n")
    assert "idle: 0\n" in out
    # sourceaddr only where configured, right after remoteaddr.
    assert "  remoteaddr: 10.0.0.2\n  sourceaddr: 10.0.0.1\n  replication: memsync\n" in out
    assert out.count("sourceaddr") == 1
    # A secondary without a connected primary has no worker either.
    node.set_state("storage", role="secondary")
    _, out, _ = ctl(node, "list", "storage")
    assert "status:" not in out and "  role: secondary\n" in out


def test_list_primary_dirty_is_extents_times_extentsize(node):
    node.set_state("r1", role="primary", dirty_extents=5)
    rc, out, _ = ctl(node, "list", "r1")
    assert rc == 0
    assert "  keepdirty: 64\n" in out
    assert "  status: degraded\n" in out
    assert "  dirty: 10485760 (10MB)\n" in out
    node.set_state("r1", connected=True, dirty_extents=0)
    assert "  status: complete\n  workerpid: " in ctl(node, "list", "r1")[1]


def test_status_sample_line(tmp_path):
    n = SimNode(tmp_path / "n", "n", [{"name": "shared1", "localpath": "/dev/vtbd1p1",
                                       "remoteaddr": "192.168.0.102"}])
    try:
        n.set_state("shared1", role="primary", connected=True)
        rc, out, _ = ctl(n, "status")
        assert rc == 0
        assert out == ("Name\tStatus\t Role\t\tComponents\n"
                       "shared1\tcomplete primary        /dev/vtbd1p1\t192.168.0.102\n")
        assert parse_status(out)["shared1"].status == "complete"
    finally:
        n.close()


def test_status_init_and_error_lines(node):
    rc, out, _ = ctl(node, "status", "storage", "nope")
    assert rc == 1
    assert out == ("Name\tStatus\t Role\t\tComponents\n"
                   "storage\t-        init           /dev/ada1\t192.168.1.130\n"
                   "nope\tERR1\n")
    parsed = parse_status(out)
    assert parsed["storage"].status is None and parsed["nope"].error == 1


def test_dump_sample_and_parse(tmp_path):
    n = SimNode(tmp_path / "n", "n", [{"name": "shared1", "localpath": "/dev/vtbd1p1",
                                       "remoteaddr": "192.168.0.102"}], start=False)
    n.set_state("shared1", datasize=10737352704, localoff=1114112,
                resuid=2827596446382431553, localcnt=5, remotecnt=4, prevrole="primary")
    rc, out, err = ctl(n, "dump")  # dump works without hastd
    assert (rc, out, err) == (0, DUMP_SAMPLE, "")
    assert parse_dump(out)["shared1"].resuid == 2827596446382431553


def test_unknown_names(node):
    assert ctl(node, "list", "nope") == (1, "nope:\n  error: 1\n", "")
    rc, out, _ = ctl(node, "list", "storage", "nope")
    assert rc == 1 and parse_list(out)["nope"].error == 1
    assert parse_list(out)["storage"].role == "init"
    assert ctl(node, "dump", "nope") == (65, "", "[ERROR] Unknown resource nope.\n")
    # "all" is only special on its own for dump.
    rc, out, err = ctl(node, "dump", "all", "r1")
    assert (rc, err) == (65, "[ERROR] Unknown resource all.\n") and "resource: r1\n" in out
    # role: a warning per unknown name, the known ones still change.
    rc, out, err = ctl(node, "role", "secondary", "nope", "storage")
    assert (rc, out, err) == (1, "", "[WARNING] [nope] Received error 1 from hastd.\n")
    assert node.role("storage") == "secondary"


@pytest.mark.parametrize("args, extra", [
    ((), ""),
    (("frob",), ""),
    (("role", "primary"), ""),
    (("role", "master", "storage"), ""),
    (("create",), ""),
    (("list", "-x"), "hastctl: illegal option -- x\n"),
    (("list", "-c"), "hastctl: option requires an argument -- c\n"),
    (("status", "-h"), ""),
])
def test_usage(node, args, extra):
    assert ctl(node, *args) == (64, "", extra + USAGE)


def test_usage_text_is_hastctls():
    assert USAGE.splitlines()[:3] == [
        "usage: hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty]",
        "\t\t[-m mediasize] name ...",
        "       hastctl role [-d] [-c config] <init | primary | secondary> all | name ...",
    ]
    assert "       hastctl list [-d] [-c config] [all | name ...]" in USAGE


def test_options_are_accepted(node):
    rc, out, _ = ctl(node, "list", "-d", "-c", "/etc/hast.conf", "storage")
    assert rc == 0 and list(parse_list(out)) == ["storage"]
    rc, out, err = ctl(node, "role", "-d", "primary", "storage")
    assert (rc, err) == (0, "")
    assert out == "[DEBUG][1] [storage] Role changed from init to primary.\n"
    assert ctl(node, "create", "-e", "x", "r1") == (64, "", "hastctl: Invalid extentsize\n")


def test_hastd_down(node):
    node.set_state("storage", role="primary")
    pid = int(node.pidfile.read_text())
    assert is_alive(pid)
    node.stop_hastd()
    assert not is_alive(pid) and not node.hastd_running
    assert node.pidfile.exists()  # FreeBSD leaves the pid file behind
    assert not (node.dev_dir / "storage").exists()
    for args in (("list",), ("status",), ("role", "primary", "storage")):
        assert ctl(node, *args) == (71, "", DOWN)
    # dump and create read/write the local component directly.
    assert ctl(node, "dump", "storage")[0] == 0
    assert ctl(node, "create", "storage") == (0, "", "")
    node.stop_hastd(clean=True)
    assert ctl(node, "list")[2].endswith("No such file or directory.\n")
    node.start_hastd()
    assert node.role("storage") == "init" and ctl(node, "list")[0] == 0


def test_create_writes_fresh_metadata(node):
    node.set_state("storage", resuid=77, localcnt=3, remotecnt=2, prevrole="secondary",
                   dirty_extents=9)
    assert ctl(node, "create", "storage") == (0, "", "")
    assert ctl(node, "create", "storage", "nope") == (
        65, "", "[ERROR] Unknown resource nope.\n")
    meta = parse_dump(ctl(node, "dump", "storage")[1])["storage"]
    assert (meta.resuid, meta.localcnt, meta.remotecnt, meta.prevrole) == (0, 0, 0, "init")
    assert node.state("storage")["dirty_extents"] == 0  # the activemap is zeroed too
    node.fail_create("r1", "Input/output error")
    assert ctl(node, "create", "r1") == (
        66, "", "[ERROR] [r1] Unable to open /dev/ada2: Input/output error.\n")


def test_create_on_a_resource_in_use_succeeds_under_the_worker(node):
    """hastctl create takes no lock (reference: "create on a resource in use succeeds"):
    the metadata on disk is new at once, the running worker keeps its own."""
    node.set_state("storage", role="secondary", connected=True, resuid=77, localcnt=3,
                   remotecnt=2, prevrole="secondary")
    pid = node.worker_pid("storage")
    assert ctl(node, "create", "storage") == (0, "", "")
    dumped = parse_dump(ctl(node, "dump", "storage")[1])["storage"]
    assert (dumped.resuid, dumped.localcnt, dumped.prevrole) == (0, 0, "init")
    assert node.state("storage")["meta"]["resuid"] == 77  # the worker's copy
    listed = parse_list(ctl(node, "list", "storage")[1])["storage"]
    assert (listed.role, listed.status, listed.workerpid) == ("secondary", "complete", pid)
    assert is_alive(pid)
    node.set_state("storage", connected=False)  # the worker goes: disk is the truth
    assert node.state("storage")["meta"]["resuid"] == 0
    assert node.state("storage")["disk_meta"] is None


def test_role_changes_worker_and_device(node):
    assert ctl(node, "role", "primary", "r1") == (0, "", "")
    dev = node.dev_dir / "disk1"  # provname, not the resource name
    assert dev.exists()
    if os.geteuid() == 0:
        assert stat.S_ISCHR(dev.stat().st_mode)
    pid = node.worker_pid("r1")
    assert cmdline(pid) == ["hastd: r1 (primary)"]
    if shutil.which("pgrep"):
        found = subprocess.run(["pgrep", "-f", r"hastd: r1 \(primary\)"],
                               capture_output=True, text=True).stdout.split()
        assert str(pid) in found
    assert ctl(node, "role", "secondary", "all") == (0, "", "")
    assert not dev.exists() and not is_alive(pid)
    assert node.worker_pid("r1") == 0 and node.role("storage") == "secondary"


def test_lingering_worker(node):
    pid = node.spawn_lingering_worker("storage", "secondary")
    assert cmdline(pid) == ["hastd: storage (secondary)"]
    ctl(node, "role", "primary", "storage")
    assert is_alive(pid)  # hastd does not know it, so it stays
    node.stop_lingering_workers()
    assert not is_alive(pid)


# --------------------------------------------------------------------------- hooks


def test_role_hook_fired_like_hastd(tmp_path, recorder):
    n = SimNode(tmp_path / "n", "host1", [{"name": "r0", "localpath": "/dev/ada1",
                                           "remoteaddr": "10.0.0.2"}],
                exec=str(recorder), env={"SIMTEST": "yes"})
    try:
        r = n.run("role", "primary", "r0")  # the wrapper, as a tool would run it
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert n.run("role", "primary", "r0").returncode == 0  # unchanged: no hook
        runs = n.wait_hooks()
        assert [h["words"] for h in runs] == [["role", "r0", "init", "primary"]]
        assert (runs[0]["state"], runs[0]["exitcode"]) == ("done", 0)
        (call,) = recorder.calls()
        # (A script cannot see its argv[0]: the kernel puts the script path there.)
        assert call["argv"][1:] == ["role", "r0", "init", "primary"]
        assert call["fds"] == {"0": "/dev/null", "1": "/dev/null", "2": "/dev/null"}
        assert call["cwd"] == "/"
        assert call["env"] == {"SIMTEST": "yes", "HASTHOOK_SIM_NODE": str(n.root)}
        assert n.calls() == [["role", "primary", "r0"], ["role", "primary", "r0"]]
        pid = runs[0]["pid"]
        assert (f"[DEBUG][1] Hook exited gracefully (pid={pid}, "
                f"cmd=[{recorder} role r0 init primary]).") in n.log_lines()
    finally:
        n.close()


@pytest.mark.parametrize("argv0", ["path", "basename"])
def test_hook_argv0_and_stdio(tmp_path, argv0):
    """Seen from outside, on a binary hook: yes(1) under another name runs until killed.
    argv[0] is the exec path (hooks.c since FreeBSD 11), its basename on FreeBSD 10."""
    probe = tmp_path / "bin" / "argv0-probe"
    probe.parent.mkdir()
    probe.symlink_to(shutil.which("yes"))
    n = SimNode(tmp_path / "n", "h", [{"name": "r0", "localpath": "/dev/ada1"}],
                exec=str(probe), env={"SIMTEST": "probe"}, argv0=argv0)
    pid = None
    try:
        n.fire("connect", "r0")
        pid = wait_for(lambda: n.hooks()[0]["pid"], 5, "the hook's pid")
        yes = os.path.realpath(shutil.which("yes") or "")
        # The kernel shows the new exe a moment before it lays out argv: wait for both.
        wait_for(lambda: os.path.realpath(f"/proc/{pid}/exe") == yes and cmdline(pid),
                 5, "the exec")
        first = str(probe) if argv0 == "path" else "argv0-probe"
        assert cmdline(pid) == [first, "connect", "r0"]
        assert [os.readlink(f"/proc/{pid}/fd/{i}") for i in (0, 1, 2)] == ["/dev/null"] * 3
        # Nothing inherited beyond stdio. yes(1) opens files of its own while it starts
        # (ld.so its libraries, setlocale the locale archive) and closes them; an
        # inherited descriptor never closes, so poll for exactly 0, 1, 2.
        seen: list[list[str]] = []

        def only_stdio() -> bool:
            seen.append(sorted(os.listdir(f"/proc/{pid}/fd")))
            return seen[-1] == ["0", "1", "2"]

        try:
            wait_for(only_stdio, 5, "only descriptors 0, 1, 2 open")
        except TimeoutError:
            pytest.fail(f"descriptors beyond stdio stay open in the hook: {seen[-1]}")
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert b"SIMTEST=probe\0" in Path(f"/proc/{pid}/environ").read_bytes()
        os.kill(pid, 15)
        (run,) = n.wait_hooks()
        assert run["signal"] == 15
        assert (f"[ERROR] Hook was killed (pid={pid}, signal=15, cmd=[{probe} connect r0])."
                in n.log_lines())
    finally:
        if pid:  # yes(1) spins until killed: never leave it behind a failed assertion
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        n.close()


def test_argv0_must_be_path_or_basename(tmp_path):
    with pytest.raises(SimError, match="argv0"):
        SimNode(tmp_path / "n", "h", [], argv0="full")


def test_hook_exit_code_and_kill_are_logged(tmp_path, recorder):
    n = SimNode(tmp_path / "n", "host1", [{"name": "r0", "localpath": "/dev/ada1",
                                           "remoteaddr": "10.0.0.2"}], exec=str(recorder))
    try:
        n.fire("syncintr", "r0")
        n.fire("split-brain", "r0")
        runs = n.wait_hooks()
        assert [(h["exitcode"], h["signal"]) for h in runs] == [(3, None), (None, 9)]
        log = n.log_lines()
        assert (f"[ERROR] Hook exited ungracefully (pid={runs[0]['pid']}, exitcode=3, "
                f"cmd=[{recorder} syncintr r0]).") in log
        assert (f"[ERROR] Hook was killed (pid={runs[1]['pid']}, signal=9, "
                f"cmd=[{recorder} split-brain r0]).") in log
        assert f"[DEBUG][1] [r0] (init) Executing hook: {recorder} syncintr r0" in log
    finally:
        n.close()


def test_long_running_hook_is_reported(tmp_path):
    prog = tmp_path / "slow"
    prog.write_text("#!/bin/sh\nexec sleep 0.6\n")
    prog.chmod(0o755)
    n = SimNode(tmp_path / "n", "h", [{"name": "r0", "localpath": "/dev/ada1"}],
                exec=str(prog), report_interval=0.2)
    try:
        n.fire("connect", "r0")
        (run,) = n.wait_hooks()
        reports = [ln for ln in n.log_lines() if "Hook is running for" in ln]
        assert reports and reports[0] == (f"[WARNING] Hook is running for 0 seconds "
                                          f"(pid={run['pid']}, cmd=[{prog} connect r0]).")
    finally:
        n.close()


def test_unexecutable_hook_exits_70(tmp_path):
    prog = tmp_path / "noexec"
    prog.write_text("#!/bin/sh\n")
    n = SimNode(tmp_path / "n", "h", [{"name": "r0", "localpath": "/dev/ada1"}],
                exec=str(prog))
    try:
        n.fire("connect", "r0")
        (run,) = n.wait_hooks()
        assert run["exitcode"] == 70
        assert (f"[ERROR] [r0] (init) Unable to execute {prog}: Permission denied."
                in n.log_lines())
    finally:
        n.close()


# --------------------------------------------------------------------------- robustness


def test_100_concurrent_calls(node):
    procs = []
    for i in range(100):
        args = (["role", "primary" if i % 2 else "init", "r1"] if i % 10 == 0
                else ["status"] if i % 10 == 5 else ["list"])
        procs.append((args, subprocess.Popen([node.hastctl_path, *args], text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    for args, p in procs:
        out, err = p.communicate(timeout=60)
        assert (p.returncode, err) == (0, ""), (args, err)
        if args[0] == "list":
            assert set(parse_list(out)) == {"storage", "r1"}
        elif args[0] == "status":
            assert set(parse_status(out)) == {"storage", "r1"}
    calls = node.calls()
    assert len(calls) == 100 and sorted(map(tuple, calls)) == sorted(tuple(a) for a, _ in procs)
    # One worker at most, and the one the state names.
    st = node.state("r1")
    assert (st["role"] == "primary") == bool(st["workerpid"]) == is_alive(st["workerpid"])


def test_faults(node):
    node.hang("list", 5)
    t = Hastctl(node.hastctl_path, timeout=0.5)
    res, r = t.list()
    assert res == {} and r.rc is None and "timed out" in r.why()
    node.clear_faults()
    node.garbage("list", "Segmentation fault (core dumped) \x00\n")
    res, r = t.list()
    assert res == {} and r.rc == 0 and "unparseable" in r.why()
    node.clear_faults()
    assert set(t.list()[0]) == {"storage", "r1"}
    node.fail_role("storage", 2)
    assert ctl(node, "role", "primary", "storage") == (
        2, "", "[WARNING] [storage] Received error 2 from hastd.\n")
    assert node.role("storage") == "init"
    node.fail_role("r1", "worker-exit")
    assert ctl(node, "role", "primary", "r1")[0] == 0
    assert node.role("r1") == "init" and node.worker_pid("r1") == 0
    assert "[INFO] [r1] (primary) Changing resource role back to init." in node.log_lines()
    assert [c[0] for c in node.calls()] == ["list", "list", "list", "role", "role"]


# --------------------------------------------------------------------------- cluster


@pytest.fixture
def cluster(tmp_path):
    c = SimCluster(tmp_path / "c", [{"name": "r0", "localpath": "/dev/ada1"},
                                    {"name": "r1", "localpath": "/dev/ada2"}])
    c.steady("host1")
    yield c
    c.close()


def test_cluster_addresses_and_steady_state(cluster):
    out1 = parse_list(ctl(cluster.host1, "list")[1])
    out2 = parse_list(ctl(cluster.host2, "list")[1])
    assert out1["r0"].remoteaddr == "192.168.1.130" and out2["r0"].remoteaddr == "192.168.1.129"
    assert (out1["r0"].role, out1["r0"].status) == ("primary", "complete")
    assert (out2["r0"].role, out2["r0"].status) == ("secondary", "complete")
    assert cluster.host1.events() == [] and cluster.host2.events() == []


def test_link_loss_and_return(cluster):
    cluster.sync("r0", 3)
    cluster.link_loss()
    assert cluster.host2.worker_pid("r0") == 0  # the secondary's worker exits
    assert parse_list(ctl(cluster.host1, "list", "r0")[1])["r0"].status == "degraded"
    cluster.link_return()
    cluster.sync_done("r0")
    cluster.sync_done("r1")
    assert cluster.host1.events() == [
        ["syncstart", "r0"],
        ["disconnect", "r0"], ["syncintr", "r0"], ["disconnect", "r1"],
        ["connect", "r0"], ["syncstart", "r0"], ["connect", "r1"], ["syncstart", "r1"],
        ["syncdone", "r0"], ["syncdone", "r1"],
    ]
    assert cluster.host2.events() == [["disconnect", "r0"], ["disconnect", "r1"],
                                      ["connect", "r0"], ["connect", "r1"]]
    assert parse_list(ctl(cluster.host1, "list", "r0")[1])["r0"].dirty == 0
    with pytest.raises(SimError):
        cluster.host1.set_role("nope", "init")


def test_switch(cluster):
    cluster.switch("r0", "host2")
    assert (cluster.host1.role("r0"), cluster.host2.role("r0")) == ("secondary", "primary")
    assert cluster.host1.events() == [["role", "r0", "primary", "secondary"],
                                      ["connect", "r0"]]
    assert cluster.host2.events() == [["disconnect", "r0"],
                                      ["role", "r0", "secondary", "primary"],
                                      ["connect", "r0"]]
    assert (cluster.host2.dev_dir / "r0").exists()
    assert not (cluster.host1.dev_dir / "r0").exists()


def test_role_change_behind_the_clusters_back_disconnects_the_peer(cluster):
    assert ctl(cluster.host2, "role", "init", "r0")[0] == 0
    cluster.settle()
    assert cluster.host1.events() == [["disconnect", "r0"]]
    assert cluster.host1.state("r0")["connected"] is False


def test_split_brain_storm_repeats_until_someone_acts(cluster):
    result = cluster.split_brain("r0", repeats=3, interval=0.01)
    assert (result.rounds, result.resolved) == (3, False)
    assert [n for n, _ in result.events] == ["host2", "host1"] * 3
    assert cluster.host1.events().count(["split-brain", "r0"]) == 3
    assert cluster.host2.events().count(["split-brain", "r0"]) == 3


def test_split_brain_persists_until_resolved(cluster):
    assert cluster.split_brain("r1", repeats=1, interval=0).rounds == 1
    cluster.link_loss()
    cluster.link_return()  # r0 reconnects; r1 meets the split-brain again
    assert cluster.host1.events()[-3:] == [["connect", "r0"], ["syncstart", "r0"],
                                           ["split-brain", "r1"]]
    assert cluster.host2.events()[-1] == ["split-brain", "r1"]
    assert not cluster.host1.state("r1")["connected"]
    assert cluster.connect("r1") is False


def test_split_brain_recovered_by_hook(tmp_path):
    """The article's hastrecover: on the secondary, role init, create, role secondary."""
    marker = tmp_path / "recovered"
    prog = tmp_path / "recover"
    prog.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        [ "$1" = split-brain ] || exit 0
        role=$(hastctl list "$2" | awk '$1 == "role:" {{print $2}}')
        [ "$role" = primary ] && exit 0
        mkdir {marker} 2>/dev/null || exit 0
        hastctl role init "$2" && hastctl create "$2" && hastctl role "$role" "$2"
        """))
    prog.chmod(0o755)
    c = SimCluster(tmp_path / "c", [{"name": "r0", "localpath": "/dev/ada1"}], exec=str(prog))
    try:
        c.steady("host1")
        result = c.split_brain("r0", repeats=20, interval=0.25)
        assert result.resolved and 1 <= result.rounds < 20
        c.wait_hooks()
        # Every split-brain hook reads the role; the first one on the secondary recovers.
        calls2 = c.host2.calls()
        assert calls2[0] == ["list", "r0"]
        assert [a for a in calls2 if a[0] != "list"] == [
            ["role", "init", "r0"], ["create", "r0"], ["role", "secondary", "r0"]]
        assert calls2.count(["list", "r0"]) == result.rounds
        assert c.host1.calls() == [["list", "r0"]] * result.rounds
        ev2 = c.host2.events()
        assert ev2[-3:] == [["role", "r0", "secondary", "init"],
                            ["role", "r0", "init", "secondary"], ["connect", "r0"]]
        assert c.host1.events()[-2:] == [["connect", "r0"], ["syncstart", "r0"]]
        # Full synchronization of the recreated secondary: every extent is dirty.
        dirty = parse_list(ctl(c.host1, "list", "r0")[1])["r0"].dirty
        assert dirty == 5120 * 2097152
        assert c.host2.state("r0")["meta"]["resuid"] == c.host1.state("r0")["meta"]["resuid"]
    finally:
        c.close()


def test_pgrep_sees_only_its_node(cluster):
    pid2 = cluster.host2.worker_pid("r0")
    pattern = r"hastd: r0 \(secondary\)"
    r1 = subprocess.run([cluster.host1.pgrep_path, "-f", pattern], capture_output=True,
                        text=True)
    r2 = subprocess.run([cluster.host2.pgrep_path, "-lf", pattern], capture_output=True,
                        text=True)
    assert (r1.returncode, r1.stdout) == (1, "")
    assert (r2.returncode, r2.stdout) == (0, f"{pid2} hastd: r0 (secondary)\n")
    found = {int(p) for p in subprocess.run([cluster.host1.pgrep_path, "-x", "hastd"],
                                            capture_output=True, text=True).stdout.split()}
    assert len(cluster.host1.processes()) == 3  # hastd and two primary workers
    assert set(cluster.host1.processes()) <= found
    assert not found & set(cluster.host2.processes())
    assert cluster.host2.processes()[pid2] == "hastd: r0 (secondary)"


def test_close_ends_every_process(tmp_path):
    n = SimNode(tmp_path / "n", "h", [{"name": "r0", "localpath": "/dev/ada1"}])
    n.set_state("r0", role="primary")
    pids = [int(n.pidfile.read_text()), n.worker_pid("r0"),
            n.spawn_lingering_worker("r0", "secondary")]
    assert all(is_alive(p) for p in pids)
    n.close()
    wait_for(lambda: not any(is_alive(p) for p in pids), 5, "processes to end")


def test_wrapper_is_a_standalone_executable(node, tmp_path):
    script = Path(node.hastctl_path).read_text()
    assert script.startswith(f"#!{sys.executable}")
    r = subprocess.run([node.hastctl_path, "status", "r1"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert r.returncode == 0 and parse_status(r.stdout)["r1"].role == "init"


# --------------------------------------------------------------------------- what hastd does
# Each test below follows a line of the reference's "Corrections and details"
# (../shared/reference/hastd.md), checked against FreeBSD 12.1's sbin/hastd.


def dump(node: SimNode, res: str):
    return parse_dump(ctl(node, "dump", res)[1])[res]


def since(node: SimNode, n: int) -> list[list[str]]:
    return node.events()[n:]


@pytest.fixture
def fresh(tmp_path):
    """A brand-new pair: both nodes in role init, no resource ID anywhere."""
    c = SimCluster(tmp_path / "c", [{"name": "r0", "localpath": "/dev/ada1"},
                                    {"name": "r1", "localpath": "/dev/ada2"}])
    yield c
    c.close()


def test_a_brand_new_pair_gets_its_id_at_the_first_connection_and_copies_nothing(fresh):
    h1, h2 = fresh.host1, fresh.host2
    h2.set_role("r0", "secondary")
    h1.set_role("r0", "primary")
    assert dump(h1, "r0").resuid == 0  # not at the role change
    assert fresh.connect("r0")
    assert h1.events() == [["role", "r0", "init", "primary"], ["connect", "r0"]]
    assert h2.events() == [["role", "r0", "init", "secondary"], ["connect", "r0"]]
    rid = dump(h1, "r0").resuid
    assert rid != 0 and dump(h2, "r0").resuid == rid
    assert "[INFO] [r0] (primary) Nodes are in sync." in h1.log_lines()
    assert parse_list(ctl(h1, "list", "r0")[1])["r0"].dirty == 0


def test_writes_before_the_first_connection_are_all_that_is_copied(fresh):
    h1, h2 = fresh.host1, fresh.host2
    h2.set_role("r1", "secondary")
    h1.set_role("r1", "primary")
    h1.write("r1", 3)  # no peer yet: these extents stay dirty
    assert fresh.connect("r1")
    assert h1.events()[-2:] == [["connect", "r1"], ["syncstart", "r1"]]
    assert parse_list(ctl(h1, "list", "r1")[1])["r1"].dirty == 3 * 2097152
    assert "[INFO] [r1] (primary) Synchronization started. 6.0MB to go." in h1.log_lines()


def test_pair_up_is_the_scripted_first_start(fresh):
    fresh.pair_up("host1")
    for node in (fresh.host1, fresh.host2):
        assert "syncstart" not in [e[0] for e in node.events()]
        assert [e[0] for e in node.events()].count("connect") == 2
    assert {dump(fresh.host1, r).resuid for r in ("r0", "r1")} & {0} == set()


@pytest.fixture
def pair(cluster):
    return cluster


def test_create_on_the_busy_secondary_means_a_full_copy_at_the_next_connection(pair):
    h1, h2 = pair.host1, pair.host2
    pid = h2.worker_pid("r0")
    assert ctl(h2, "create", "r0") == (0, "", "")  # no "Device busy"
    assert h2.worker_pid("r0") == pid and h2.state("r0")["connected"]
    assert h1.events() == [] and h2.events() == []  # nothing notices yet
    pair.disconnect("r0")
    assert pair.connect("r0")
    assert h1.events() == [["disconnect", "r0"], ["connect", "r0"], ["syncstart", "r0"]]
    assert h2.events() == [["disconnect", "r0"], ["connect", "r0"]]
    assert parse_list(ctl(h1, "list", "r0")[1])["r0"].dirty == 5120 * 2097152
    assert dump(h2, "r0").resuid == dump(h1, "r0").resuid


def test_create_on_the_busy_primary_bites_when_its_worker_restarts(pair):
    h1, h2 = pair.host1, pair.host2
    rid = dump(h1, "r0").resuid
    pid = h1.worker_pid("r0")
    assert ctl(h1, "create", "r0") == (0, "", "")
    assert dump(h1, "r0").resuid == 0
    # The worker keeps the old ID and goes on serving.
    assert h1.worker_pid("r0") == pid and h1.state("r0")["meta"]["resuid"] == rid
    assert parse_list(ctl(h1, "list", "r0")[1])["r0"].status == "complete"
    # A restarted worker reads what create wrote: a new ID, which the secondary refuses.
    n1, n2 = len(h1.events()), len(h2.events())
    assert pair.kill_worker("host1", "r0") == "restarted"
    assert since(h1, n1) == []                       # no connect: the attempt failed
    assert since(h2, n2) == [["disconnect", "r0"]]
    new = h1.state("r0")["meta"]["resuid"]
    assert new not in (0, rid) and dump(h2, "r0").resuid == rid
    mismatch = f"Resource unique ID mismatch (primary={new}, secondary={rid})."
    assert f"[WARNING] [r0] (primary) {mismatch}" in h1.log_lines()
    assert f"[ERROR] [r0] (secondary) {mismatch}" in h2.log_lines()
    # hastd retries every 10 s, silently, until someone acts.
    t0 = pair.now
    assert pair.retry("r0", attempts=3) == ["resuid-mismatch"] * 3
    assert pair.now == t0 + 20
    assert since(h1, n1) == [] and since(h2, n2) == [["disconnect", "r0"]]


def test_a_worker_writing_its_metadata_puts_its_id_back(pair):
    """primary.c metadata_write() writes the worker's copy: a create under it is undone
    at the first write while apart, or at a reconnection that finds nothing to copy."""
    h1 = pair.host1
    for res in ("r0", "r1"):
        ctl(h1, "create", res)
        pair.disconnect(res)
    rid0, rid1 = h1.state("r0")["meta"]["resuid"], h1.state("r1")["meta"]["resuid"]
    h1.write("r0")  # localcnt bumped, metadata written
    assert (dump(h1, "r0").resuid, dump(h1, "r0").localcnt) == (rid0, 1)
    assert dump(h1, "r1").resuid == 0
    assert pair.connect("r1")  # "Nodes are in sync.": counters written
    assert dump(h1, "r1").resuid == rid1


def test_silent_failures_fire_nothing_and_are_retried_every_10s(pair):
    h1, h2 = pair.host1, pair.host2
    ctl(h2, "role", "init", "r0")
    pair.settle()
    n1, n2 = len(h1.events()), len(h2.events())
    assert pair.retry("r0", attempts=3) == ["peer-init"] * 3
    assert since(h1, n1) == [] and since(h2, n2) == []
    assert ("[WARNING] [r0] (primary) Remote node acts as init for the resource and not as "
            "secondary.") in h1.log_lines()
    assert pair.now == 20


def test_different_sizes_fire_only_the_secondarys_connect_and_disconnect(pair):
    """secondary.c reports connect before primary.c compares the sizes and hangs up."""
    h1, h2 = pair.host1, pair.host2
    pair.disconnect("r1")
    h2.set_state("r1", datasize=1 << 30)
    n1, n2 = len(h1.events()), len(h2.events())
    assert pair.attempt("r1") == "size-mismatch"
    assert since(h1, n1) == []
    assert since(h2, n2) == [["connect", "r1"], ["disconnect", "r1"]]
    assert any("Data size differs between nodes" in ln for ln in h1.log_lines())


def test_split_brain_stops_when_the_primary_is_re_created_and_the_pair_stays_apart(pair):
    """Re-creating the primary turns the storm into silence; its own record of what it
    wrote is gone, and the pair stays apart until the secondary is re-created too,
    which then takes a full copy of the primary's data."""
    h1, h2 = pair.host1, pair.host2
    assert pair.split_brain("r0", repeats=2).rounds == 2
    assert h1.data("r0") != h2.data("r0")
    for words in (["role", "init", "r0"], ["create", "r0"], ["role", "primary", "r0"]):
        assert ctl(h1, *words)[0] == 0
    n1, n2 = len(h1.events()), len(h2.events())
    result = pair.split_brain("r0", repeats=3)
    assert (result.rounds, result.resolved, result.outcome) == (0, True, "resuid-mismatch")
    assert since(h1, n1) == [] and since(h2, n2) == []
    assert (dump(h1, "r0").localcnt, parse_list(ctl(h1, "list", "r0")[1])["r0"].dirty) == (
        0, 0)
    ours = h1.data("r0")
    for words in (["role", "init", "r0"], ["create", "r0"], ["role", "secondary", "r0"]):
        assert ctl(h2, *words)[0] == 0
    assert pair.connect("r0")
    assert h1.events()[-2:] == [["connect", "r0"], ["syncstart", "r0"]]
    pair.sync_done("r0")
    assert h2.data("r0") == ours == h1.data("r0")  # the secondary's writes are gone


def test_split_brain_stops_when_the_secondary_is_re_created(pair):
    h1, h2 = pair.host1, pair.host2
    pair.split_brain("r0", repeats=1)
    theirs, ours = h2.data("r0"), h1.data("r0")
    assert theirs != ours
    for words in (["role", "init", "r0"], ["create", "r0"], ["role", "secondary", "r0"]):
        assert ctl(h2, *words)[0] == 0
    result = pair.split_brain("r0", repeats=3)
    assert (result.rounds, result.resolved, result.outcome) == (0, True, "connected")
    pair.sync_done("r0")
    assert h2.data("r0") == ours


def test_a_restarted_primary_worker_connects_again_without_a_disconnect(pair):
    h1, h2 = pair.host1, pair.host2
    old = h1.worker_pid("r0")
    assert pair.kill_worker("host1", "r0", sig=signal.SIGKILL) == "restarted"
    assert h1.worker_pid("r0") not in (0, old) and h1.role("r0") == "primary"
    assert h1.events() == [["connect", "r0"]]        # a second connect, no disconnect
    assert h2.events() == [["disconnect", "r0"], ["connect", "r0"]]
    assert "[INFO] [r0] (primary) Restarting worker process." in h1.log_lines()
    assert f"[ERROR] [r0] (primary) Worker process killed (pid={old}, signal=9)." in (
        h1.log_lines())


def test_a_primary_worker_failing_for_good_goes_back_to_init_without_a_hook(pair):
    h1 = pair.host1
    assert pair.kill_worker("host1", "r1", exitcode=66) == "init"
    assert h1.role("r1") == "init" and h1.events() == []
    assert pair.host2.events() == [["disconnect", "r1"]]


def test_a_killed_secondary_worker_reports_no_disconnect(pair):
    h1, h2 = pair.host1, pair.host2
    assert pair.kill_worker("host2", "r0") == "gone"
    assert h2.events() == [["connect", "r0"]]        # its next worker's
    assert h1.events() == [["disconnect", "r0"], ["connect", "r0"]]
    assert pair.now == 10                            # the primary's next check


def test_a_new_connection_stops_the_secondarys_old_worker_without_a_disconnect(pair):
    """The primary's host crashed and is back before the secondary's 20 s timeout: the
    new connection cancels the secondary's worker (SIGINT), which reports nothing."""
    h1, h2 = pair.host1, pair.host2
    old = h2.worker_pid("r0")
    pair.crash("host1")
    pair.advance(5)
    assert h2.events() == [] and is_alive(old)
    h1.start_hastd()
    h1.set_role("r0", "primary")
    assert pair.connect("r0")
    assert h2.events() == [["connect", "r0"]] and not is_alive(old)
    assert h1.events() == [["role", "r0", "init", "primary"], ["connect", "r0"]]
    assert any("Worker process exists" in ln for ln in h2.log_lines())
    pair.advance(600)  # r1 was never reconnected: its secondary times out, r0's does not
    assert h2.events() == [["connect", "r0"], ["disconnect", "r1"]]
    assert [t for t, h, w in pair.timeline() if w == ["disconnect", "r1"]] == [20]


def test_link_loss_is_noticed_20s_later_by_the_secondary_later_still_by_an_idle_primary(
        pair):
    pair.sync("r0", 3)  # r0 synchronizing: a busy primary; r1 idle
    pair.link_loss(dirty_extents=0)
    lost = [(t, host, words) for t, host, words in pair.timeline()
            if words[0] in ("disconnect", "syncintr")]
    assert lost == [(0, "host1", ["disconnect", "r0"]), (0, "host1", ["syncintr", "r0"]),
                    (20, "host2", ["disconnect", "r0"]), (20, "host2", ["disconnect", "r1"]),
                    (60, "host1", ["disconnect", "r1"])]


def test_a_short_outage_an_idle_primary_never_noticed_leaves_the_connection(pair):
    pair.link_loss(dirty_extents=0, wait=5)
    pair.link_return()
    assert pair.host1.events() == [] and pair.host2.events() == []
    assert pair.host1.state("r0")["connected"] and pair.host2.state("r0")["connected"]
    pair.advance(600)  # the cancelled timers stay cancelled
    assert pair.host1.events() == [] and pair.host2.events() == []


def test_link_back_after_the_primary_noticed_the_secondary_reads_the_close(pair):
    pair.link_loss(dirty_extents=1, wait=5)
    pair.link_return()
    assert pair.host2.events() == [["disconnect", "r0"], ["disconnect", "r1"],
                                   ["connect", "r0"], ["connect", "r1"]]
    assert [t for t, h, _ in pair.timeline() if h == "host2"] == [5, 5, 5, 5]


# --------------------------------------------------------------------------- hast.conf, reload


def test_each_node_writes_a_hast_conf_that_hastconf_parses(pair, tmp_path):
    from hasthook.hastconf import load

    pair.host1.set_exec("/usr/local/sbin/hasthook-exec")
    c1, c2 = load(str(pair.host1.hast_conf)), load(str(pair.host2.hast_conf))
    assert list(c1.resources) == ["r0", "r1"]
    r0 = c1.resources["r0"]
    assert r0.exec == "/usr/local/sbin/hasthook-exec" and c2.resources["r0"].exec is None
    assert r0.hosts == ["host1", "host2"] and r0.pair() == "host1+host2"
    assert r0.node("host1").settings == {"remote": "192.168.1.130"}
    assert r0.node("host2").settings == {"remote": "192.168.1.129"}
    assert r0.settings["local"] == "/dev/ada1"
    assert c1.settings["pidfile"] == str(pair.host1.pidfile)


def test_hast_conf_holds_what_is_not_the_default(node):
    from hasthook.hastconf import load

    node.edit_conf("storage", replication="fullsync", timeout=5, metaflush=False,
                   checksum="crc32", compression="lzf", exec="/bin/true")
    text = node.hast_conf.read_text()
    for line in ("\treplication fullsync\n", "\ttimeout 5\n", "\tmetaflush off\n",
                 "\tchecksum crc32\n", "\tcompression lzf\n", "\texec /bin/true\n",
                 "\tname disk1\n", "\t\tsource 10.0.0.1\n"):
        assert line in text
    r1 = load(str(node.hast_conf)).resources["r1"]
    assert r1.provname("host1") == "disk1" and r1.node("host1").settings["source"] == "10.0.0.1"
    # The file changed, the running hastd did not.
    assert parse_list(ctl(node, "list", "storage")[1])["storage"].replication == "memsync"


def test_reload_restarts_a_changed_secondary_resource(pair):
    h1, h2 = pair.host1, pair.host2
    done = pair.reload("host2", "r0", timeout=30)
    assert done == {"r0": "restarted"}
    assert h2.events() == [["role", "r0", "secondary", "init"],
                           ["role", "r0", "init", "secondary"], ["connect", "r0"]]
    assert h1.events() == [["disconnect", "r0"], ["connect", "r0"]]
    assert [(t, h, w[0]) for t, h, w in pair.timeline()] == [
        (0, "host2", "role"), (0, "host2", "role"), (0, "host1", "disconnect"),
        (10, "host2", "connect"), (10, "host1", "connect")]
    log = h2.log_lines()
    assert "[INFO] Resource r0 configuration was modified, restarting it." in log
    assert log[-1] == "[INFO] Configuration reloaded successfully."
    assert list(parse_list(ctl(h2, "list")[1])) == ["r1", "r0"]  # restarted: at the tail


def test_reload_fires_the_first_half_with_the_old_exec_the_second_with_the_new(
        pair, tmp_path):
    old, new = tmp_path / "old-hook", tmp_path / "new-hook"
    for prog in (old, new):
        prog.write_text("#!/bin/sh\nexit 0\n")
        prog.chmod(0o755)
    pair.host2.set_exec(str(old))
    pair.host1.set_exec(str(old))
    pair.reload("host2", exec=str(new))  # the global exec: every resource changes
    runs = pair.host2.wait_hooks()
    assert [(r["path"], r["words"]) for r in runs[:4]] == [
        (str(old), ["role", "r0", "secondary", "init"]),
        (str(new), ["role", "r0", "init", "secondary"]),
        (str(old), ["role", "r1", "secondary", "init"]),
        (str(new), ["role", "r1", "init", "secondary"])]
    # On the primary the same change is a reload: no hook at all.
    n = len(pair.host1.events())
    assert pair.reload("host1", exec=str(new)) == {"r0": "reloaded", "r1": "reloaded"}
    assert pair.host1.events()[n:] == []
    pair.host1.fire("connect", "r0")
    assert pair.host1.wait_hooks()[-1]["path"] == str(new)


def test_reload_of_a_removed_resource_fires_role_to_init(pair):
    h1, h2 = pair.host1, pair.host2
    assert pair.reload("host1", "r1", drop=True) == {"r1": "removed"}
    assert h1.events() == [["role", "r1", "primary", "init"]]
    assert h2.events() == [["disconnect", "r1"]]
    assert ctl(h1, "list", "r1") == (1, "r1:\n  error: 1\n", "")
    assert not (h1.dev_dir / "r1").exists()
    assert "[INFO] Resource r1 removed." in h1.log_lines()
    # Added back: role init, no hook.
    assert pair.reload("host1", "r1", localpath="/dev/ada2",
                       remoteaddr="192.168.1.130") == {"r1": "added"}
    assert h1.role("r1") == "init" and h1.events() == [["role", "r1", "primary", "init"]]


def test_reload_of_a_primary_whose_remote_changed_disconnects_it(pair):
    h1, h2 = pair.host1, pair.host2
    pair.sync("r0", 2)
    assert pair.reload("host1", "r0", remoteaddr="192.168.1.140") == {"r0": "reloaded"}
    assert h1.events() == [["syncstart", "r0"], ["disconnect", "r0"], ["syncintr", "r0"]]
    assert h2.events() == [["disconnect", "r0"]]
    # It now calls an address that is not its peer: the retries fail silently.
    assert pair.attempt("r0") == "no-link"
    assert parse_list(ctl(h1, "list", "r0")[1])["r0"].remoteaddr == "192.168.1.140"
    assert "[WARNING] [r0] (primary) Disconnected from 192.168.1.130." in h1.log_lines()


def test_reload_of_an_init_resource_fires_nothing(fresh):
    assert fresh.reload("host1", "r0", replication="fullsync") == {"r0": "restarted"}
    assert fresh.host1.events() == []
    assert parse_list(ctl(fresh.host1, "list", "r0")[1])["r0"].replication == "fullsync"


def test_a_hast_conf_that_does_not_parse_is_not_reloaded(pair):
    pair.host2.hast_conf.write_text(pair.host2.hast_conf.read_text() + "bogus 1\n")
    assert pair.host2.reload() == {}
    assert pair.host2.log_lines()[-1] == "[WARNING] Configuration not reloaded."
    assert pair.host2.events() == []


def test_hastd_reads_hast_conf_when_it_starts(node):
    node.edit_conf(exec="/usr/local/bin/other-hook")
    node.edit_conf("r1", drop=True)
    node.stop_hastd()
    node.start_hastd()
    assert node.resources == ["storage"]
    node.fire("connect", "storage")
    assert node.hooks()[-1]["path"] == "/usr/local/bin/other-hook"


# --------------------------------------------------------------------------- faults for watch


def test_a_worker_that_cannot_answer_fails_list_and_status_as_a_whole(node):
    node.set_state("r1", role="primary")
    node.fail_status("r1")
    for cmd in ("list", "status"):
        assert ctl(node, cmd) == (70, "", "[ERROR] Error 35 received from hastd.\n")
        assert ctl(node, cmd, "r1") == (70, "", "[ERROR] Error 35 received from hastd.\n")
    assert ctl(node, "list", "storage")[0] == 0  # no worker asked: no error
    r = node.run("status")
    assert (r.returncode, r.stdout) == (70, "")
    res, result = Hastctl(node.hastctl_path, 10).list()
    assert res == {} and result.rc == 70


def test_dump_errors_exit_255_without_a_name_prefix(node):
    node.fail_dump("storage", "No such file or directory")
    rc, out, err = ctl(node, "dump")
    assert (rc, err) == (255, "[ERROR] Unable to open /dev/ada1: No such file or directory.\n")
    assert list(parse_dump(out)) == ["r1"]
    rc, _, _ = ctl(node, "dump", "nope", "storage")
    assert rc == 65  # the first error decides, as control_dump() does


def test_local_error_counters_rise(node):
    node.set_state("storage", role="primary")
    with pytest.raises(SimError):
        node.local_errors("r1", read=1)  # no worker: nothing to count
    node.local_errors("storage", read=2, write=1)
    node.local_errors("storage", delete=1, flush=4)
    res = parse_list(ctl(node, "list", "storage")[1])["storage"]
    assert res.errors == {"read": 2, "write": 1, "delete": 1, "flush": 4}


def test_metaflush_on_a_file_backed_provider_counts_flush_errors(tmp_path):
    img = tmp_path / "shared.img"
    img.write_bytes(b"")
    n = SimNode(tmp_path / "n", "h", [
        {"name": "file", "localpath": str(img)},
        {"name": "quiet", "localpath": str(img), "metaflush": False},
        {"name": "disk", "localpath": "/dev/ada1"}])
    try:
        for res in ("file", "quiet", "disk"):
            n.set_state(res, role="primary")
            n.write(res, 3)
        errs = {r: v.errors for r, v in parse_list(ctl(n, "list")[1]).items()}
        assert errs["file"] == {"read": 0, "write": 0, "delete": 0, "flush": 3}
        assert errs["quiet"]["flush"] == errs["disk"]["flush"] == 0
        stats = parse_list(ctl(n, "list", "file")[1])["file"].statistics
        assert (stats["writes"], stats["activemap updates"]) == (3, 3)
        assert n.log_lines().count("[ERROR] [file] (primary) Unable to flush disk cache on "
                                   "activemap update: Inappropriate ioctl for device.") == 3
    finally:
        n.close()


def test_counters_start_from_zero_with_a_new_worker(node):
    node.set_state("storage", role="primary", errors={"read": 5})
    node.set_role("storage", "secondary")
    node.set_role("storage", "primary")
    assert parse_list(ctl(node, "list", "storage")[1])["storage"].errors["read"] == 0


def test_a_sync_progresses_or_stalls(pair):
    pair.sync("r0", 4)
    pair.sync_progress("r0", 1)
    assert parse_list(ctl(pair.host1, "list", "r0")[1])["r0"].dirty == 3 * 2097152
    # A stalled sync: connected, dirty, and nothing moves however long it waits.
    pair.advance(3600)
    res = parse_list(ctl(pair.host1, "list", "r0")[1])["r0"]
    assert (res.status, res.dirty) == ("complete", 3 * 2097152)
    pair.sync_progress("r0", 3)
    assert pair.host1.events()[-1] == ["syncdone", "r0"]
    assert pair.host2.data("r0") == pair.host1.data("r0")
