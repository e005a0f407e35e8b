"""Secrets never shown: URLs in their redacted form, and text scrubbed of what they hide. Pure.

A channel URL can carry a password, an API key or a token; hasthook names a
URL in logs, the database and command output only in a redacted form, and
scrubs every error message of the parts that form hides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PARTS = re.compile(r"[^/:@?&=#,;+\s]+")


# A query key whose value is a secret: apprise's `-param`/`+Header` forms, and names
# that say so. A path segment or value that looks like a token (long, letters and digits).
_SECRET_KEY = re.compile(r"^[-+]|token|key|pass|secret|auth|sig|cred|session|cookie", re.I)
_TOKEN = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_.~%-]{16,}$")
HIDDEN = "****"


def url(u: str) -> str:
    """The URL as hasthook shows it: no password, no secret query value, no token in the
    path. What apprise's privacy form leaves (headers, parameters, webhook paths) is
    hidden too."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        p = urlsplit(u)
    except ValueError:
        return HIDDEN
    netloc = p.netloc
    if "@" in netloc:
        cred, _, host = netloc.rpartition("@")
        user = cred.split(":", 1)[0]
        netloc = f"{user}:{HIDDEN}@{host}" if ":" in cred else f"{HIDDEN}@{host}"
    path = "/".join(HIDDEN if _TOKEN.match(seg) else seg for seg in p.path.split("/"))
    query = "&".join(_param(part) for part in p.query.split("&")) if p.query else ""
    return urlunsplit((p.scheme, netloc, path, query, HIDDEN if p.fragment else ""))


def _param(part: str) -> str:
    key, sep, value = part.partition("=")
    if sep and value and (_SECRET_KEY.search(key) or _TOKEN.match(value)):
        value = HIDDEN
    return f"{key}{sep}{value}"


def text(s: str, urls: Iterable[tuple[str, str]]) -> str:
    """Remove from `s` every part of each (url, shown form) the shown form hides."""
    from urllib.parse import quote, unquote

    for raw, shown in urls:
        shown_u = unquote(shown)
        for part in sorted(set(_URL_PARTS.findall(raw)), key=len, reverse=True):
            plain = unquote(part)
            if len(plain) < 3 or plain in shown_u:
                continue
            for form in sorted({part, plain, quote(plain, safe="")}, key=len, reverse=True):
                s = s.replace(form, HIDDEN)
    return s


# Control characters a terminal would act on (CSI, OSC, a carriage return that hides
# what came before), as visible escapes; newline and tab stay: they are the layout.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))
            if c not in (0x09, 0x0A)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def printable(s: str) -> str:
    """Text safe to print on an admin's terminal: a resource named with ESC sequences
    shows as `\\x1b[...`, never drives the terminal."""
    return s.translate(_ESCAPES)
