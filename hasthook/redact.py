"""Secrets never shown: URLs in their redacted form, and text scrubbed of what they hide. Pure.

A channel URL can carry a password, an API key or a token; hasthook names a
URL in logs, the database and command output only in a redacted form, and
scrubs every error message of the parts that form hides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PARTS = re.compile(r"[^/:@?&=#,;+\s]+")


def url(u: str) -> str:
    """The URL with its password hidden (user:****@host)."""
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(u)
    if p.password is None:
        return u
    netloc = f"{p.username}:****@{p.hostname}" + (f":{p.port}" if p.port else "")
    return urlunsplit(p._replace(netloc=netloc))


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
                s = s.replace(form, "****")
    return s
