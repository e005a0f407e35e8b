#!/usr/bin/env python3
"""Two installs of hasthook-exec, one quiet event each, interleaved in random order.

    python bench/ab.py OLD_VENV NEW_VENV [--rounds 150]

For a before/after figure on a busy machine: both hooks meet the same load, as
each round runs one of each (and `python -c pass`) in a random order. Each has
its own state dir and the same rules (match everything, act on nothing);
hastctl is a missing binary. Prints the median and fastest CPU (user + system)
of each. Linux only; not part of the test suite.
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

import yaml


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("venvs", nargs=2, metavar="VENV")
    ap.add_argument("--rounds", type=int, default=150)
    a = ap.parse_args()
    runs: dict[str, tuple[list[str], dict[str, str]]] = {}
    for venv in a.venvs:
        d = tempfile.mkdtemp(prefix="hasthook-ab-")
        cfg = os.path.join(d, "rules.yaml")
        with open(cfg, "w") as f:
            yaml.safe_dump({"settings": {"state_dir": f"{d}/state", "hastctl": "/nonexistent",
                                         "hostname": "bench", "syslog": {"socket": "/nonexistent"}},
                            "rules": [{"name": "all", "match": {"event": "*"}, "actions": []}]}, f)
        os.chmod(cfg, 0o600)
        runs[venv] = ([os.path.join(venv, "bin", "hasthook-exec"), "disconnect"],
                      {**os.environ, "HASTHOOK_CONFIG": cfg})
    runs["python -c pass"] = ([sys.executable, "-c", "pass"], dict(os.environ))
    took: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(a.rounds):
        for name in random.sample(list(runs), len(runs)):
            argv, env = runs[name]
            c0 = cpu()
            subprocess.run([*argv, f"r{i % 10}"] if "hasthook" in argv[0] else argv, env=env,
                           stdin=subprocess.DEVNULL, check=False)
            took[name].append(cpu() - c0)
    print(f"{a.rounds} rounds, load average {os.getloadavg()[0]:.1f} at the end")
    for name, t in took.items():
        print(f"{name}: CPU median {statistics.median(t) * 1000:.1f} ms, "
              f"fastest {min(t) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
