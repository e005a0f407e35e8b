"""The man pages: mdoc that `mandoc -Tlint` accepts, and that names every command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hasthook.cli import COMMANDS

MAN = Path(__file__).resolve().parent.parent / "man"
PAGES = ("hasthook.8", "hasthook-exec.8", "hasthook.rules.5")
mandoc = shutil.which("mandoc")
# CI (.ci/run, CI=true) installs mandoc, so there a missing mandoc fails instead of skipping.
needs_mandoc = pytest.mark.skipif(mandoc is None and os.environ.get("CI") != "true",
                                  reason="mandoc is not installed (.ci/run installs it)")


def test_the_pages_exist():
    assert sorted(p.name for p in MAN.iterdir()) == sorted(PAGES)


# The manuals the pages refer to: FreeBSD's (not on the Linux machine the tests run on)
# and ours (not installed where the tests run). `mandoc -Tlint` says it cannot find
# them; that is the only thing it may say.
FREEBSD = {"carp(4)", "cron(8)", "daemon(8)", "devd(8)", "devd.conf(5)", "fstab(5)", "hast.conf(5)",
           "hastctl(8)", "hastd(8)", "mount(8)", "newsyslog.conf(5)", "rc(8)", "rc.conf(5)",
           "service(8)", "sysexits(3)", "syslog(3)", "syslog.conf(5)", "zpool(8)"}
OURS = {"hasthook(8)", "hasthook-exec(8)", "hasthook.rules(5)"}


@needs_mandoc
@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_finds_nothing_but_manuals_this_machine_lacks(page):
    """`mandoc -Tlint` at every level, style included (not `-W warning`)."""
    p = subprocess.run([mandoc, "-Tlint", str(MAN / page)], capture_output=True, text=True)
    left = []
    for line in (p.stdout + p.stderr).splitlines():
        m = (re.search(r"STYLE: referenced manual not found: Xr (\S+) (\d)", line)
             or re.search(r"outdated mandoc.db lacks (\S+)\((\d)\) entry", line))
        if not (m and f"{m[1]}({m[2]})" in FREEBSD | OURS):
            left.append(line)
    assert left == []


@pytest.mark.parametrize("page", PAGES)
def test_every_cross_reference_names_a_real_manual(page):
    refs = {f"{n}({s})" for n, s in re.findall(r"\.Xr (\S+) (\d)", (MAN / page).read_text())}
    assert refs <= FREEBSD | OURS, refs - FREEBSD - OURS


@needs_mandoc
@pytest.mark.parametrize("page", PAGES)
def test_quotes_render_paired(page):
    """`.Pq Ql a No or Ql b` rendered as (‘a or ‘b’’): every quote closes before the next."""
    p = subprocess.run([mandoc, "-Tutf8", str(MAN / page)], capture_output=True, text=True)
    text = re.sub(r".\x08", "", p.stdout)
    assert p.returncode == 0 and "‘" in text
    assert re.findall(r"‘[^’]*‘|’’", text) == []


def test_hasthook_8_documents_every_command():
    text = (MAN / "hasthook.8").read_text()
    documented = set(re.findall(r"^\.It Cm ([a-z][a-z-]*)", text, re.M))
    assert set(COMMANDS) <= documented, set(COMMANDS) - documented


def test_rules_5_documents_every_top_level_key_and_setting():
    import json

    schema = json.loads((MAN.parent / "hasthook" / "config" / "schema.json").read_text())
    text = (MAN / "hasthook.rules.5").read_text()
    keys = set(re.findall(r"^\.It Ic ([a-z_]+)", text, re.M))
    assert set(schema["properties"]) <= keys, set(schema["properties"]) - keys
    settings = set(schema["properties"]["settings"]["properties"])
    assert settings <= keys, settings - keys
    assert set(schema["$defs"]["resource"]["properties"]) <= keys
