"""`hasthook status`: every resource at a glance, and an exit status a monitor can use.

The live state comes from `hastctl list` (the one place hastd tells it), the
story from the history: the last event per resource and the alerts no later
event has resolved, and the conditions `hasthook watch` holds active. Exit 1
when a resource is degraded or split-brained, or a condition is active.

Split-brained means an unresolved split-brain in the history while the
resource is not connected now: a split-brain refuses the connection, so a
resource that reads `complete` has got past it even where no resolving event
reached this node's history.
"""

from __future__ import annotations

import time
from typing import Any

from .. import sysexits
from ..config.settings import Settings
from ..errors import HasthookError
from ..event import ENDED_BY
from ..hast import Hastctl
from ..record import Record, fresh
from ..units import format_duration, humanize, iso, plural
from .role import hastd_pid


class StatusError(HasthookError):
    """No status to show (hastd unreachable)."""

    status = sysexits.EX_UNAVAILABLE


class ResourceStatus(Record):
    name: str
    role: str | None = None
    status: str | None = None
    dirty: int | None = None
    dirty_human: str | None = None
    remoteaddr: str | None = None
    replication: str | None = None
    provname: str | None = None
    error: int | None = None
    last_event: dict[str, Any] | None = None
    problems: list[str] = fresh(list)


class Report(Record):
    resources: list[ResourceStatus]
    alerts: list[dict[str, Any]]
    silences: list[dict[str, Any]]
    hastd_pid: int | None = None
    # `hasthook watch`: the conditions it holds active, and when its last pass completed.
    conditions: list[dict[str, Any]] = fresh(list)
    watch_pass: float | None = None

    @property
    def problems(self) -> list[str]:
        return [p for r in self.resources for p in r.problems] + [
            f"{c['resource']}: {c['condition']} (hasthook watch, since {iso(c['since'])})"
            for c in self.conditions]

    @property
    def code(self) -> int:
        return 1 if self.problems else 0


def gather(hastctl: Hastctl, store, settings: Settings,
           now: float | None = None) -> Report:
    """Ask hastd and the history; raise StatusError when hastd cannot be asked."""
    now = time.time() if now is None else now
    listed, r = hastctl.list()
    pid, why_not = hastd_pid(settings.hastd_pidfile)
    if not listed and not r.ok:
        detail = r.last_line() if r.rc is not None and r.last_line() else r.why()
        hint = f"; hastd is not running ({why_not})" if pid is None else ""
        raise StatusError(f"cannot read resource state from hastd: {detail}{hint}")
    alerts = store.unresolved_alerts(ENDED_BY)
    silences = store.active_silences(now)
    resources = []
    for name, res in listed.items():
        st = ResourceStatus(
            name, res.role, res.status, res.dirty,
            humanize(res.dirty) if res.dirty is not None else None,
            res.remoteaddr, res.replication, res.provname, res.error)
        last = store.history(resource=name, limit=1)
        if last:
            e = last[0]
            st.last_event = {k: e.get(k) for k in (
                "id", "time", "event", "severity", "old_role", "new_role", "host")}
        if res.error is not None:
            st.problems.append(f"{name}: hastd reports error {res.error}")
        if res.status == "degraded":
            st.problems.append(f"{name} is degraded (not connected to its peer)")
        split = [a for a in alerts if a["resource"] == name and a["event"] == "split-brain"]
        if split and res.status != "complete":
            a = split[0]
            st.problems.append(f"{name} is split-brained "
                               f"({plural(a['count'], 'split-brain event')} since "
                               f"{iso(a['first'])}, none resolved)")
        resources.append(st)
    return Report(resources, alerts, silences, pid, store.watch_active(),
                  store.watch_last_pass())


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON: times as ISO-8601 UTC."""
    resources = []
    for r in report.resources:
        d = r.as_dict()
        if d["last_event"]:
            d["last_event"] = {**d["last_event"], "time": iso(d["last_event"]["time"])}
        resources.append(d)
    return {
        "ok": report.code == 0,
        "hastd_pid": report.hastd_pid,
        "problems": report.problems,
        "resources": resources,
        "alerts": [{**a, "first": iso(a["first"]), "last": iso(a["last"])}
                   for a in report.alerts],
        "silences": [{**s, "ends": iso(s["ends"]), "created": iso(s["created"])}
                     for s in report.silences],
        "conditions": [{**c, "since": iso(c["since"])} for c in report.conditions],
        "watch_pass": iso(report.watch_pass) if report.watch_pass is not None else None,
    }


def _ago(t: float, now: float) -> str:
    return f"{format_duration(max(0.0, now - t))} ago"


def render(report: Report, now: float | None = None) -> str:
    """A table a person reads in one glance, then alerts, silences and problems."""
    now = time.time() if now is None else now
    head = ("RESOURCE", "ROLE", "STATUS", "DIRTY", "REMOTE", "REPLICATION", "LAST EVENT")
    rows = []
    for r in report.resources:
        last = "-"
        if r.last_event:
            e = r.last_event
            what = e["event"]
            if what == "role" and e.get("new_role"):
                what = f"role {e['old_role']}->{e['new_role']}"
            last = f"{what} {iso(e['time'])} ({_ago(e['time'], now)})"
        rows.append((r.name, r.role or "-", r.status or "-",
                     r.dirty_human or "-", r.remoteaddr or "-", r.replication or "-", last))
    lines = []
    if not rows:
        lines.append("no HAST resources")
    else:
        widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head) - 1)]
        for row in [head, *rows]:
            cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
            lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append("")
    if report.alerts:
        lines.append("Unresolved alerts:")
        for a in report.alerts:
            first, last_ = iso(a["first"]), iso(a["last"])
            times = first if a["count"] == 1 else f"{a['count']} times, {first} .. {last_}"
            lines.append(f"  {a['severity']:<8}  {a['resource']}  {a['event']}  ({times})")
    else:
        lines.append("Unresolved alerts: none")
    if report.silences:
        lines.append("Active silences:")
        for s in report.silences:
            shown = {**s, "ends": iso(s["ends"]), "created": iso(s["created"])}
            what = " ".join(f"{k}={v}" for k, v in shown.items() if v is not None)
            lines.append(f"  {what}")
    else:
        lines.append("Active silences: none")
    if report.watch_pass is None:
        lines.append("Conditions: not watched (no `hasthook watch` pass yet)")
    else:
        lines.append(f"Conditions (hasthook watch, last pass {_ago(report.watch_pass, now)}): "
                     + ("none" if not report.conditions else ""))
        for c in report.conditions:
            lines.append(f"  {c['severity'] or '-':<8}  {c['resource']}  {c['condition']}  "
                         f"since {iso(c['since'])}: {c['detail']}")
    for p in report.problems:
        lines.append(f"PROBLEM: {p}")
    return "\n".join(lines) + "\n"
