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


@needs_mandoc
@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_is_clean(page):
    p = subprocess.run([mandoc, "-Tlint", "-W", "warning", str(MAN / page)],
                       capture_output=True, text=True)
    assert (p.returncode, p.stdout + p.stderr) == (0, "")


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
