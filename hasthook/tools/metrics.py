"""`hasthook metrics`: HAST's and hasthook's state in Prometheus' text format.

Graphs of dirty bytes and roles across a fleet come from node_exporter's
textfile collector: cron runs `hasthook metrics --textfile DIR/hasthook.prom`
and node_exporter serves it with its own metrics, so hasthook runs no server.
The live state is `hastctl list` (hast.py), hasthook's own comes from the
database (store.metrics); this module only shapes and writes them.

Counts read from the history (events, recovery attempts) cover what the
retention keeps, so they are gauges, not counters: pruning lowers them.

A central Prometheus compares the two nodes of a pair (etc/prometheus/), so
every series names its `pair` (settings.pair, else the hosts hast.conf pairs
the resource with: the same text on both nodes) and every per-resource series
its `resource` and current `role`. An unknown label is printed empty, which
Prometheus reads as no label at all; the rules skip such series and alert on
them instead.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from .. import hastconf
from ..config.settings import Settings
from ..hast import Hastctl, Resource
from ..hastconf import HastConf, HastConfError
from ..record import Record, fresh
from .recover import ATTEMPTS

STATUSES = ("complete", "degraded")
OUTBOX_STATES = ("pending", "sending", "dead")
ERROR_OPS = ("read", "write", "delete", "flush")


class Family(Record):
    """One metric: name, type, help and its samples (labels, value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[dict[str, str], float]] = fresh(list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))


def pairs(pair: str | None, conf: HastConf | None) -> tuple[dict[str, str], str]:
    """The `pair` label: ({resource: pair}, the node's own for series of no resource).

    settings.pair names every pair; else each resource's is the hosts of its
    `on` sections (Resource.pair), and the node's is the one pair all its
    resources share ("" when they name several, or hast.conf is unusable).
    """
    if pair:
        return {}, pair
    by_res = {name: res.pair() for name, res in (conf.resources.items() if conf else ())}
    distinct = set(by_res.values())
    return by_res, (distinct.pop() if len(distinct) == 1 else "")


def read_hast_conf(settings: Settings, log: Any) -> HastConf | None:
    """hast.conf for the pair label; None when settings.pair makes it moot, or it is
    unusable (a warning to syslog: the metrics are still written, with pair="")."""
    if settings.pair:
        return None
    path = settings.hast_conf
    try:
        return hastconf.load(path)
    except OSError as e:
        problem = f"cannot read {path}: {e.strerror or e}"
    except HastConfError as e:
        problem = str(e)
    log.warning(f"metrics: {problem}; the pair label stays empty until it is fixed "
                f"or settings.pair is set")
    return None


def gather(hastctl: Hastctl, store: Any, cfg: Any, conf: HastConf | None = None,
           listed: tuple[dict[str, Resource], bool] | None = None) -> list[Family]:
    """Every metric, from `hastctl list`, the database and hast.conf (`conf`, for the
    pair label); never raises for hastd down. `listed`: (resources, answered) of a
    `hastctl list` the caller ran already (a watch pass), so it is not run twice."""
    if listed is None:
        resources, r = hastctl.list()
        up = r.ok and (bool(resources) or not r.stdout.strip())
    else:
        resources, up = listed
    db = store.metrics()
    by_res, node_pair = pairs(cfg.settings.pair, conf)
    roles = {name: res.role or "" for name, res in resources.items() if res.error is None}

    def of(resource: str) -> dict[str, str]:
        """The labels every per-resource series starts with."""
        return {"resource": resource, "role": roles.get(resource, ""),
                "pair": by_res.get(resource) or node_pair}

    f = {name: Family(name, typ, text) for name, typ, text in (
        ("hasthook_hastd_up", "gauge", "1 when hastctl list answered, else 0."),
        ("hast_resource_info", "gauge",
         "A resource hastd knows; its provider name, peer and replication as labels."),
        ("hast_resource_role", "gauge",
         "The resource's current role (init, primary, secondary) in the role label; always 1."),
        ("hast_resource_status", "gauge",
         "1 for the resource's status (complete: connected to its peer; degraded: not); "
         "both 0 when hastctl shows none (no worker, as in role init)."),
        ("hast_resource_dirty_bytes", "gauge",
         "Bytes written on the primary and not yet on the secondary."),
        ("hast_resource_local_errors_total", "counter",
         "Errors of the local component by operation, as hastd counts them."),
        ("hast_resource_last_event_timestamp_seconds", "gauge",
         "When hasthook recorded the resource's last event (Unix time)."),
        ("hasthook_history_events", "gauge",
         "Events in hasthook's history by kind (within settings.retention)."),
        ("hasthook_outbox_messages", "gauge",
         "Messages in the outbox by channel and state; dead ones were given up."),
        ("hasthook_last_delivery_timestamp_seconds", "gauge",
         "When a message last went out to the channel (Unix time)."),
        ("hasthook_recovery_attempts", "gauge",
         "Split-brain recovery attempts by resource and outcome (within settings.retention)."),
        ("hasthook_watch_condition_active", "gauge",
         "A condition `hasthook watch` raised and has not resolved (io-errors, hastd-down, "
         "...), by resource; always 1."),
        ("hasthook_watch_last_pass_timestamp_seconds", "gauge",
         "When the last `hasthook watch` pass completed (Unix time)."),
    )}
    f["hasthook_hastd_up"].add(int(up), pair=node_pair)
    for name, res in resources.items():
        if res.error is not None:
            continue
        f["hast_resource_info"].add(1, **of(name), provname=res.provname or "",
                                    remoteaddr=res.remoteaddr or "",
                                    replication=res.replication or "")
        if res.role:
            f["hast_resource_role"].add(1, **of(name))
        for status in STATUSES:
            f["hast_resource_status"].add(int(res.status == status), **of(name), status=status)
        if res.dirty is not None:
            f["hast_resource_dirty_bytes"].add(res.dirty, **of(name))
        for op in ERROR_OPS:
            if op in res.errors:
                f["hast_resource_local_errors_total"].add(res.errors[op], **of(name),
                                                          operation=op)
    for name, t in sorted(db["last_event"].items()):
        f["hast_resource_last_event_timestamp_seconds"].add(t, **of(name))
    for event, n in sorted(db["events"].items()):
        f["hasthook_history_events"].add(n, pair=node_pair, event=event)
    channels = sorted(set(cfg.channels) | {c for c, _ in db["outbox"]})
    for ch in channels:
        for state in OUTBOX_STATES:
            f["hasthook_outbox_messages"].add(db["outbox"].get((ch, state), 0), pair=node_pair,
                                              channel=ch, state=state)
    for ch, t in sorted(db["last_sent"].items()):
        f["hasthook_last_delivery_timestamp_seconds"].add(t, pair=node_pair, channel=ch)
    for (res_name, state), n in sorted(db["recoveries"].items()):
        if state in ATTEMPTS:
            f["hasthook_recovery_attempts"].add(n, **of(res_name), state=state)
    for (res_name, condition, severity), _ in sorted(db["watch"].items()):
        f["hasthook_watch_condition_active"].add(1, **of(res_name), condition=condition,
                                                 severity=severity or "")
    if "watch_pass" in db["meta"]:
        f["hasthook_watch_last_pass_timestamp_seconds"].add(float(db["meta"]["watch_pass"]),
                                                            pair=node_pair)
    return list(f.values())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def render(families: list[Family]) -> str:
    """The text exposition format (version 0.0.4), one HELP/TYPE block per metric.

    No sample carries a timestamp: node_exporter refuses a textfile that has one.
    """
    lines = []
    for fam in families:
        text = fam.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {fam.name} {text}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{text}}} {_number(value)}" if text
                         else f"{fam.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Replace `path` at once: node_exporter never reads half a file.

    Root writes there, so the directory must be one nobody else can steer: owned by
    root and not writable by group or other (a sticky one, as /tmp, will do: others
    cannot rename or remove root's files in it); else Untrusted says why. The data
    goes to a new temporary name (O_EXCL, never through a link another user planted)
    the collector skips (not *.prom), made 0644 on its descriptor so an unprivileged
    node_exporter can read it, then renamed over `path`.
    """
    from .. import files, trust

    d = os.path.dirname(os.path.abspath(path))
    st = os.lstat(d)
    why = None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        why = f"{d} is not a directory"
    else:
        why = trust.owner_and_mode(d, st, sticky_ok=True)
    if why:
        raise trust.Untrusted(f"refused to write {path}: {why}: another user could swap "
                              "the file root writes; use a directory only root can write, "
                              "e.g. /var/db/node_exporter")
    files.write(path, text.encode("utf-8"), 0o644)
