"""What hastd told us: the argv of one hook run, classified. Pure code."""

from __future__ import annotations

import time

from .errors import UsageError
from .record import Record, fresh

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

ROLES = ("init", "primary", "secondary")
EVENTS = ("role", "connect", "disconnect", "syncstart", "syncdone", "syncintr", "split-brain")
# Events hasthook records of its own: a split-brain recovery's outcome, a failover step.
OWN_EVENTS = ("recover", "failover")
SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # higher is worse

# What `hasthook watch` finds that hastd never announces (hasthook/watch.py), each
# with the severity of its onset; `NAME-resolved` is the event that ends it.
CONDITIONS = {"hastd-down": "critical", "io-errors": "critical", "degraded": "warning",
              "sync-stalled": "warning", "stuck-init": "warning",
              "role-unexpected": "warning", "exec-not-wired": "warning"}
RESOLVED = "-resolved"
WATCH_EVENTS = (*CONDITIONS, *(c + RESOLVED for c in CONDITIONS))

SEVERITY = {"split-brain": "critical", "disconnect": "warning", "syncintr": "warning",
            **CONDITIONS}
# An event that ends an earlier condition on the same resource.
# A completed synchronization also ends a split-brain: the reset node has resynced.
RESOLVES = {"connect": ("disconnect",), "syncdone": ("syncintr", "syncstart", "split-brain"),
            **{c + RESOLVED: (c,) for c in CONDITIONS}}


def enders(kind: str) -> tuple[str, ...]:
    """The events that end a condition of this kind: RESOLVES turned around."""
    return tuple(r for r, ends in RESOLVES.items() if kind in ends)


# Each warning/critical kind -> the events that end it; a kind nothing resolves maps
# to () and only the live state can clear it (status, retention).
ENDED_BY = {kind: enders(kind) for kind in SEVERITY}

# Causes the pipeline reads from the history (Pipeline._recognise): the two role hooks
# of a resource hastd restarted (a config reload, an admin's quick role change), and a
# connect with no disconnect before it (the primary's worker was restarted).
RESTART, RECONNECT = "restart", "reconnect"
RESTART_WINDOW = 10.0  # seconds between the two halves of a restart, at most

_SUMMARY = {
    "connect": "connected to the peer",
    "disconnect": "lost the connection to the peer",
    "syncstart": "synchronization started",
    "syncdone": "synchronization complete",
    "syncintr": "synchronization interrupted",
    "split-brain": "SPLIT-BRAIN detected",
    "hastd-down": "hastd does not answer",
    "io-errors": "local I/O errors are rising",
    "degraded": "primary degraded for too long",
    "sync-stalled": "synchronization makes no progress",
    "stuck-init": "left in role init",
    "role-unexpected": "not in the role expected",
    "exec-not-wired": "hast.conf does not run hasthook-exec",
    **{c + RESOLVED: f"{c} resolved" for c in CONDITIONS},
}


class Event(Record):
    event: str
    resource: str
    host: str
    time: float
    old_role: str | None = None
    new_role: str | None = None
    severity: str = "info"
    known: bool = True
    # Filled from `hastctl list` after classification; None when unknown.
    role: str | None = None
    status: str | None = None
    dirty: int | None = None
    provname: str | None = None
    remoteaddr: str | None = None
    replication: str | None = None
    errors: dict[str, int] | None = None
    cause: str | None = None
    extra: dict[str, Any] = fresh(dict)

    @property
    def resolves(self) -> tuple[str, ...]:
        return RESOLVES.get(self.event, ())

    @property
    def summary(self) -> str:
        if self.event == "role" and self.cause == RESTART:  # names the resource itself
            x = self.new_role if self.old_role == "init" else self.old_role
            return (f"hastd restarted {self.resource} (config reload or an admin's role "
                    f"change): {x} → init → {x} on {self.host}")
        if self.event == "role":
            what = f"role changed from {self.old_role} to {self.new_role}"
        elif self.event == "connect" and self.cause == RECONNECT:
            what = ("connected to the peer again, with no disconnect before: its worker "
                    "was restarted")
        elif self.extra.get("what"):
            # Events hasthook makes itself (a failover step, a watch condition) say what
            # they are; hastd's never carry it.
            what = str(self.extra["what"])
        elif self.known and self.event in _SUMMARY:
            what = _SUMMARY[self.event]
        else:
            what = f"unknown event {self.event!r} from hastd"
        return f"[{self.resource}] {what} on {self.host}"

    def to_dict(self) -> dict[str, Any]:
        d = self.as_dict()
        d["summary"] = self.summary
        d["resolves"] = list(self.resolves)
        return d


def classify(argv: list[str], host: str, now: float | None = None) -> Event:
    """Turn hastd's words (argv without argv[0]) into an Event.

    A malformed call raises UsageError. An event word we do not know (a newer
    hastd) is accepted with at least a resource, so it is recorded, not lost.
    """
    when = time.time() if now is None else now
    if not argv:
        raise UsageError("no event given")
    word, args = argv[0], argv[1:]
    if not word:
        raise UsageError("empty event word")
    if not args or not args[0]:
        raise UsageError(f"{word}: no resource given")
    resource = args[0]
    if word == "role":
        if len(args) != 3:
            raise UsageError("role: expected RESOURCE OLDROLE NEWROLE, got "
                             + ("1 word" if len(args) == 1 else f"{len(args)} words"))
        old, new = args[1], args[2]
        for r in (old, new):
            if r not in ROLES:
                raise UsageError(f"role: {r!r} is not one of init, primary, secondary")
        return Event("role", resource, host, when, old_role=old, new_role=new)
    if word in EVENTS or word in WATCH_EVENTS:  # watch's words: for `hasthook test`
        if len(args) != 1:
            raise UsageError(f"{word}: expected RESOURCE, got {len(args)} words")
        return Event(word, resource, host, when, severity=SEVERITY.get(word, "info"))
    return Event(
        word, resource, host, when, severity="warning", known=False,
        extra={"args": args[1:]} if len(args) > 1 else {},
    )


def check_name(word: str, own: bool = False) -> str:
    """An event name an admin typed: hastd's seven (and hasthook's own with `own`).

    A near miss is an error with a did-you-mean; any other word passes, as a newer
    hastd may send events this version does not know.
    """
    from .units import did_you_mean

    names = EVENTS + (OWN_EVENTS if own else ())
    if word in names:
        return word
    hint = did_you_mean(word, names)
    if hint:
        raise UsageError(f"unknown event {word!r}{hint}")
    return word
