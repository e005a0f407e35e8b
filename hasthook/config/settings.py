"""Every setting hasthook reads, with its type and default: the one place for both.

The rules file's `settings:` mapping (validated against schema.json first) is
turned into a Settings object once; code reads `cfg.settings.hook_timeout`
(seconds, already parsed), never a raw dict with a default of its own. A key
added to schema.json needs a field here, and tests/test_settings.py shows that
each one changes what hasthook does.
"""

from __future__ import annotations

from ..record import Record, fresh
from ..units import parse_duration

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

# hasthook-exec waits for `hastctl list` at most hook_timeout / HASTCTL_SHARE, whatever
# hastctl_timeout says: the rest of the box records the event and acts on it.
HASTCTL_SHARE = 3  # a third


class Syslog(Record, frozen=True):
    """Where hasthook logs: facility, tag, and the socket (None: the system's)."""

    facility: str = "daemon"
    tag: str = "hasthook"
    socket: str | None = None


class Commands(Record, frozen=True):
    """Programs hasthook runs besides hastctl: failover's steps and role's pgrep."""

    fsck: str = "/sbin/fsck"
    mount: str = "/sbin/mount"
    umount: str = "/sbin/umount"
    zpool: str = "/sbin/zpool"
    service: str = "/usr/sbin/service"
    pgrep: str = "/bin/pgrep"  # FreeBSD's path; Debian has it there too


class RecoverSyslog(Record, frozen=True):
    """The article's `logger -p user.notice -t hast-recover` line of each recovery."""

    facility: str = "user"
    level: str = "notice"
    tag: str = "hast-recover"


class Recover(Record, frozen=True):
    """Split-brain recovery, for `hasthook recover` and every `recover` action."""

    restore_role: str | None = None    # for a resource found in init; None: init
    syslog: RecoverSyslog = fresh(RecoverSyslog)


class Watch(Record, frozen=True):
    """`hasthook watch`: hysteresis (fall bad passes to fire, rise good ones to resolve),
    how long degraded or init may last, and the dead-man's heartbeat URL."""

    fall: int = 2
    rise: int = 2
    degraded_after: float = 300.0
    init_after: float = 600.0
    heartbeat: str | None = None
    heartbeat_timeout: float = 10.0


class Settings(Record):
    """The `settings:` of the rules file; durations in seconds."""

    hostname: str | None = None
    hastctl: str = "/sbin/hastctl"
    hastctl_timeout: float = 5.0
    state_dir: str = "/var/db/hasthook"
    syslog: Syslog = fresh(Syslog)
    retention: float = 30 * 86400.0
    hook_timeout: float = 45.0
    alert_channels: list[str] | None = None  # None: every channel
    # Notifications: a burst within group_wait is one message; each send is cut at
    # send_timeout; a message unsent after max_age is dead.
    group_wait: float = 2.0
    send_timeout: float = 15.0
    max_age: float = 86400.0
    hastd_pidfile: str = "/var/run/hastd.pid"  # `hasthook role` wants a live hastd
    dev_dir: str = "/dev/hast"                 # where /dev/hast/PROVNAME appears
    commands: Commands = fresh(Commands)
    failover_step_timeout: float | None = 600.0  # None: no limit
    recover: Recover = fresh(Recover)
    cluster: str | None = None                 # Alertmanager's `cluster` label
    # The metrics' `pair` label: this name, else the hosts of hast.conf's `on` sections.
    pair: str | None = None
    hast_conf: str = "/etc/hast.conf"
    watch: Watch = fresh(Watch)
    metrics_textfile: str | None = None        # rewritten by every watch pass

    @classmethod
    def from_dict(cls, user: dict[str, Any] | None) -> Settings:
        """Settings from a validated `settings:` mapping; missing keys keep the default."""
        d = dict(user or {})
        for key in _DURATIONS:
            if d.get(key) is not None:
                d[key] = parse_duration(d[key])
        if "failover_step_timeout" in d and not d["failover_step_timeout"]:
            d["failover_step_timeout"] = None
        if isinstance(d.get("alert_channels"), str):
            d["alert_channels"] = [d["alert_channels"]]
        for key, kind in _NESTED.items():
            if key in d:
                sub = dict(d[key] or {})
                for k in _WATCH_DURATIONS if key == "watch" else ():
                    if sub.get(k) is not None:
                        sub[k] = parse_duration(sub[k])
                d[key] = kind(**sub)
        if "recover" in d and isinstance(d["recover"].syslog, dict):
            d["recover"] = d["recover"].replace(syslog=RecoverSyslog(**d["recover"].syslog))
        return cls(**{k: v for k, v in d.items() if k in cls._fields})


_DURATIONS = ("hastctl_timeout", "retention", "hook_timeout", "group_wait", "send_timeout",
              "max_age", "failover_step_timeout")
_WATCH_DURATIONS = ("degraded_after", "init_after", "heartbeat_timeout")
_NESTED: dict[str, Any] = {"syslog": Syslog, "commands": Commands, "recover": Recover,
                           "watch": Watch}
