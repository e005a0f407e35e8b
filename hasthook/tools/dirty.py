"""`hasthook dirty`: the article's hastdirty.sh to the byte, plus JSON and a Nagios check.

Scripts were written against hastdirty.sh's stdout and exit status, so the
default mode reproduces them, quirks included, by reading hastctl's text the
way the script's pipelines do rather than through the structured parser:

- names: the arguments joined with spaces and split again on space, tab and
  newline (`"$*"` then unquoted `$resources`); when that joined string is
  empty, every `resource:` line of `hastctl dump`.
- role and dirty: the second field of every `role:` / `dirty:` line of
  `hastctl list NAME`, joined by newlines, trailing newlines dropped (what
  `$(... | awk '/^[[:space:]]*role:[[:space:]]/ {print $2}')` captures). A
  name hastd does not know has no `role:` line, so it is "not primary".
- numbers: `[ "$dirty" -ne 0 ]` accepts optional blanks and sign around
  decimal digits in 64 bits; anything else makes test(1) fail, so the
  resource is neither counted nor printed, even with -a.
- -h: divide by 1024 while the value is greater than 1024 (so 1024 stays
  `1024` and 1 MiB prints `1024K`); suffixes K, M, G, T, and past T the
  script's `case` has no branch, so 1 PiB prints `1024T` and 2 PiB `2T`.
- the exit status is the number of dirty primaries; sh would wrap it mod 256
  (256 dirty resources would exit 0, "all clean"), so it is capped at 255.
"""

from __future__ import annotations

import re

from ..hast import Hastctl, Result, parse_list
from ..record import Record
from ..units import humanize

# awk's [[:space:]], and the blanks sh and awk split fields on by default.
_SPACE = "[ \t\n\v\f\r]"
_IFS = re.compile(r"[ \t\n]+")
_SH_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")
_INT64 = (-(2**63), 2**63 - 1)
_SUFFIX_AFTER = {"": "K", "K": "M", "M": "G", "G": "T"}  # "T" has no branch: it stays T

MAX_EXIT = 255

NAGIOS_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
_STATES = {v: k for k, v in NAGIOS_CODES.items()}
_RANK = {0: 0, 3: 1, 1: 2, 2: 3}


def awk_field2(text: str, key: str) -> str:
    """What `$(... | awk '/^[[:space:]]*KEY:[[:space:]]/ {print $2}')` captures from text."""
    rx = re.compile(rf"^{_SPACE}*{re.escape(key)}:{_SPACE}")
    out = []
    for line in text.split("\n"):
        if rx.match(line):
            fields = _IFS.split(line.strip(" \t\n"))
            out.append(fields[1] if len(fields) > 1 else "")
    return "\n".join(out).rstrip("\n")


def ifs_split(text: str) -> list[str]:
    """An unquoted `$var` in sh with the default IFS (pathname expansion aside)."""
    return [w for w in _IFS.split(text) if w]


def sh_int(text: str) -> int | None:
    """The number `[ "$x" -ne 0 ]` sees, or None where test(1) says "Illegal number"."""
    m = _SH_INT.fullmatch(text)
    if not m:
        return None
    n = int(m.group(1))
    return n if _INT64[0] <= n <= _INT64[1] else None


def script_human(text: str) -> str:
    """hastdirty.sh's print_human: integer division by 1024 while greater than 1024."""
    size = sh_int(text)
    if size is None:
        return text
    shown, suffix = text, ""
    while size > 1024:
        size //= 1024
        shown = str(size)
        suffix = _SUFFIX_AFTER.get(suffix, suffix)
    # `echo -n "$size$type"` inside $( ), then word-split by the unquoted expansion.
    return " ".join(ifs_split(shown + suffix))


class DirtyState(Record):
    """One resource as hastdirty.sh sees it: the raw captures from `hastctl list NAME`."""

    name: str
    role: str
    dirty_text: str
    listed: Result

    @property
    def primary(self) -> bool:
        return self.role == "primary"

    @property
    def dirty(self) -> int | None:
        return sh_int(self.dirty_text)

    @property
    def counted(self) -> bool:
        """Whether the script adds it to the exit status."""
        return self.primary and self.dirty not in (None, 0)

    def problem(self) -> str | None:
        """Why hastctl could not tell us about this resource, or None."""
        if self.listed.rc == 0 and self.role:
            return None
        try:
            parsed = parse_list(self.listed.stdout).get(self.name)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.error is not None:
            return f"hastd does not know it (error {parsed.error})"
        if self.listed.rc == 0:
            return "hastctl printed no role"
        return self.listed.why() if self.listed.rc is None else f"hastctl {self.listed.why()}"


def resource_names(args: list[str], hastctl: Hastctl) -> tuple[list[str], Result | None]:
    """The names the script loops over, and the `hastctl dump` result when it ran one."""
    joined = " ".join(args)
    if joined:
        return ifs_split(joined), None
    r = hastctl.run("dump")
    return ifs_split(awk_field2(r.stdout, "resource")), r


def read_states(names: list[str], hastctl: Hastctl) -> list[DirtyState]:
    """`hastctl list NAME` once per name (the script runs it twice; the second adds nothing)."""
    out = []
    for name in names:
        r = hastctl.run("list", name)
        out.append(DirtyState(name, awk_field2(r.stdout, "role"),
                              awk_field2(r.stdout, "dirty"), r))
    return out


def script_output(states: list[DirtyState], all_: bool = False, quiet: bool = False,
                  human: bool = False) -> str:
    """Exactly what hastdirty.sh [-a] [-q] [-h] prints on stdout for these states."""
    lines = []
    for s in states:
        if not s.primary:
            if not quiet:
                lines.append(f"resource {s.name} role is not primary")
            continue
        d = s.dirty
        if quiet or d is None:
            continue
        if d != 0 or all_:
            value = script_human(s.dirty_text) if human else s.dirty_text
            lines.append(f"{s.name} {value}")
    return "".join(line + "\n" for line in lines)


def dirty_count(states: list[DirtyState]) -> int:
    """The script's exit status before sh truncates it: how many primaries are dirty."""
    return sum(1 for s in states if s.counted)


def exit_status(count: int) -> tuple[int, str | None]:
    """The count capped at 255, and a note for stderr when capping changed it."""
    if count <= MAX_EXIT:
        return count, None
    return MAX_EXIT, (f"{count} resources are dirty; exit status capped at {MAX_EXIT} "
                      f"(hastdirty.sh would have exited {count % 256})")


def to_json(states: list[DirtyState]) -> dict:
    """A structured view for scripts that would rather not parse text."""
    rows = []
    for s in states:
        d = s.dirty
        rows.append({
            "resource": s.name,
            "role": s.role or None,
            "primary": s.primary,
            "dirty": d,
            "dirty_human": humanize(d) if d is not None else None,
            "error": s.problem(),
        })
    return {"resources": rows, "dirty_resources": dirty_count(states)}


def _label(name: str) -> str:
    """A perfdata label: quoted, a quote doubled, no `|` (it ends the text part)."""
    return "'" + name.replace("'", "''").replace("|", "/") + "'"


def nagios(states: list[DirtyState], warn: int | None = 0, crit: int | None = None,
           dump: Result | None = None) -> tuple[str, int]:
    """One Nagios/Icinga plugin line and its exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

    A primary is WARNING when dirty > warn (default 0: any dirty byte), CRITICAL
    when dirty > crit. A non-primary is OK (the secondary tracks no dirty data,
    and the same check runs on both nodes of a pair). A resource hastctl cannot
    report on is UNKNOWN.
    """
    if not states:
        why = "no HAST resources"
        if dump is not None and not dump.ok:
            why = f"hastctl dump failed: {dump.last_line() or dump.why()}"
        return f"HAST DIRTY UNKNOWN - {why}".replace("|", "/"), NAGIOS_CODES["UNKNOWN"]
    items: list[tuple[int, str]] = []
    perf = []
    for s in states:
        d = s.dirty
        problem = s.problem()
        if problem:
            items.append((3, f"{s.name}: {problem}"))
        elif not s.primary:
            items.append((0, f"{s.name} is {s.role}"))
        elif d is None:
            items.append((3, f"{s.name}: no dirty value in hastctl list"))
        elif crit is not None and d > crit:
            items.append((2, f"{s.name} dirty {humanize(d)} > {humanize(crit)}"))
        elif warn is not None and d > warn:
            items.append((1, f"{s.name} dirty {humanize(d)} > {humanize(warn)}"))
        else:
            items.append((0, f"{s.name} dirty {humanize(d)}"))
        if d is not None and not problem:
            w = "" if warn is None else str(warn)
            c = "" if crit is None else str(crit)
            perf.append(f"{_label(s.name)}={d}B;{w};{c};0;")
    # monitoring-plugins' max_state(): CRITICAL > WARNING > UNKNOWN > OK.
    worst = max((code for code, _ in items), key=_RANK.__getitem__)
    state = _STATES[worst]
    ordered = [text for _, text in sorted(items, key=lambda i: -_RANK[i[0]])]
    line = f"HAST DIRTY {state} - " + ", ".join(ordered).replace("|", "/")
    if perf:
        line += " | " + " ".join(perf)
    return line, worst
