"""HTTP requests to URLs from the config (Alertmanager, the watch heartbeat).

urllib refuses `user:password@` in a URL: the credentials go in an
Authorization header instead, percent-decoded, and never into a log line.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit


def request(url: str, method: str = "GET", data: bytes | None = None,
            headers: dict[str, str] | None = None) -> urllib.request.Request:
    """A request for url, its user:password@ sent as Basic authentication."""
    p = urlsplit(url)
    req = urllib.request.Request(urlunsplit(p._replace(netloc=p.netloc.rpartition("@")[2],
                                                       fragment="")),
                                 data=data, method=method, headers=headers or {})
    if p.username is not None:
        cred = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
        req.add_header("Authorization", "Basic " + base64.b64encode(cred).decode())
    return req


def failure(e: Exception) -> str:
    """Why a request failed, in a few words: `HTTP 503`, `Connection refused`."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    return str(getattr(e, "reason", None) or e)
