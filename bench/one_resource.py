#!/usr/bin/env python3
"""Hooks of one resource forked a moment apart, as hastd forks them: the cost of
keeping their order (hasthook/turns.py), and how many are recorded out of it.

    python bench/one_resource.py OLD_VENV NEW_VENV [--hooks 20] [--gap 0.005] [--rounds 5]

Each round forks --hooks hooks (alternating disconnect and connect on one resource,
--gap seconds apart) with each install in turn, waits for all, and reads the
history: an event whose time (its hook's start) is before the one recorded just
ahead of it was recorded out of order. Before this round an event's time was taken
just before it was recorded, so an old install always shows 0 there: only the
cost columns compare. Prints CPU
(user + system of all hooks), wall (first fork to last exit) and the events out
of order, as medians over the rounds. Rules record only; hastctl is missing.
Linux only; not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def one_round(venv: str, tmp: Path, hooks: int, gap: float) -> tuple[float, float, int]:
    state = tmp / "state"
    cfg = tmp / "rules.yaml"
    cfg.write_text(yaml.safe_dump({
        "settings": {"state_dir": str(state), "hastctl": "/nonexistent",
                     "hostname": "bench", "syslog": {"socket": "/nonexistent"}},
        "rules": [{"name": "all", "match": {"event": "*"}, "actions": []}]}))
    env = {**os.environ, "HASTHOOK_CONFIG": str(cfg)}
    hook = str(Path(venv) / "bin" / "hasthook-exec")
    c0, t0 = cpu(), time.monotonic()
    procs = []
    for i in range(hooks):
        if i:
            time.sleep(gap)
        procs.append(subprocess.Popen(
            [hook, ("disconnect", "connect")[i % 2], "shared1"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    wall, used = time.monotonic() - t0, cpu() - c0
    db = sqlite3.connect(state / "hasthook.db")
    times = [r[0] for r in db.execute("SELECT time FROM events ORDER BY id")]
    db.close()
    out_of_order = sum(1 for a, b in zip(times, times[1:], strict=False) if b < a)
    assert len(times) == hooks, (len(times), hooks)
    return used, wall, out_of_order


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--hooks", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.005)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    res: dict[str, list[tuple[float, float, int]]] = {a.old: [], a.new: []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(a.rounds):
            for venv in (a.old, a.new) if r % 2 else (a.new, a.old):
                tmp = Path(d) / f"{r}-{Path(venv).name}"
                tmp.mkdir()
                res[venv].append(one_round(venv, tmp, a.hooks, a.gap))
    print(f"{a.hooks} hooks of one resource, {a.gap * 1000:g} ms apart, {a.rounds} rounds "
          f"(medians); load average {os.getloadavg()[0]:.1f} at the end")
    for venv, rows in res.items():
        c, w, o = (statistics.median(x) for x in zip(*rows, strict=True))
        print(f"{venv}: CPU {c:.2f} s, wall {w:.2f} s, recorded out of order {o:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
