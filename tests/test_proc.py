"""The one process runner and the one file lock (hasthook/proc.py), on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hasthook.proc import PATH, FileLock, environment, run


def script(tmp_path, body: str) -> str:
    p = tmp_path / "prog"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_output_status_and_why(tmp_path):
    r = run([script(tmp_path, 'echo out; echo "bad thing" >&2; exit 3')], 10)
    assert (r.rc, r.stdout, r.stderr, r.ok) == (3, "out\n", "bad thing\n", False)
    assert r.why() == "exit status 3: bad thing"
    ok = run(["true"], 10)
    assert ok.ok and ok.why() == "exit status 0"


def test_a_missing_program_is_a_result_not_an_exception(tmp_path):
    r = run([str(tmp_path / "nope"), "x"], 10)
    assert r.rc is None and not r.ok
    assert r.why() == f"{tmp_path / 'nope'}: No such file or directory"


def test_the_time_limit_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    r = run([script(tmp_path, f"sleep 60 & echo $! > {pidfile}; wait")], 0.5)
    assert r.rc is None and r.timeout == 0.5
    assert r.why().endswith("timed out after 0.5s")
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the grandchild went with the group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the program's child outlived the time limit")


def test_killed_by_a_signal(tmp_path):
    r = run([script(tmp_path, "kill -TERM $$")], 10)
    assert (r.rc, r.signal) == (None, signal.SIGTERM)
    assert "killed by signal 15" in r.why()


def test_stdin_is_dev_null_and_the_environment_minimal(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "s3cret")
    r = run([script(tmp_path, "cat; env")], 10)
    assert r.ok
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert env.get("PATH") == PATH and "SECRET_TOKEN" not in env
    given = run([script(tmp_path, "env")], 10, env=environment({"HASTHOOK_EVENT": "x"}))
    assert "HASTHOOK_EVENT=x" in given.stdout.splitlines()


def test_merged_streams_keep_their_order(tmp_path):
    r = run([script(tmp_path, "echo one; echo two >&2; echo three")], 10, merge_stderr=True)
    assert r.stdout == "one\ntwo\nthree\n" and r.stderr == ""


def test_file_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hasthook.proc import FileLock; "
         f"lock = FileLock({path!r}); lock.acquire(); lock.mark_owner(); "
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        lock = FileLock(path)
        assert not lock.acquire(wait=False)
        assert lock.holder() == str(holder.pid)
        t0 = time.monotonic()
        assert not lock.acquire(wait=0.3)  # bounded: gives up
        assert time.monotonic() - t0 >= 0.3
        holder.kill()
        holder.wait()
        assert lock.acquire(wait=5)  # the kernel dropped the dead holder's lock
        lock.close()
    finally:
        holder.kill()
        holder.wait()


def test_file_lock_never_follows_a_symlink(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "x.lock").symlink_to(target)
    with pytest.raises(OSError):
        FileLock(str(tmp_path / "x.lock")).acquire()
    assert target.read_text() == "keep"
