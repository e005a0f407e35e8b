#!/usr/bin/env python3
"""hasthook at scale, each figure beside its baseline measured in the same run.

    python bench/scale.py [--events 1000000] [--runs 5] [--burst 100]

1. Read commands on an empty history and on one of --events events over 100
   resources and two years: wall time of the whole command, median of --runs.
2. One hook on both histories: CPU (user + system of the process), median.
3. A burst of --burst hooks whose events all notify (one live webhook,
   group_wait 2s) beside the same burst with rules that send nothing: CPU of all
   the hooks together, and messages received.
4. The first burst after a rules edit beside a burst on an unchanged (cached) file:
   CPU of all the hooks together.

Every hook is the installed hasthook-exec next to this interpreter; hastctl is a
missing binary, so the figures are hasthook's own. Linux only. Not part of the
test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hasthook.event import Event
from hasthook.sim.driver import wait_for
from hasthook.sim.receiver import HttpSink
from hasthook.store import Store

BIN = Path(sys.executable).parent
HOOK = str(BIN / "hasthook-exec")
CLI = str(BIN / "hasthook")
YEAR = 365 * 86400.0
KINDS = [("connect", "info"), ("disconnect", "warning"), ("syncstart", "info"),
         ("syncdone", "info"), ("syncintr", "warning"), ("role", "info")]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def config(path: Path, state: Path, http: HttpSink, notify: bool, marker: str = "") -> dict:
    path.write_text(yaml.safe_dump({
        "settings": {"state_dir": str(state), "hastctl": "/nonexistent", "hostname": "bench",
                     "syslog": {"socket": "/nonexistent"}, "group_wait": "2s",
                     "retention": "1000d"},
        "channels": {"hooks": f"json://{http.base}/j", "am": {"alertmanager":
                                                            f"http://{http.base}/am"}},
        "rules": [{"name": f"all{marker}", "match": {"event": "*"},
                   "actions": [{"notify": "hooks"}] if notify else []}],
    }))
    return {**os.environ, "HASTHOOK_CONFIG": str(path)}


def fill(state: Path, n: int) -> None:
    """n events over 100 resources and two years, as a flapping fleet makes them."""
    rnd = random.Random(1)
    store = Store(str(state))
    t0 = time.time() - 2 * YEAR
    with store.transaction() as db:
        for i in range(n):
            kind, sev = KINDS[rnd.randrange(len(KINDS))]
            ev = Event(kind, f"r{i % 100:03d}", "bench", t0 + i * (2 * YEAR / n), severity=sev,
                       role="primary", status="complete", dirty=0)
            if kind == "role":
                ev.old_role, ev.new_role = "secondary", "primary"
            store.record(ev, db)
    store.close()


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of a command."""
    walls, cpus = [], []
    for _ in range(runs):
        c0, t0 = children_cpu(), time.perf_counter()
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        walls.append(time.perf_counter() - t0)
        cpus.append(children_cpu() - c0)
    return statistics.median(walls), statistics.median(cpus)


READS = [["status"], ["history", "--limit", "100"], ["history", "--resource", "r042",
                                                      "--limit", "100"],
         ["history", "--event", "syncintr", "--since", "7d"], ["queue"], ["metrics"],
         ["test", "disconnect", "r042"], ["silence", "list"], ["flush", "-q"]]


def burst(env: dict[str, str], n: int, word: str) -> float:
    """CPU of n hooks started at once, all of them."""
    c0 = children_cpu()
    procs = [subprocess.Popen([HOOK, word, f"b{i:03d}"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(n)]
    for p in procs:
        p.wait()
    return children_cpu() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--burst", type=int, default=100)
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hasthook-scale-") as d, HttpSink() as http:
        tmp = Path(d)
        empty, big = tmp / "empty", tmp / "big"
        env_e = config(tmp / "empty.yaml", empty, http, notify=False)
        env_b = config(tmp / "big.yaml", big, http, notify=False)
        t0 = time.monotonic()
        fill(big, a.events)
        print(f"{a.events} events written in {time.monotonic() - t0:.0f} s, "
              f"{(big / 'hasthook.db').stat().st_size / 2**20:.0f} MB", flush=True)
        for env in (env_e, env_b):
            subprocess.run([HOOK, "connect", "warm"], env=env, check=True)  # caches
        for argv in READS:
            e, b = timed([CLI, *argv], env_e, a.runs), timed([CLI, *argv], env_b, a.runs)
            rows.append((f"`hasthook {' '.join(argv)}`: wall", f"{b[0] * 1000:.0f} ms",
                         f"empty history {e[0] * 1000:.0f} ms"))
        he, hb = (timed([HOOK, "connect", "r001"], env, a.runs * 2) for env in (env_e, env_b))
        rows.append(("one hook: CPU (wall)", f"{hb[1] * 1000:.0f} ms ({hb[0] * 1000:.0f} ms)",
                     f"empty history {he[1] * 1000:.0f} ms ({he[0] * 1000:.0f} ms); "
                     f"{hb[1] / he[1]:.2f}x"))

        quiet_env = config(tmp / "quiet.yaml", tmp / "quiet", http, notify=False)
        loud_env = config(tmp / "loud.yaml", tmp / "loud", http, notify=True)
        for env in (quiet_env, loud_env):
            subprocess.run([HOOK, "syncdone", "warm"], env=env, check=True)
        wait_for(lambda: len(http.received("/j")) >= 1, 30, "the warm-up message")
        before = len(http.received("/j"))
        quiet = burst(quiet_env, a.burst, "disconnect")
        loud = burst(loud_env, a.burst, "disconnect")
        subprocess.run([CLI, "flush", "-q"], env=loud_env, check=False)
        got = len(http.received("/j")) - before
        rows.append((f"{a.burst} notifying hooks at once: CPU, all hooks",
                     f"{loud:.2f} s ({got} messages)",
                     f"the same burst sending nothing {quiet:.2f} s; {loud / quiet:.2f}x"))

        edit_env = config(tmp / "edit.yaml", tmp / "edit", http, notify=False)
        subprocess.run([HOOK, "connect", "warm"], env=edit_env, check=True)
        warm = burst(edit_env, a.burst, "connect")
        config(tmp / "edit.yaml", tmp / "edit", http, notify=False, marker="-edited")
        first = burst(edit_env, a.burst, "connect")
        rows.append((f"first {a.burst} hooks after a rules edit: CPU, all hooks",
                     f"{first:.2f} s", f"{a.burst} hooks on the cached file {warm:.2f} s; "
                     f"{first / warm:.2f}x"))
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| measure | hasthook | baseline, same run |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
