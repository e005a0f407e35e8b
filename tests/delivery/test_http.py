"""Requests to URLs from the config: credentials leave the URL for a header."""

from __future__ import annotations

import base64
import urllib.error

from hasthook.delivery.http import failure, request


def test_user_and_password_become_basic_auth_percent_decoded():
    req = request("https://al%40erts:p%3Aw%2Fd@127.0.0.1:9093/api/v2/alerts?x=1#frag",
                  "POST", b"[]")
    assert req.full_url == "https://127.0.0.1:9093/api/v2/alerts?x=1"
    auth = req.get_header("Authorization")
    assert base64.b64decode(auth.removeprefix("Basic ")) == b"al@erts:p:w/d"
    assert req.get_method() == "POST"


def test_no_credentials_no_header_and_ipv6_kept():
    req = request("http://[::1]:8080/ping/uuid")
    assert req.full_url == "http://[::1]:8080/ping/uuid"
    assert req.get_header("Authorization") is None


def test_failure_in_a_few_words():
    assert failure(urllib.error.HTTPError("u", 503, "x", {}, None)) == "HTTP 503"  # type: ignore[arg-type]
    assert failure(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
                   ) == "[Errno 111] Connection refused"
