"""Silences: mute notifications for a resource (or all) for a while. Pure.

A silence is a resource pattern (a rule's `resource` match: glob, or `re:`
anchored regex; `*` for every resource), optionally one event kind, and an
end time. It mutes the notify actions of the events it matches; the event is
still recorded, and recover and command actions still run (a silence is about
who gets told, not about what the storage automation does). Expiry needs no
cron: a silence past its end simply no longer matches. The rows live in the
store (`silences` table); this module only builds and matches them.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable

from .event import EVENTS, WATCH_EVENTS, Event
from .rules import matches, name_matches
from .units import did_you_mean, format_duration, parse_duration

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

ALL = "*"
MAX_DURATION = 366 * 86400     # maintenance, not forever: change the rules to stop alerts
MAX_PATTERN = 255              # NAME_MAX, as hastd's resource names
MAX_COMMENT = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str, what: str, limit: int) -> str:
    """Refuse control characters: a newline in a name or comment would forge lines
    in `silence list`, `hasthook status` and syslog."""
    if _CONTROL.search(text):
        raise ValueError(f"{what} {text!r} contains control characters")
    if len(text) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return text


def check_pattern(pattern: str) -> str:
    """A resource pattern as a rule's `resource` match takes it; ValueError if unusable."""
    if not pattern or not pattern.strip():
        raise ValueError("empty resource name")
    _one_line(pattern, "resource", MAX_PATTERN)
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as e:
            raise ValueError(f"resource {pattern!r}: bad regular expression: {e}") from None
    return pattern


def check_event(event: str) -> str:
    """One of hastd's seven event words or a watch condition's: a typo must not make a
    silence that mutes nothing."""
    known = EVENTS + WATCH_EVENTS
    if event not in known:
        raise ValueError(f"unknown event {event!r}{did_you_mean(event, known)}; one of "
                         f"{', '.join(known)}")
    return event


def check_duration(text: str) -> float:
    """Seconds from `--for`: more than 0, at most MAX_DURATION."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be more than 0")
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than {format_duration(MAX_DURATION)}; "
                         "to stop alerts for good, change the rules")
    return seconds


def author(environ: dict[str, str] | None = None) -> str:
    """Who added it: the sudo caller when run through sudo, else the login name."""
    env = os.environ if environ is None else environ
    for var in ("SUDO_USER", "USER", "LOGNAME"):
        if env.get(var) and not _CONTROL.search(env[var]):
            return env[var]
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def new(resource: str | None, duration: str, now: float, event: str | None = None,
        comment: str | None = None, by: str | None = None) -> dict[str, Any]:
    """The row `silence add` stores; resource None means every resource. ValueError on
    bad input, with a message naming what is wrong."""
    return {
        "created": now,
        "ends": now + check_duration(duration),
        "resource": ALL if resource is None else check_pattern(resource),
        "event": None if event is None else check_event(event),
        "author": by or author(),
        "comment": None if not comment else _one_line(comment, "comment", MAX_COMMENT),
    }


def covered(pattern: str, names: Iterable[str]) -> list[str]:
    """Which of these resource names a silence's pattern takes in (`*`: all of them)."""
    return [n for n in names if pattern == ALL or name_matches(n, pattern)]


def covers(silence: dict[str, Any], ev: Event) -> bool:
    """Does this silence mute the event? The rules' own matcher, so a pattern means
    exactly what it means in a rule's `match: {resource: ...}`.

    A recovery's report (cause `recover`) is never muted: it says that hasthook
    discarded a node's writes, or failed to, which nobody silenced.
    """
    if ev.cause == "recover":
        return False
    m: dict[str, Any] = {"resource": silence["resource"]}
    if silence.get("event"):
        m["event"] = silence["event"]
    return matches(ev, m)


def silencing(ev: Event, active: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The first (oldest) active silence that mutes the event, or None."""
    return next((s for s in active if covers(s, ev)), None)


def held(silence: dict[str, Any]) -> dict[str, Any]:
    """What the event's outcome records (`outcome.suppressed`, next to throttle and
    repeat): which silence, and enough of it to read after it is gone."""
    from .units import iso

    return {"by": "silence", "silence": silence["id"], "resource": silence["resource"],
            "event": silence.get("event"), "ends": iso(silence["ends"]),
            "author": silence.get("author"), "comment": silence.get("comment")}


def unmuted(acts: Iterable[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """A silenced rule's actions: all but notify."""
    return tuple((name, params) for name, params in acts if name != "notify")
