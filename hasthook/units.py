"""Durations, sizes, times and names as admins read and write them: `500ms`, `10m`,
`1d`; `64M`, `1G`; ISO-8601 UTC, or a local time in a message; a did-you-mean for a
mistyped name; plurals. Pure."""

from __future__ import annotations

import re
import time

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from collections.abc import Iterable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DUR_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?)(i?B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = "KMGTPE"


def parse_duration(value: str | int | float) -> float:
    """Seconds from `2s`, `10m`, `1h`, `1d`, `500ms` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 2s, 10m, 1h, 1d)")
    return float(m.group(1)) * _DUR_UNITS[m.group(2)]


def parse_size(value: str | int) -> int:
    """Bytes from `1G`, `64M`, `512K`, `2GB`, `1GiB` (powers of 1024) or a bare number."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative size: {value!r}")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 512K, 64M, 1G)")
    unit = m.group(2).upper()
    power = _SIZE_UNITS.index(unit) + 1 if unit else 0
    return int(float(m.group(1)) * 1024**power)


def format_duration(seconds: float) -> str:
    """`3725` -> `1h2m5s`: short, for messages such as "down for 1h2m5s"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts)


def iso(t: float) -> str:
    """ISO-8601 UTC with milliseconds: `2026-11-25T08:02:14.123Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def when(t: float, now: float) -> str:
    """A local time for a message: `15:25:15` today, else with the date and zone
    (`2026-11-24 15:25:15 CET`), so a message read the next day still says when."""
    if time.localtime(t)[:3] == time.localtime(now)[:3]:
        return time.strftime("%H:%M:%S", time.localtime(t))
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def humanize(n: int) -> str:
    """hastctl's `%NB`: humanize_number(3) into 5 bytes, HN_AUTOSCALE, NOSPACE, DECIMAL.

    2097152 -> "2.0MB", 10737352704 -> "10GB", 0 -> "0B".
    """
    sign, quotient = (-1, -n) if n < 0 else (1, n)
    baselen = 3 if n < 0 else 2
    divisor, deccut = 1024, 973
    maxscale = 7
    limit = 10 ** (5 - baselen)
    remainder, i = 0, 0
    while (quotient >= limit or (quotient == limit - 1 and (
            remainder >= deccut or remainder >= divisor // 2))) and i < maxscale:
        remainder = quotient % divisor
        quotient //= divisor
        i += 1
    prefix = ("", "K", "M", "G", "T", "P", "E")[i]
    if ((quotient == 9 and remainder < deccut) or quotient < 9) and i > 0:
        s1 = quotient + ((remainder * 10 + divisor // 2) // divisor // 10)
        s2 = ((remainder * 10 + divisor // 2) // divisor) % 10
        return f"{sign * s1}.{s2}{prefix}B"
    return f"{sign * (quotient + (remainder + divisor // 2) // divisor)}{prefix}B"


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or "" when none is close."""
    import difflib  # only where a name was mistyped: keep the hook's start-up small

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1,
                                      cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 event`, `2 events`, `0 events`; `many` for an irregular plural."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"
