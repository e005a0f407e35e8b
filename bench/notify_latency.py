#!/usr/bin/env python3
"""Measure alert latency and burst grouping of real hasthook-exec processes.

Latency: fork of one hasthook-exec (as hastd does) to the webhook request
arriving at a local HTTP server, for group_wait 0s and the default 2s.
Burst: N hooks forked at once (a cable pull), default group_wait: how many
messages arrive, how long until the last one, and how long the hooks live.
Also: the wall time of a hook that records an event and sends nothing.
hastctl is a missing binary, so the figures are hasthook's own cost.

    python bench/notify_latency.py [--runs 10] [--burst 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hasthook.sim.driver import wait_for
from hasthook.sim.receiver import HttpSink

HOOK = str(Path(sys.executable).parent / "hasthook-exec")


def setup(tmp: Path, http: HttpSink, group_wait: str, notify: bool = True,
          syslog: str = "/nonexistent", rules: list[dict] | None = None) -> dict[str, str]:
    """A fresh state dir and a rules file: by default one rule notifying every event."""
    cfg = tmp / "rules.yaml"
    shutil.rmtree(tmp / "state", ignore_errors=True)
    cfg.write_text(yaml.safe_dump({
        "settings": {"state_dir": str(tmp / "state"), "hastctl": "/nonexistent",
                     "hostname": "bench", "syslog": {"socket": syslog},
                     "group_wait": group_wait},
        "channels": {"hooks": f"json://{http.base}/j"},
        "rules": rules if rules is not None else [
            {"name": "link", "match": {"event": "*"},
             "actions": [{"notify": "hooks"}] if notify else []}],
    }))
    return {**os.environ, "HASTHOOK_CONFIG": str(cfg)}


def fork(env: dict[str, str], *words: str) -> subprocess.Popen:
    return subprocess.Popen([HOOK, *words], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def latency(tmp: Path, http: HttpSink, group_wait: str, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        env = setup(tmp, http, group_wait)
        before = len(http.requests)
        t0 = time.monotonic()
        p = fork(env, "disconnect", f"r{i}")
        wait_for(lambda b=before: len(http.requests) > b, 30, "the message")
        out.append(time.monotonic() - t0)
        p.wait()
    return out


def quiet(tmp: Path, http: HttpSink, runs: int) -> list[float]:
    """Wall time of a hook that records the event and has nothing to send."""
    env = setup(tmp, http, "2s", notify=False)
    out = []
    for i in range(runs):
        t0 = time.monotonic()
        fork(env, "connect", f"r{i}").wait()
        out.append(time.monotonic() - t0)
    return out


def burst(tmp: Path, http: HttpSink, n: int, group_wait: str = "2s",
          env: dict[str, str] | None = None) -> dict[str, object]:
    """Fork n disconnect hooks at once (a cable pull), wait for every hook and for
    messages naming every resource. Times are seconds from the first fork; `cpu`
    is every hook's user+system CPU (RUSAGE_CHILDREN: all of them are waited for)."""
    env = env or setup(tmp, http, group_wait)
    before = len(http.requests)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    procs = [fork(env, "disconnect", f"r{i:02d}") for i in range(n)]
    forked = time.monotonic() - t0
    ends: dict[int, float] = {}
    while len(ends) < n:  # each hook's own exit time
        for i, p in enumerate(procs):
            if i not in ends and p.poll() is not None:
                ends[i] = time.monotonic() - t0
        time.sleep(0.01)

    def named() -> int:
        return sum(len(r["body"]["message"].splitlines()[0].split(", "))
                   for r in http.requests[before:])

    try:  # the last hook may exit a moment before its message is in
        wait_for(lambda: named() >= n, 30, "every resource named")
    except TimeoutError:
        pass
    got = http.requests[before:]
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    exits = sorted(ends.values())
    return {"forked": forked, "messages": [round(r["at"] - t0, 2) for r in got],
            "sizes": [len(r["body"]["message"].splitlines()[0].split(", ")) for r in got],
            "named": named(), "delivered": max((r["at"] - t0 for r in got), default=None),
            "exit_median": exits[n // 2], "exit_last": exits[-1], "cpu": cpu,
            "cpu_per_hook": cpu / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--burst", type=int, default=30)
    a = ap.parse_args()
    http = HttpSink()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        q = quiet(tmp, http, a.runs)
        print(f"hook with nothing to send, {a.runs} runs: median {statistics.median(q):.2f}s, "
              f"min {min(q):.2f}s, max {max(q):.2f}s; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for gw in ("0s", "2s"):
            lat = latency(tmp, http, gw, a.runs)
            print(f"group_wait {gw}: event to message received, {a.runs} runs: median "
                  f"{statistics.median(lat):.2f}s, min {min(lat):.2f}s, max {max(lat):.2f}s")
        for _ in range(3):
            b = burst(tmp, http, a.burst)
            print(f"burst of {a.burst} hooks forked in {b['forked']:.2f}s, group_wait 2s: "
                  f"messages of {b['sizes']} resources at {b['messages']}s; hooks exit: "
                  f"median {b['exit_median']:.2f}s, last {b['exit_last']:.2f}s; CPU "
                  f"{b['cpu_per_hook']:.2f}s a hook")
    http.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
