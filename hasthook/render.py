"""Message templates: `{name}` placeholders from a fixed list, and nothing else. Pure.

The rules file is edited by admins but the values come from hastd (resource
names are whatever hast.conf says), so the engine never calls str.format:
a `{...}` that is not a plain known name is a `hasthook check` error and, if
it reaches run time anyway, is copied into the message literally. Values are
inserted once, as text; a value that looks like a placeholder stays text.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

from .event import RESTART, Event

FIELDS = (
    "event", "resource", "host", "severity", "role", "old_role", "new_role", "status",
    "dirty", "dirty_h", "dirty_human", "remoteaddr", "provname", "replication", "cause",
    "time", "summary", "rule", "count", "suppressed", "suppressed_note",
)
_FIELD_SET = frozenset(FIELDS)
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^\w+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
UNKNOWN = "unknown"

# What a message says when the admin wrote no template: useful on its own.
DEFAULTS: dict[str, tuple[str, str]] = {
    "default": (
        "[{severity}] {event} on {resource} ({host})",
        "{summary}.\nLocal role {role}, status {status}, dirty {dirty_h}.{suppressed_note}",
    ),
    "split-brain": (
        "[critical] SPLIT-BRAIN on {resource} ({host})",
        "{summary}. Both nodes wrote to {resource} while disconnected; hastd refuses to "
        "synchronize until one side is reset.\nOn {host}: role {role}, dirty {dirty_h}. "
        "Peer address: {remoteaddr}.\nOn the node whose writes you discard: hastctl role init "
        "{resource}; hastctl create {resource}; hastctl role secondary {resource}."
        "{suppressed_note}",
    ),
    "disconnect": (
        "[warning] {resource} lost its peer ({host})",
        "{summary}.\nPeer address: {remoteaddr}. Local role {role}; writes on the primary "
        "are not replicated and accumulate as dirty extents ({dirty_h} now)."
        "{suppressed_note}",
    ),
    "connect": (
        "[info] {resource} connected ({host})",
        "{summary}.\nPeer address: {remoteaddr}. Local role {role}, status {status}."
        "{suppressed_note}",
    ),
    "syncstart": (
        "[info] {resource} synchronization started ({host})",
        "{summary}: {dirty_h} to copy to the secondary.{suppressed_note}",
    ),
    "syncdone": (
        "[info] {resource} synchronized ({host})",
        "{summary}. Status {status}, dirty {dirty_h}.{suppressed_note}",
    ),
    "syncintr": (
        "[warning] {resource} synchronization interrupted ({host})",
        "{summary}; {dirty_h} still dirty. It resumes when the peer is back."
        "{suppressed_note}",
    ),
    "role": (
        "[info] {resource} is now {new_role} on {host}",
        "{summary}. Status {status}, dirty {dirty_h}.{suppressed_note}",
    ),
    # Both role hooks of a resource hastd restarted (cause restart): one message.
    "restart": (
        "[info] {resource} restarted by hastd on {host}",
        "{summary}. Status {status}, dirty {dirty_h}.{suppressed_note}",
    ),
    # The outcome of a split-brain recovery (hasthook/tools/recover.py): its summary
    # says what happened; the steps are in `hasthook history --event recover --json`.
    "recover": (
        "[{severity}] {summary}",
        "{summary}.\nLocal role now {role}. Each step and its exit status: "
        "hasthook history --event recover --json",
    ),
    "resolved": (
        "[resolved] {event} on {resource} ({host})",
        "{summary}.",
    ),
}


def fields(ev: Event, rule: str | None = None, suppressed: int = 0) -> dict[str, str]:
    """Every placeholder's text for one event; None becomes "unknown"."""
    from .units import humanize

    def text(v: object) -> str:
        return UNKNOWN if v is None else _CONTROL.sub("?", str(v))

    dirty_h = humanize(ev.dirty) if ev.dirty is not None else UNKNOWN
    values = {
        "event": text(ev.event), "resource": text(ev.resource), "host": text(ev.host),
        "severity": text(ev.severity), "role": text(ev.role), "old_role": text(ev.old_role),
        "new_role": text(ev.new_role), "status": text(ev.status), "dirty": text(ev.dirty),
        "dirty_h": dirty_h, "dirty_human": dirty_h, "remoteaddr": text(ev.remoteaddr),
        "provname": text(ev.provname), "replication": text(ev.replication),
        "cause": text(ev.cause),
        # ISO-8601 UTC: readable, sortable, and safe in a snapshot or file name.
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ev.time)),
        "summary": _CONTROL.sub("?", ev.summary), "rule": text(rule),
        "count": str(suppressed + 1), "suppressed": str(suppressed),
        "suppressed_note": (f"\n({suppressed} similar event{'s' if suppressed != 1 else ''} "
                            "suppressed since the last message.)" if suppressed else ""),
    }
    return values


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `{name}` placeholders; anything else inside braces is copied literally."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        name = m.group(1)
        if name is not None and name in _FIELD_SET and name in values:
            return values[name]
        return tok

    return _TOKEN.sub(sub, template)


def problems(template: str) -> list[str]:
    """Why a template is refused, one message per bad placeholder; [] when it is fine."""
    out = []
    for m in _TOKEN.finditer(template):
        tok, name = m.group(0), m.group(1)
        if tok in ("{{", "}}"):
            continue
        if name is None:
            out.append(f"lone {tok!r} (write {tok * 2!r} for a literal brace)")
            continue
        why = _unsafe(name)
        if why:
            out.append(f"{tok}: {why}; use a plain name such as {{resource}}")
        elif name not in _FIELD_SET:
            import difflib  # only `hasthook check` gets here; keep the hook's start-up small

            close = difflib.get_close_matches(name.lower(), FIELDS, n=1)
            hint = (f"did you mean {{{close[0]}}}?" if close
                    else "known: " + " ".join(f"{{{f}}}" for f in FIELDS))
            out.append(f"unknown placeholder {tok} ({hint})")
    return out


def _unsafe(name: str) -> str | None:
    if not name.strip() or name.strip().isdigit():
        return "positional fields are not allowed"
    if "!" in name:
        return "conversions (!r, !s, !a) are not allowed"
    if ":" in name:
        return "format specs are not allowed"
    if "." in name:
        return "attribute access is not allowed"
    if "[" in name:
        return "index lookups are not allowed"
    if not _NAME.match(name):
        return "not a plain name"
    return None


def templates_for(kind: str, overrides: Mapping[str, Mapping[str, str]] | None = None
                  ) -> tuple[str, str]:
    """(title, body) for an event kind: the config's `templates`, else the built-in ones."""
    over = overrides or {}
    title, body = DEFAULTS.get(kind, DEFAULTS["default"])
    for k in ("default", kind):
        t = over.get(k) or {}
        title, body = t.get("title", title), t.get("body", body)
    return title, body


def message(ev: Event, rule: str | None = None, suppressed: int = 0,
            title: str | None = None, body: str | None = None,
            overrides: Mapping[str, Mapping[str, str]] | None = None,
            kind: str | None = None) -> tuple[str, str]:
    """The rendered (title, body) for one event: explicit text, else config, else built-in."""
    t, b = templates_for(kind or (RESTART if ev.cause == RESTART else ev.event), overrides)
    values = fields(ev, rule, suppressed)
    return render(title or t, values), render(body or b, values)
