"""No setting is silently ignored: every key the schema documents changes what hasthook does.

Each row loads a config twice, with two values of one key, and asks the code that
reads that key (not the Settings object) for something that must differ. A key
added to schema.json without a row here fails test_every_documented_key_is_probed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import RecordingLog

from hasthook.config import Config, from_data
from hasthook.config.schema import schema
from hasthook.event import Event
from hasthook.store import Store

T = 1_800_000_000.0


def documented() -> list[str]:
    """Every leaf key of `settings:` in schema.json, dotted."""
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.get("properties", {}).items():
            if v.get("type") == "object" and "properties" in v:
                walk(v, f"{prefix}{k}.")
            else:
                out.append(prefix + k)

    walk(schema()["properties"]["settings"], "")
    return out


def cfg_with(key: str, value: Any, tmp: Path, **more: Any) -> Config:
    """A config whose settings give `key` this value (dotted keys nest)."""
    settings: dict[str, Any] = {"state_dir": str(tmp / "state"), **more}
    node = settings
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return from_data({"settings": settings, "channels": {"ops": "json://127.0.0.1:9/a",
                                                         "mail": "json://127.0.0.1:9/b"}})


# -- the probes: each reads what the code that uses the key does --------------------------


def hastctl_of(cfg: Config, tmp: Path) -> Any:
    from hasthook.hast import Hastctl

    ctl = Hastctl.from_settings(cfg.settings)
    return ctl.path, ctl.timeout


def log_of(cfg: Config, tmp: Path) -> Any:
    from hasthook.log import Log

    log = Log.from_settings(cfg.settings)
    return log.facility, log.tag, log._path, log.fallback_dir


def retained(cfg: Config, tmp: Path) -> int:
    """Events left after retention runs on a history with one event two days old."""
    from hasthook.pipeline import Pipeline

    store = Store(cfg.settings.state_dir)
    store.record(Event("connect", "r1", "h", time.time() - 2 * 86400))
    Pipeline(cfg, store, RecordingLog()).retain()
    n = len(store.history())
    store.close()
    return n


def box_warning(cfg: Config, tmp: Path) -> Any:
    """check's warning of a hastctl_timeout the hook's time box cannot honour."""
    from hasthook.config.schema import validate

    settings = {"hastctl_timeout": "10s", "hook_timeout": cfg.data["settings"]["hook_timeout"]}
    return [p.message for p in validate({"settings": settings})]


def alerted_to(cfg: Config, tmp: Path) -> Any:
    return cfg.alert_channels


def queued(cfg: Config, tmp: Path) -> Any:
    """When a notify action's message is due, after the event."""
    from hasthook.actions import Context
    from hasthook.actions.notify import messages

    ev = Event("disconnect", "r1", "h", T, severity="warning")
    ctx = Context(ev, 1, "r", cfg, None, RecordingLog(), lambda: None, T)
    return messages({"channels": ["ops"]}, ctx)[0]["due"] - T


def notify_wait(cfg: Config, tmp: Path) -> Any:
    """notify-test's wait for a channel that never answers."""
    from hasthook.delivery.outbox import test_channel
    from hasthook.sim.receiver import HttpSink

    with HttpSink() as sink:
        sink.hold.clear()
        cfg.data["channels"] = {"ops": sink.url("x")}
        why = test_channel(cfg, "ops", cfg.settings.send_timeout)
        sink.hold.set()
    return list(why.values())


def expired(cfg: Config, tmp: Path) -> int:
    """Messages given up by a drain, for a row queued 100 s ago."""
    from hasthook.delivery.outbox import drain

    store = Store(cfg.settings.state_dir)
    with store.transaction() as db:
        store.outbox_add(db, created=time.time() - 100, event_id=None, rule="r",
                         channel="ops", group_key="k", kind="alert", severity="info",
                         event="connect", resource="r1", host="h", title="t", body="b",
                         due=time.time() - 100)
    rep = drain(store, cfg, RecordingLog(), deadline=time.monotonic() + 30, wait=False)
    store.close()
    return rep.dead


def hastd_pid(cfg: Config, tmp: Path) -> Any:
    from hasthook.tools.role import hastd_pid

    return hastd_pid(cfg.settings.hastd_pidfile)


def failover_argv(cfg: Config, tmp: Path) -> Any:
    from hasthook.tools.failover import ResourceSpec, plan

    specs = [ResourceSpec("db", "ufs", "/db", services=["pg"]), ResourceSpec("t", "zfs",
                                                                               pool="tank")]
    return [s.argv for action in ("promote", "demote")
            for s in plan(action, specs, {}, cfg.settings)]


def pgrep_ran(cfg: Config, tmp: Path) -> Any:
    """`hasthook role primary`'s look for the old secondary worker: which pgrep ran."""
    from hasthook.tools.role import secondary_running

    return secondary_running("r1", cfg.settings.commands.pgrep)


def step_timeout(cfg: Config, tmp: Path) -> Any:
    from hasthook.tools.failover import Failover

    return Failover(cfg.settings, {}, None, RecordingLog()).step_timeout


def recover_syslog(cfg: Config, tmp: Path) -> Any:
    """The article's `HAST [RES] recover role ROLE` line, and where it goes."""
    from hasthook.tools.recover import Recoverer

    seen: list[Any] = []

    class Ctl:
        path = "hastctl"

        def list(self, name: str) -> Any:
            from hasthook.hast import Resource
            from hasthook.proc import Result

            return {name: Resource(name, role=roles[0])}, Result(["hastctl"], 0)

        def role(self, role: str, name: str) -> Any:
            from hasthook.proc import Result

            roles[0] = role
            seen.append(role)
            return Result(["hastctl", "role", role, name], 0)

        def create(self, name: str) -> Any:
            from hasthook.proc import Result

            return Result(["hastctl", "create", name], 0)

    roles = ["init"]

    class Log(RecordingLog):
        def __call__(self, level: str, message: str, *, facility: int | None = None,
                     tag: str | None = None) -> None:
            if "recover role" in message:
                seen.append((level, facility, tag))

    Recoverer(Ctl(), Log(), cfg.settings, "h", sleep=lambda s: None).run("r1", delay=0)
    return seen


def am_labels(cfg: Config, tmp: Path) -> Any:
    from hasthook.delivery.alertmanager import target

    return target("am", {"alertmanager": "http://127.0.0.1:9/"}, cfg.settings).cluster


def pair_label(cfg: Config, tmp: Path) -> Any:
    """The metrics' pair label, from settings.pair or the hast.conf it names."""
    from hasthook.tools import metrics

    for name in ("a", "b"):
        (tmp / f"{name}.conf").write_text(f"resource r1 {{ local /x on {name}1 {{ remote y }}"
                                          f" on {name}2 {{ remote z }} }}\n")
    conf = metrics.read_hast_conf(cfg.settings, RecordingLog())
    return metrics.pairs(cfg.settings.pair, conf)


def watch_verdicts(cfg: Config, tmp: Path) -> Any:
    """What watch's pure core decides over three passes of a degraded primary in init
    territory: events per pass."""
    from hasthook import watch
    from hasthook.hast import Resource

    out = []
    seen: dict[str, Any] = {}
    conds: dict[Any, Any] = {}
    for i, (role, status) in enumerate([("primary", "degraded")] * 5 + [("primary",
                                                                        "complete")] * 4):
        r = Resource("r1", role=role, status=status, dirty=0)
        obs = watch.Observation("h", T + i * 200, True, resources={"r1": r})
        st = watch.step(obs, seen, conds, cfg.settings.watch)
        seen, conds = st.seen, st.conditions
        out.append([e.event for e in st.events])
    init = Resource("r2", role="init")
    seen2: dict[str, Any] = {}
    conds2: dict[Any, Any] = {}
    for i in range(4):
        obs = watch.Observation("h", T + i * 400, True, resources={"r2": init})
        st = watch.step(obs, seen2, conds2, cfg.settings.watch)
        seen2, conds2 = st.seen, st.conditions
        out.append([e.event for e in st.events])
    return out


def heartbeat(cfg: Config, tmp: Path) -> Any:
    """What the heartbeat after a pass answers (and where it went)."""
    from hasthook import watch
    from hasthook.sim.receiver import HttpSink

    with HttpSink() as sink:
        url = cfg.settings.watch.heartbeat
        if url == "hold":  # a receiver that never answers: heartbeat_timeout bounds it
            sink.hold.clear()
            url = f"http://{sink.base}/ping"
        result = watch.heartbeat(url.replace("PORT", str(sink.port)),
                                 cfg.settings.watch.heartbeat_timeout, RecordingLog())
        sink.hold.set()
        return result, [r["path"] for r in sink.received()]


def textfile(cfg: Config, tmp: Path) -> Any:
    """Which file a watch pass writes the metrics into."""
    from hasthook import watch
    from hasthook.hast import Hastctl

    store = Store(cfg.settings.state_dir)
    watch.write_metrics(cfg, store, Hastctl("/nonexistent", 1), RecordingLog(),
                        watch.Observation("h", T, False))
    store.close()
    return sorted(p.name for p in tmp.iterdir() if p.suffix == ".prom")


PROBES: dict[str, tuple[Any, Any, Callable[[Config, Path], Any]]] = {
    "hostname": ("alpha", "beta", lambda c, t: c.hostname),
    "hastctl": ("/sbin/hastctl", "/usr/local/sbin/hastctl", hastctl_of),
    "hastctl_timeout": ("2s", "9s", hastctl_of),
    "state_dir": ("/var/db/a", "/var/db/b", log_of),
    "syslog.facility": ("daemon", "local3", log_of),
    "syslog.tag": ("hasthook", "hh", log_of),
    "syslog.socket": ("/var/run/log", "/dev/log", log_of),
    "retention": ("1d", "30d", retained),
    "hook_timeout": ("45s", "20s", box_warning),
    "alert_channels": (["ops"], ["mail"], alerted_to),
    "group_wait": ("2s", "30s", queued),
    "send_timeout": ("1s", "2s", notify_wait),
    "max_age": ("10s", "1h", expired),
    "hastd_pidfile": ("/nonexistent/a.pid", "/nonexistent/b.pid", hastd_pid),
    "dev_dir": ("/dev/hast", "/dev/other", failover_argv),
    "commands.fsck": ("/sbin/fsck", "/opt/fsck", failover_argv),
    "commands.mount": ("/sbin/mount", "/opt/mount", failover_argv),
    "commands.umount": ("/sbin/umount", "/opt/umount", failover_argv),
    "commands.zpool": ("/sbin/zpool", "/opt/zpool", failover_argv),
    "commands.service": ("/usr/sbin/service", "/opt/service", failover_argv),
    "commands.pgrep": ("/bin/true", "/bin/false", pgrep_ran),
    "failover_step_timeout": ("10m", "30s", step_timeout),
    "recover.syslog.facility": ("user", "local2", recover_syslog),
    "recover.syslog.level": ("notice", "warning", recover_syslog),
    "recover.syslog.tag": ("hast-recover", "hr", recover_syslog),
    "recover.restore_role": ("init", "secondary", recover_syslog),
    "cluster": ("pair-a", "pair-b", am_labels),
    "pair": ("a+b", "c+d", pair_label),
    "hast_conf": ("CONF/a.conf", "CONF/b.conf", pair_label),
    "watch.fall": (1, 3, watch_verdicts),
    "watch.rise": (1, 3, watch_verdicts),
    "watch.degraded_after": ("100s", "10m", watch_verdicts),
    "watch.init_after": ("5m", "1h", watch_verdicts),
    "watch.heartbeat": ("http://127.0.0.1:PORT/a", "http://127.0.0.1:PORT/b", heartbeat),
    "watch.heartbeat_timeout": ("1s", "2s", heartbeat),
    "metrics_textfile": ("CONF/one.prom", "CONF/two.prom", textfile),
}
# Keys whose probe needs another setting held at a value that makes it visible.
CONTEXT: dict[str, dict[str, Any]] = {
    "watch.heartbeat_timeout": {"watch": {"heartbeat": "hold"}},
}


def test_every_documented_key_is_probed():
    assert sorted(documented()) == sorted(PROBES)


@pytest.mark.parametrize("key", sorted(PROBES))
def test_each_setting_changes_what_hasthook_does(key, tmp_path):
    a, b, probe = PROBES[key]
    got = []
    for i, value in enumerate((a, b)):
        tmp = tmp_path / str(i)
        tmp.mkdir()
        if isinstance(value, str):
            value = value.replace("CONF", str(tmp))
            (tmp / "a.conf").touch()
        more = json.loads(json.dumps(CONTEXT.get(key, {})))
        cfg = cfg_with(key, value, tmp, **more)
        got.append(probe(cfg, tmp))
    assert got[0] != got[1], (key, got)
