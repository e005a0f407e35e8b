"""A fake /sbin/hastctl answering for one simulated node, byte for byte like FreeBSD's.

Output, messages and exit statuses follow sbin/hastctl/hastctl.c, sbin/hastd/control.c
and pjdlog's stderr format (`[ERROR] ...`, `[WARNING] [NAME] ...`). `dump` and `create`
work without hastd; `role`, `list` and `status` need it. `create` takes no lock: on a
resource in use it rewrites the metadata under the running worker (see core.py). A worker
that cannot answer fails `list`/`status` as a whole (exit 70, nothing on stdout); a
metadata read error fails `dump` with exit 255. The node directory comes from the
wrapper script (SimNode.hastctl_path) or HASTHOOK_SIM_NODE.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Sequence

from hasthook.sim.core import (
    CONTROLADDR,
    ERROR_KEYS,
    HAST_EXTENTSIZE,
    HAST_KEEPDIRTY,
    QUEUE_KEYS,
    ROLES,
    SECTORSIZE,
    STAT_KEYS,
    NodeStore,
    fresh_meta,
    stop_pid,
    worker_gone,
    worker_title,
)
from hasthook.units import humanize

TYPE_CHECKING = False  # typing costs a fifth of the startup of a hastctl call
if TYPE_CHECKING:
    from typing import Any

EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_SOFTWARE, EX_OSERR, EX_CONFIG = 64, 65, 66, 70, 71, 78
DUMP_FAILED = 255  # control_dump(): exit(-1) when metadata_read() fails
EHAST_NOENTRY = 1

USAGE = (
    "usage: hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty]\n"
    "\t\t[-m mediasize] name ...\n"
    "       hastctl role [-d] [-c config] <init | primary | secondary> all | name ...\n"
    "       hastctl list [-d] [-c config] [all | name ...]\n"
    "       hastctl status [-d] [-c config] [all | name ...]\n"
    "       hastctl dump [-d] [-c config] [all | name ...]\n"
)
OPTSTR = {"create": "c:de:k:m:h", "role": "c:dh", "list": "c:dh", "status": "c:dh",
          "dump": "c:dh"}
_NUMBER = re.compile(r"^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kmgtpeKMGTPE]?)[bB]?$")


class _Exit(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _Out:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []


def _usage(out: _Out) -> _Exit:
    out.err.append(USAGE)
    return _Exit(EX_USAGE)


def _getopt(args: list[str], optstr: str, out: _Out) -> tuple[list[tuple[str, str]], list[str]]:
    """getopt(3) as FreeBSD's libc does it: stops at the first operand, no permuting."""
    opts: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        j = 1
        while j < len(a):
            ch = a[j]
            k = optstr.find(ch)
            if ch == ":" or k < 0:
                out.err.append(f"hastctl: illegal option -- {ch}\n")
                raise _usage(out)
            if optstr[k + 1:k + 2] == ":":
                if j + 1 < len(a):
                    opts.append((ch, a[j + 1:]))
                elif i + 1 < len(args):
                    i += 1
                    opts.append((ch, args[i]))
                else:
                    out.err.append(f"hastctl: option requires an argument -- {ch}\n")
                    raise _usage(out)
                break
            opts.append((ch, ""))
            j += 1
        i += 1
    return opts, args[i:]


def expand_number(text: str) -> int | None:
    """expand_number(3): a number with an optional k/m/g/t/p/e (powers of 1024) suffix."""
    m = _NUMBER.match(text)
    if not m:
        return None
    return int(m.group(1), 0) * 1024 ** " kmgtpe".index(m.group(2).lower() or " ")


def _names(st: dict[str, Any], args: list[str]) -> list[str]:
    """hastd's control_handle(): resource0 == "all" means every configured resource."""
    if not args or args[0] == "all":
        return list(st["config"]["order"])
    return args


def worker_status(rs: dict[str, Any]) -> str:
    """The status hastd's worker reports: complete or degraded; "-" when none runs."""
    if not rs["workerpid"]:
        return "-"
    return str(rs["status"] or ("complete" if rs["connected"] else "degraded"))


def dirty_bytes(rs: dict[str, Any]) -> int:
    """`dirty:` of hastctl list: only a running primary's worker counts dirty extents."""
    if not rs["workerpid"] or rs["role"] != "primary":
        return 0
    return int(rs["dirty_extents"] * rs["meta"]["extentsize"])


def render_list_block(spec: dict[str, Any], rs: dict[str, Any]) -> str:
    """control_list() for one resource; worker fields are zero when no worker exists."""
    worker = bool(rs["workerpid"])
    primary = worker and rs["role"] == "primary"
    ext = rs["meta"]["extentsize"] if worker else 0
    dirty = dirty_bytes(rs)
    stats = rs["stats"] if worker else dict.fromkeys(STAT_KEYS, 0)
    errs = rs["errors"] if worker else dict.fromkeys(ERROR_KEYS, 0)
    queues = rs["queues"] if worker else dict.fromkeys(QUEUE_KEYS, 0)
    lines = [
        f"{spec['name']}:",
        f"  role: {rs['role']}",
        f"  provname: {spec['provname']}",
        f"  localpath: {spec['localpath']}",
        f"  extentsize: {ext} ({humanize(ext)})",
        f"  keepdirty: {rs['meta']['keepdirty'] if primary else 0}",
        f"  remoteaddr: {spec['remoteaddr']}",
    ]
    if spec.get("sourceaddr"):
        lines.append(f"  sourceaddr: {spec['sourceaddr']}")
    lines.append(f"  replication: {spec['replication']}")
    if worker:
        lines.append(f"  status: {worker_status(rs)}")
        lines.append(f"  workerpid: {rs['workerpid']}")
    lines.append(f"  dirty: {dirty} ({humanize(dirty)})")
    lines.append("  statistics:")
    lines += [f"    {k}: {stats[k]}" for k in STAT_KEYS]
    lines.append("    local errors: " + ", ".join(f"{k}: {errs[k]}" for k in ERROR_KEYS))
    lines.append("    queues: " + ", ".join(f"{k}: {queues[k]}" for k in QUEUE_KEYS))
    return "\n".join(lines) + "\n"


def render_status_line(spec: dict[str, Any], rs: dict[str, Any]) -> str:
    """control_status(): name, %-9s status (or -), %-15s role, localpath TAB remoteaddr."""
    status = worker_status(rs)
    return f"{spec['name']}\t{status:<9}{rs['role']:<15}{spec['localpath']}\t{spec['remoteaddr']}\n"


def render_dump_block(name: str, meta: dict[str, Any]) -> str:
    """dump_one(): the metadata block, four-space indented."""
    return (
        f"resource: {name}\n"
        f"    datasize: {meta['datasize']} ({humanize(meta['datasize'])})\n"
        f"    extentsize: {meta['extentsize']} ({humanize(meta['extentsize'])})\n"
        f"    keepdirty: {meta['keepdirty']}\n"
        f"    localoff: {meta['localoff']}\n"
        f"    resuid: {meta['resuid']}\n"
        f"    localcnt: {meta['localcnt']}\n"
        f"    remotecnt: {meta['remotecnt']}\n"
        f"    prevrole: {meta['prevrole']}\n"
    )


def _connect(store: NodeStore, st: dict[str, Any], out: _Out) -> None:
    """proto_connect() to the control socket; fails with EX_OSERR when hastd is down."""
    if not store.hastd_up(st):
        err = st["hastd"].get("down_error") or "Connection refused"
        out.err.append(f"[ERROR] Unable to connect to hastd via {CONTROLADDR}: {err}.\n")
        raise _Exit(EX_OSERR)


def _top_level_error(st: dict[str, Any], names: list[str]) -> int:
    """control_status_worker(): a worker that cannot answer sets the reply's top-level
    error; hastctl then prints nothing for any resource."""
    faults = st["faults"].get("status", {})
    for name in names:
        rs = st["resources"].get(name)
        error = faults.get(name, faults.get("*"))
        if rs is not None and rs["workerpid"] and error:
            return int(error)
    return 0


def _cmd_list(store: NodeStore, args: list[str], out: _Out, table: bool) -> int:
    with store.locked(write=False) as st:
        _connect(store, st, out)
        error = _top_level_error(st, _names(st, args))
        if error:
            out.err.append(f"[ERROR] Error {error} received from hastd.\n")
            return EX_SOFTWARE
        ret = 0
        header = False
        for name in _names(st, args):
            if table and not header:
                out.out.append("Name\tStatus\t Role\t\tComponents\n")
                header = True
            if name not in st["resources"]:
                ret = ret or EHAST_NOENTRY
                out.out.append(f"{name}\tERR{EHAST_NOENTRY}\n" if table
                               else f"{name}:\n  error: {EHAST_NOENTRY}\n")
                continue
            spec, rs = st["config"]["resources"][name], st["resources"][name]
            out.out.append(render_status_line(spec, rs) if table
                           else render_list_block(spec, rs))
    return ret


def _cmd_dump(store: NodeStore, args: list[str], out: _Out) -> int:
    """control_dump(): the on-disk metadata; a failed metadata_read() is exit(-1), its
    message without the [NAME] prefix (dump_one() sets none)."""
    st = store.read()
    ec = 0
    names = st["config"]["order"] if not args or args == ["all"] else args
    faults = st["faults"].get("dump", {})
    for name in names:
        if name not in st["resources"]:
            out.err.append(f"[ERROR] Unknown resource {name}.\n")
            ec = ec or EX_DATAERR
            continue
        failure = faults.get(name) or faults.get("*")
        if failure:
            path = st["config"]["resources"][name]["localpath"]
            out.err.append(f"[ERROR] Unable to open {path}: {failure}.\n")
            ec = ec or DUMP_FAILED
            continue
        rs = st["resources"][name]
        out.out.append(render_dump_block(name, rs.get("disk_meta") or rs["meta"]))
    return ec


def _cmd_role(store: NodeStore, args: list[str], debug: int, out: _Out) -> int:
    if len(args) < 2 or args[0] not in ROLES:
        raise _usage(out)
    new = args[0]
    with store.locked() as st:
        _connect(store, st, out)
        ret = 0
        for name in _names(st, args[1:]):
            fault = st["faults"]["role"].get(name)
            if name not in st["resources"] or isinstance(fault, int):
                error = EHAST_NOENTRY if name not in st["resources"] else int(fault or 0)
                ret = ret or error
                out.err.append(f"[WARNING] [{name}] Received error {error} from hastd.\n")
                continue
            old = st["resources"][name]["role"]
            if old == new:
                if debug >= 2:
                    out.out.append(f"[DEBUG][2] [{name}] Role unchanged ({old}).\n")
                continue
            store.change_role(st, name, new)
            if fault == "worker-exit" and new == "primary":
                _worker_exits(store, st, name)
            if debug >= 1:
                out.out.append(f"[DEBUG][1] [{name}] Role changed from {old} to {new}.\n")
    return ret


def _worker_exits(store: NodeStore, st: dict[str, Any], name: str) -> None:
    """hastd's child_exit(): a primary worker that fails for good sends the role to init.

    No hook runs for this change; only the log tells.
    """
    rs = st["resources"][name]
    pid = rs["workerpid"]
    stop_pid(pid, worker_title(name, "primary"))
    store.log(f"[ERROR] [{name}] (primary) Worker process exited ungracefully "
              f"(pid={pid}, exitcode={EX_NOINPUT}).")
    store.log(f"[INFO] [{name}] (primary) Changing resource role back to init.")
    rs.update(role="init", workerpid=0, workerrole=None, connected=False)
    worker_gone(rs)
    store.reconcile(st, name)


def _cmd_create(store: NodeStore, args: list[str], opts: dict[str, int], out: _Out) -> int:
    ec = 0
    with store.locked() as st:
        for name in args:
            if name not in st["resources"]:
                out.err.append(f"[ERROR] Unknown resource {name}.\n")
                ec = ec or EX_DATAERR
                continue
            ret = _create_one(st, name, opts, out)
            ec = ec or ret
    return ec


def _create_one(st: dict[str, Any], name: str, opts: dict[str, int], out: _Out) -> int:
    """create_one(): open the local component read-write, then write fresh metadata.

    Nothing is locked and GEOM does not open the provider exclusively, so a running
    worker does not stop it: the metadata goes to disk under the worker, which keeps
    its own copy (and its resource ID) until it stops or writes it back.
    """
    spec, rs = st["config"]["resources"][name], st["resources"][name]
    faults = st["faults"]["create"]
    failure = faults.get(name) or faults.get("*")
    if failure:
        out.err.append(f"[ERROR] [{name}] Unable to open {spec['localpath']}: {failure}.\n")
        return EX_NOINPUT
    mediasize = opts.get("m") or spec["mediasize"]
    if mediasize > spec["mediasize"]:
        out.err.append(f"[ERROR] [{name}] Provided mediasize is larger than provider "
                       f"{spec['localpath']} size.\n")
        return EX_DATAERR
    extentsize = opts.get("e") or HAST_EXTENTSIZE
    if extentsize < SECTORSIZE:
        out.err.append(f"[ERROR] [{name}] Extent size ({extentsize}) is less than sector "
                       f"size ({SECTORSIZE}).\n")
        return EX_DATAERR
    if extentsize % SECTORSIZE:
        out.err.append(f"[ERROR] [{name}] Extent size ({extentsize}) is not multiple of "
                       f"sector size ({SECTORSIZE}).\n")
        return EX_DATAERR
    meta = fresh_meta(mediasize, extentsize, opts.get("k") or HAST_KEEPDIRTY)
    meta["generation"] = (rs.get("disk_meta") or rs["meta"])["generation"] + 1
    if rs["workerpid"]:
        rs["disk_meta"] = meta
    else:
        rs["meta"] = meta
        rs["dirty_extents"] = 0  # the activemap is zeroed too
    return 0


def _run(store: NodeStore, args: list[str], out: _Out) -> int:
    if not args or args[0] not in OPTSTR:
        raise _usage(out)
    cmd = args[0]
    opts, rest = _getopt(args[1:], OPTSTR[cmd], out)
    debug = 0
    sizes: dict[str, int] = {}
    for ch, val in opts:
        if ch == "d":
            debug += 1
        elif ch in "ekm":
            num = expand_number(val)
            if num is None:
                what = {"e": "extentsize", "k": "keepdirty", "m": "mediasize"}[ch]
                out.err.append(f"hastctl: Invalid {what}\n")
                raise _Exit(EX_USAGE)
            sizes[ch] = num
        elif ch == "h":
            raise _usage(out)
    if cmd in ("create", "role") and not rest:
        raise _usage(out)

    _hold(store, cmd)
    faults = store.read()["faults"]
    hang = faults["hang"].get(cmd, faults["hang"].get("*"))
    if hang:
        time.sleep(float(hang))
    garbage = faults["garbage"].get(cmd, faults["garbage"].get("*"))
    if garbage is not None:
        out.out.append(garbage)
        return 0

    if cmd == "list":
        return _cmd_list(store, rest, out, table=False)
    if cmd == "status":
        return _cmd_list(store, rest, out, table=True)
    if cmd == "dump":
        return _cmd_dump(store, rest, out)
    if cmd == "role":
        return _cmd_role(store, rest, debug, out)
    return _cmd_create(store, rest, sizes, out)


def _promote_after(store: NodeStore, args: list[str]) -> None:
    """SimNode.promote_after: after the nth such call, the resource turns primary."""
    with store.locked() as st:
        faults = st["faults"].get("promote") or {}
        hit = faults.get(" ".join(args))
        if hit is None:
            return
        if hit["skip"]:
            hit["skip"] -= 1
            return
        del faults[" ".join(args)]
        if st["resources"].get(hit["res"]) is not None and store.hastd_up(st):
            store.change_role(st, hit["res"], "primary")


def _hold(store: NodeStore, cmd: str, limit: float = 300.0) -> None:
    """SimNode.hold(): the first call after it waits until let_go() (or `limit`)."""
    with store.locked() as st:
        holds = st["faults"].setdefault("hold", {})
        if holds.get(cmd) != "armed":
            return
        holds[cmd] = "holding"
    deadline = time.monotonic() + limit
    while store.read()["faults"]["hold"].get(cmd) == "holding" and time.monotonic() < deadline:
        time.sleep(0.01)


def main(argv: Sequence[str] | None = None, node_dir: str | os.PathLike[str] | None = None,
         ) -> int:
    """Run one hastctl command (argv without the program name); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = node_dir or os.environ.get("HASTHOOK_SIM_NODE")
    if not path:
        sys.stderr.write("hastctl: no simulated node (set HASTHOOK_SIM_NODE)\n")
        return EX_CONFIG
    store = NodeStore(path)
    store.record_call(args)
    out = _Out()
    try:
        code = _run(store, args, out)
    except _Exit as e:
        code = e.code
    _promote_after(store, args)
    sys.stdout.write("".join(out.out))
    sys.stdout.flush()
    sys.stderr.write("".join(out.err))
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
