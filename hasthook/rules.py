"""Which rules an event matches, and whether a matched rule acts now. Pure.

Rules read like Alertmanager routes: tried in order, the first match wins
unless it says `continue: true`. Throttle and repeat decisions take the rule's
remembered state and the clock as arguments, so they are tested without
waiting; the state itself lives in the store (see store.rule_state).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable

from .event import SEVERITY_RANK, Event
from .record import Record
from .units import parse_duration, parse_size

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

DEFAULT_KEY = ("event", "resource", "host")
KEY_FIELDS = ("event", "resource", "host", "role", "old_role", "new_role", "severity",
              "status", "cause")
ACTIONS = ("notify", "recover", "command")
NO_CAUSE = "none"
INTERNAL_RULE = "hasthook"  # the rule name hasthook's own alerts go under


class Match(Record, frozen=True):
    """A rule that matched an event: its name, position and normalised actions."""

    name: str
    index: int
    rule: dict[str, Any]
    actions: tuple[tuple[str, Any], ...] = ()

    @property
    def stateful(self) -> bool:
        return bool(self.rule.get("throttle") or self.rule.get("repeat_interval"))


def match(ev: Event, rules: Iterable[dict[str, Any]]) -> list[Match]:
    """The rules that act on this event, in order: stop at the first without `continue`."""
    out = []
    for i, rule in enumerate(rules):
        if not matches(ev, rule.get("match") or {}):
            continue
        out.append(Match(str(rule.get("name", f"rules[{i}]")), i, rule,
                         tuple(action_of(a) for a in rule.get("actions") or ())))
        if not rule.get("continue", False):
            break
    return out


def matches(ev: Event, m: dict[str, Any]) -> bool:
    """Does one rule's `match` block accept the event? Every key given must hold.

    What a split-brain recovery causes (its role changes, its report) is told by
    the recovery itself, so only a rule that names `cause` sees cause `recover`.
    """
    if ev.cause == "recover" and "cause" not in m:
        return False
    for key, want in m.items():
        test = _TESTS.get(key)
        if test is None or not test(ev, want):
            return False
    return True


def _listed(want: Any) -> list[Any]:
    return list(want) if isinstance(want, list | tuple) else [want]


_GLOB_CHARS = frozenset("*?[")


def name_matches(value: str | None, patterns: Any) -> bool:
    """Glob or `re:` match. A plain name or `prefix*` is compared directly: fnmatch
    compiles a regex per pattern, which is most of a fresh hook's matching time."""
    if value is None:
        return False
    for p in _listed(patterns):
        if p.startswith("re:"):
            if _regex(p[3:]).fullmatch(value):
                return True
        elif not _GLOB_CHARS.intersection(p):
            if value == p:
                return True
        elif p[-1] == "*" and not _GLOB_CHARS.intersection(p[:-1]):
            if value.startswith(p[:-1]):
                return True
        elif fnmatch.fnmatchcase(value, p):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _one_of(value: str | None, want: Any) -> bool:
    return value is not None and value in _listed(want)


def _event(ev: Event, want: Any) -> bool:
    wanted = _listed(want)
    return "*" in wanted or ev.event in wanted


def _severity_at_least(ev: Event, want: str) -> bool:
    return SEVERITY_RANK.get(ev.severity, 0) >= SEVERITY_RANK[want]


def _cause(ev: Event, want: Any) -> bool:
    return (ev.cause or NO_CAUSE) in _listed(want)


_TESTS = {
    "event": _event,
    "resource": lambda ev, w: name_matches(ev.resource, w),
    "host": lambda ev, w: name_matches(ev.host, w),
    "role": lambda ev, w: _one_of(ev.role, w),
    "old_role": lambda ev, w: _one_of(ev.old_role, w),
    "new_role": lambda ev, w: _one_of(ev.new_role, w),
    "severity": lambda ev, w: _one_of(ev.severity, w),
    "severity_at_least": _severity_at_least,
    "status": lambda ev, w: _one_of(ev.status, w),
    "dirty_over": lambda ev, w: ev.dirty is not None and ev.dirty > parse_size(w),
    "cause": _cause,
}
MATCH_KEYS = tuple(_TESTS)


def action_of(action: dict[str, Any]) -> tuple[str, Any]:
    """`{notify: ops}` -> ("notify", {"channels": ["ops"]}); other actions pass their mapping."""
    (name, params), = action.items()
    if name == "notify":
        if isinstance(params, str):
            params = {"channels": [params]}
        elif isinstance(params, list):
            params = {"channels": list(params)}
        else:
            ch = params.get("channels")
            params = {**params, "channels": [ch] if isinstance(ch, str) else list(ch or ())}
    elif params is None:
        params = {}
    return name, params


# -- throttle and repeat_interval ---------------------------------------------


class RuleState(Record, frozen=True):
    """What a rule remembers for one key between hook runs."""

    window_start: float | None = None
    count: int = 0                   # times it acted in the current throttle window
    last_fired: float | None = None  # when it last acted; None once resolved
    suppressed: int = 0              # events held back since it last acted


class Decision(Record, frozen=True):
    fire: bool
    state: RuleState
    reason: str | None = None        # "throttle" or "repeat" when held back
    suppressed: int = 0              # held back since the last message (to say so in it)


def key_of(rule: dict[str, Any], ev: Event) -> str:
    """What counts as "the same event" for a rule: `key:` fields, default event+resource+host."""
    names = rule.get("key") or DEFAULT_KEY
    return "\x1f".join(f"{n}={getattr(ev, n)}" for n in names)


def decide(rule: dict[str, Any], state: RuleState | None, now: float) -> Decision:
    """Act now, or hold back (repeat_interval first, then the throttle window)?

    repeat_interval: after acting, the same key stays quiet for the interval and
    then reminds; a resolving event clears `last_fired` so the next one acts at
    once. throttle {max, window}: at most `max` actions per window per key.
    """
    st = state or RuleState()
    repeat = rule.get("repeat_interval")
    if repeat is not None and st.last_fired is not None:
        if now - st.last_fired < parse_duration(repeat):
            return Decision(False, st.replace(suppressed=st.suppressed + 1), "repeat")
    throttle = rule.get("throttle")
    if throttle:
        window = parse_duration(throttle["window"])
        if st.window_start is None or now - st.window_start >= window:
            st = st.replace(window_start=now, count=0)
        if st.count >= int(throttle["max"]):
            return Decision(False, st.replace(suppressed=st.suppressed + 1), "throttle")
        st = st.replace(count=st.count + 1)
    return Decision(True, st.replace(last_fired=now, suppressed=0), None, st.suppressed)
