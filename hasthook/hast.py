"""The one place that runs hastctl, and pure parsers for what it prints.

The parsers follow sbin/hastctl/hastctl.c: `list` prints a block per
resource (`NAME:` then two-space indented `key: value` lines, `status:` and
`workerpid:` only when a worker exists, `  error: N` instead of the block for
a resource hastd does not know); `status` prints a tab-separated table;
`dump` prints `resource: NAME` blocks.
"""

from __future__ import annotations

import re

from . import proc
from .proc import Result
from .record import Record, fresh

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from .config.settings import Settings
    from .event import Event

    T = TypeVar("T")

_INT_KEYS = ("extentsize", "keepdirty", "workerpid", "dirty")
_SIZE_RE = re.compile(r"^(\d+)(?:\s+\(.*\))?$")


class Resource(Record):
    """One resource as `hastctl list` shows it; None where hastctl did not say."""

    name: str
    error: int | None = None
    role: str | None = None
    provname: str | None = None
    localpath: str | None = None
    extentsize: int | None = None
    keepdirty: int | None = None
    remoteaddr: str | None = None
    sourceaddr: str | None = None
    replication: str | None = None
    status: str | None = None
    workerpid: int | None = None
    dirty: int | None = None
    statistics: dict[str, int] = fresh(dict)
    errors: dict[str, int] = fresh(dict)
    queues: dict[str, int] = fresh(dict)


class ParseError(ValueError):
    """hastctl printed something that is not hastctl output."""


def _int(value: str) -> int:
    m = _SIZE_RE.match(value.strip())
    if not m:
        raise ParseError(f"not a number: {value!r}")
    return int(m.group(1))


def _pairs(text: str) -> dict[str, int]:
    """`read: 0, write: 1` -> {"read": 0, "write": 1}."""
    out = {}
    for part in text.split(","):
        k, sep, v = part.partition(":")
        if not sep:
            raise ParseError(f"not a key: value list: {text!r}")
        out[k.strip()] = _int(v)
    return out


def parse_list(text: str) -> dict[str, Resource]:
    """Parse `hastctl list` (or FreeBSD 8/9 `hastctl status`) output."""
    resources: dict[str, Resource] = {}
    cur: Resource | None = None
    in_stats = False
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            if not line.endswith(":") or " " in line[:-1] or len(line) < 2:
                raise ParseError(f"unexpected line: {line!r}")
            cur = Resource(line[:-1])
            resources[cur.name] = cur
            in_stats = False
            continue
        if cur is None:
            raise ParseError(f"line before any resource: {line!r}")
        key, sep, value = line.strip().partition(":")
        if not sep:
            raise ParseError(f"unexpected line: {line!r}")
        value = value.strip()
        if indent == 2:
            in_stats = key == "statistics"
            if in_stats:
                continue
            if key == "error":
                cur.error = _int(value)
            elif key in _INT_KEYS:
                setattr(cur, key, _int(value))
            elif key in ("role", "provname", "localpath", "remoteaddr", "sourceaddr",
                         "replication", "status"):
                setattr(cur, key, value)
            # Keys a newer hastctl adds are ignored, not fatal.
        elif in_stats:
            if key == "local errors":
                cur.errors = _pairs(value)
            elif key == "queues":
                cur.queues = _pairs(value)
            else:
                cur.statistics[key] = _int(value)
        else:
            raise ParseError(f"unexpected indentation: {line!r}")
    return resources


class StatusLine(Record):
    name: str
    status: str | None = None
    role: str | None = None
    localpath: str | None = None
    remoteaddr: str | None = None
    error: int | None = None


def parse_status(text: str) -> dict[str, StatusLine]:
    """Parse the FreeBSD 10+ `hastctl status` table."""
    out: dict[str, StatusLine] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return out
    if not lines[0].startswith("Name\tStatus"):
        raise ParseError(f"missing header: {lines[0]!r}")
    for line in lines[1:]:
        name, sep, rest = line.partition("\t")
        if not sep:
            raise ParseError(f"unexpected line: {line!r}")
        if rest.startswith("ERR") and rest[3:].strip().isdigit():
            out[name] = StatusLine(name, error=int(rest[3:]))
            continue
        # %-9s status, %-15s role, then localpath TAB remoteaddr.
        status, role, comp = rest[:9].strip(), rest[9:24].strip(), rest[24:]
        if len(rest) < 24 and rest.split():
            # Over-long values push the columns; fall back to whitespace.
            parts = rest.split(None, 2)
            status, role = parts[0], parts[1] if len(parts) > 1 else ""
            comp = parts[2] if len(parts) > 2 else ""
        localpath, _, remote = comp.partition("\t")
        out[name] = StatusLine(
            name,
            status=None if status == "-" else status,
            role=role or None,
            localpath=localpath.strip() or None,
            remoteaddr=remote.strip() or None,
        )
    return out


class Metadata(Record):
    name: str
    datasize: int | None = None
    extentsize: int | None = None
    keepdirty: int | None = None
    localoff: int | None = None
    resuid: int | None = None
    localcnt: int | None = None
    remotecnt: int | None = None
    prevrole: str | None = None


def parse_dump(text: str) -> dict[str, Metadata]:
    """Parse `hastctl dump`; the resource names come in hast.conf order."""
    out: dict[str, Metadata] = {}
    cur: Metadata | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            raise ParseError(f"unexpected line: {line!r}")
        value = value.strip()
        if key == "resource":
            cur = Metadata(value)
            out[value] = cur
        elif cur is None:
            raise ParseError(f"line before any resource: {line!r}")
        elif key == "prevrole":
            cur.prevrole = value
        elif hasattr(cur, key):
            setattr(cur, key, _int(value))
    return out


class Hastctl:
    """Runs hastctl with a time limit; never raises for a missing or hung binary."""

    def __init__(self, path: str, timeout: float, config: str | None = None):
        self.path = path
        self.timeout = timeout
        self.config = config

    @classmethod
    def from_settings(cls, settings: Settings) -> Hastctl:
        return cls(settings.hastctl, settings.hastctl_timeout)

    def run(self, *args: str, timeout: float | None = None) -> Result:
        argv = [self.path, args[0]]
        if self.config:
            argv += ["-c", self.config]
        if any(a.startswith("-") for a in args[1:]):
            # hast.conf allows a resource named `-c`; hastctl's getopt(3) would take it
            # for an option. `--` right after the command ends the options (the role
            # word comes after it); left out otherwise, so the argv is the article's.
            argv.append("--")
        argv += list(args[1:])
        return proc.run(argv, self.timeout if timeout is None else timeout)

    def list(self, *names: str) -> tuple[dict[str, Resource], Result]:
        """Parsed `hastctl list`; an empty dict when it failed or printed garbage."""
        return _parsed(self.run("list", *names), parse_list)

    def dump(self, *names: str) -> tuple[dict[str, Metadata], Result]:
        return _parsed(self.run("dump", *names), parse_dump)

    def status(self, *names: str) -> tuple[dict[str, StatusLine], Result]:
        return _parsed(self.run("status", *names), parse_status)

    def role(self, role: str, *names: str) -> Result:
        return self.run("role", role, *names)

    def create(self, *names: str) -> Result:
        return self.run("create", *names)


def _parsed(r: Result, parse: Callable[[str], dict[str, T]]) -> tuple[dict[str, T], Result]:
    try:
        return parse(r.stdout), r
    except ParseError as e:
        return {}, r.replace(error=f"unparseable output: {e}")


def enrich(ev: Event, ctl: Hastctl) -> str | None:
    """Add the local resource's state from `hastctl list RES` to the event; returns why
    the state is unknown, or None."""
    resources, result = ctl.list(ev.resource)
    res = resources.get(ev.resource)
    if res is not None and res.error is not None:
        return f"hastctl: error {res.error} for {ev.resource}"
    if res is None:
        return result.why() if not result.ok else (result.last_line() or "no output")
    ev.role, ev.status, ev.dirty = res.role, res.status, res.dirty
    ev.provname, ev.remoteaddr, ev.replication = res.provname, res.remoteaddr, res.replication
    ev.errors = res.errors or None
    return None
