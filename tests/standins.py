"""Recording stand-ins for fsck, mount, umount, zpool and service.

Each is a small script that appends its argv as one JSON line to calls.jsonl
(one file for all of them, so the order across programs is kept) and keeps
just enough state to answer the queries failover asks (`mount -p`,
`zpool list -H -o name POOL`, `service NAME onestatus`). They refuse what the
real programs refuse: mounting twice, fsck of a mounted filesystem, importing
a pool in use by another host without -f, starting a running service. A
`fail/NAME` file makes NAME fail: {"code": 8, "match": "onestart", "message": "..."}.

Pool labels live in a file that several nodes can share, so one node can
crash with its pool imported and the other must import it with -f.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAMES = ("fsck", "mount", "umount", "zpool", "service")

SCRIPT = r'''#!{python}
import json, os, sys
STATE = {state!r}
LABELS = {labels!r}
HOST = {host!r}
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(os.path.join(STATE, "calls.jsonl"), "a") as f:
    f.write(json.dumps([name] + args) + "\n")

def load(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default

def save(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)

def die(msg, code=1):
    print(msg, file=sys.stderr)
    sys.exit(code)

fail = load(os.path.join(STATE, "fail", name), None)
if fail is not None and fail.get("match", "") in " ".join(args):
    die(fail.get("message", name + ": told to fail"), fail.get("code", 1))

sp = os.path.join(STATE, "state.json")
st = load(sp, {{"mounts": [], "imported": [], "running": []}})
labels = load(LABELS, {{}})

if name == "mount":
    if args == ["-p"]:
        for dev, mp in st["mounts"]:
            print(f"{{dev}}\t\t{{mp}}\tufs\trw,noatime\t2 2")
        sys.exit(0)
    assert args[:2] == ["-o", "noatime"] and len(args) == 4, args
    dev, mp = args[2], args[3]
    if not os.path.exists(dev):
        die(f"mount: {{dev}}: No such file or directory")
    if any(m == mp for _, m in st["mounts"]):
        die(f"mount: {{dev}}: Device busy")
    st["mounts"].append([dev, mp])
elif name == "umount":
    [mp] = args
    if not any(m == mp for _, m in st["mounts"]):
        die(f"umount: {{mp}}: not a file system root directory")
    st["mounts"] = [x for x in st["mounts"] if x[1] != mp]
elif name == "fsck":
    assert args[:3] == ["-y", "-t", "ufs"] and len(args) == 4, args
    dev = args[3]
    if not os.path.exists(dev):
        die(f"fsck: Could not determine filesystem type of {{dev}}", 8)
    if any(d == dev for d, _ in st["mounts"]):
        die(f"** {{dev}} (NO WRITE)\nfsck_ufs: {{dev}}: IS MOUNTED, CANNOT CONTINUE", 8)
    print(f"** {{dev}}\n** Phase 1 - Check Blocks and Sizes\n2 files, 2 used, 1 free")
elif name == "zpool":
    if args[:4] == ["list", "-H", "-o", "name"]:
        pool = args[4]
        if pool not in st["imported"]:
            die(f"cannot open '{{pool}}': no such pool")
        print(pool)
        sys.exit(0)
    if args[0] == "import":
        force = "-f" in args
        d = args[args.index("-d") + 1]
        pool = args[-1]
        label = labels.get(pool)
        if label is None or not all(os.path.exists(os.path.join(d, p))
                                    for p in label["devices"]):
            die(f"cannot import '{{pool}}': no such pool available")
        if pool in st["imported"]:
            die(f"cannot import '{{pool}}': a pool with that name already exists")
        if label.get("in_use_by") not in (None, HOST) and not force:
            die(f"cannot import '{{pool}}': pool was previously in use from another system.\n"
                f"Last accessed by {{label['in_use_by']}}\n"
                "The pool can be imported, use 'zpool import -f' to import the pool.")
        label["in_use_by"] = HOST
        st["imported"].append(pool)
    elif args[0] == "export":
        pool = args[1]
        if pool not in st["imported"]:
            die(f"cannot open '{{pool}}': no such pool")
        st["imported"].remove(pool)
        labels[pool]["in_use_by"] = None
    else:
        die(f"zpool stand-in: unexpected {{args}}", 2)
    save(LABELS, labels)
elif name == "service":
    svc, verb = args
    running = svc in st["running"]
    if verb == "onestatus":
        if running:
            print(f"{{svc}} is running as pid 4242.")
            sys.exit(0)
        die(f"{{svc}} is not running.")
    if verb == "onestart":
        if running:
            die(f"{{svc}} already running? (pid=4242).")
        st["running"].append(svc)
        print(f"Starting {{svc}}.")
    elif verb == "onestop":
        if not running:
            die(f"{{svc}} not running? (check /var/run/{{svc}}.pid).")
        st["running"].remove(svc)
        print(f"Stopping {{svc}}.")
    else:
        die(f"service stand-in: unexpected {{args}}", 2)
save(sp, st)
'''


class Standins:
    """One node's stand-ins: paths for settings.commands, their calls and their state."""

    def __init__(self, root: Path, host: str = "host1", labels: Path | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "fail").mkdir(exist_ok=True)
        self.labels = Path(labels) if labels else self.root / "labels.json"
        self.paths = {}
        for name in NAMES:
            p = self.root / name
            p.write_text(SCRIPT.format(python=sys.executable, state=str(self.root),
                                       labels=str(self.labels), host=host))
            p.chmod(0o755)
            self.paths[name] = str(p)

    @property
    def commands(self) -> dict[str, str]:
        return dict(self.paths)

    def calls(self, queries: bool = False) -> list[list[str]]:
        """Every recorded argv, argv[0] as the short name; without the read-only queries."""
        f = self.root / "calls.jsonl"
        out = [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []
        if not queries:
            out = [c for c in out if not _is_query(c)]
        return out

    def clear_calls(self) -> None:
        (self.root / "calls.jsonl").unlink(missing_ok=True)

    def fail(self, name: str, code: int = 1, match: str = "", message: str = "") -> None:
        (self.root / "fail" / name).write_text(json.dumps(
            {"code": code, "match": match, "message": message or f"{name}: told to fail"}))

    def unfail(self, name: str) -> None:
        (self.root / "fail" / name).unlink(missing_ok=True)

    def state(self) -> dict:
        f = self.root / "state.json"
        return json.loads(f.read_text()) if f.exists() else {
            "mounts": [], "imported": [], "running": []}

    def add_pool(self, pool: str, *devices: str) -> None:
        """A pool label on these provider names, exported (as after `zpool create; export`)."""
        labels = json.loads(self.labels.read_text()) if self.labels.exists() else {}
        labels[pool] = {"devices": list(devices), "in_use_by": None}
        self.labels.write_text(json.dumps(labels))

    def pool_label(self, pool: str) -> dict:
        return json.loads(self.labels.read_text())[pool]


def _is_query(argv: list[str]) -> bool:
    return (argv[1:] == ["-p"] and argv[0] == "mount"
            or argv[0] == "zpool" and argv[1:2] == ["list"]
            or argv[0] == "service" and argv[-1] == "onestatus")
