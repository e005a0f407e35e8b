"""A pgrep(1) for one simulated node: the other nodes' hastd processes are hidden.

Two SimNodes on one machine both run `hastd: r0 (secondary)`; a tool under test asking
pgrep on "its" node must not see its peer's worker. Each process the simulator starts
carries HASTHOOK_SIM_PROC=<node dir> in its environment (hooks: HASTHOOK_SIM_NODE);
this pgrep drops processes marked for another node and otherwise behaves like
FreeBSD's (Linux /proc needed): -f (match the full argument list), -x (whole-string
match), -l (long output), -q (quiet); extended regular expressions; itself and its
ancestors are never listed.
Exit status 0 when something matched, 1 when nothing did, 2 on a usage error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

MARK = b"HASTHOOK_SIM_PROC="  # on the simulator's stand-in processes
NODE = b"HASTHOOK_SIM_NODE="  # in the environment of hooks (and what they start)
USAGE = "usage: pgrep [-flqx] pattern\n"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        stat = _read(f"/proc/{pid}/stat")
        if stat is None:
            break
        pid = int(stat.rsplit(b")", 1)[1].split()[1])
    return pids


def processes(node_dir: str) -> list[tuple[int, str, str]]:
    """(pid, name, argument list) of live processes this node may see."""
    mine = os.fsencode(node_dir)
    out = []
    skip = _ancestors()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        stat = _read(f"/proc/{entry}/stat")
        raw = _read(f"/proc/{entry}/cmdline")
        if not stat or raw is None or stat.rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
            continue
        env = (_read(f"/proc/{entry}/environ") or b"").split(b"\0")
        marks = [v[len(MARK):] for v in env if v.startswith(MARK)]
        marks = marks or [v[len(NODE):] for v in env if v.startswith(NODE)]
        if marks and marks[0] != mine:
            continue
        name = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        args = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        out.append((int(entry), name, args))
    return sorted(out)


def main(argv: Sequence[str] | None = None, node_dir: str | None = None) -> int:
    """Run pgrep (argv without the program name) as node node_dir sees the system."""
    args = list(sys.argv[1:] if argv is None else argv)
    node = node_dir or os.environ.get("HASTHOOK_SIM_NODE", "")
    flags = ""
    while args and args[0].startswith("-") and len(args[0]) > 1:
        opt = args.pop(0)
        if opt == "--":
            break
        if set(opt[1:]) - set("flqx"):
            sys.stderr.write(USAGE)
            return 2
        flags += opt[1:]
    if len(args) != 1:
        sys.stderr.write(USAGE)
        return 2
    try:
        regex = re.compile(args[0])
    except re.error as e:
        sys.stderr.write(f"pgrep: Cannot compile regular expression `{args[0]}' ({e})\n")
        return 2
    found = []
    for pid, name, cmd in processes(node):
        subject = cmd if "f" in flags else name
        if (regex.fullmatch if "x" in flags else regex.search)(subject):
            found.append((pid, cmd if "f" in flags else name))
    if "q" not in flags:
        sys.stdout.write("".join(f"{pid} {what}\n" if "l" in flags else f"{pid}\n"
                                 for pid, what in found))
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
