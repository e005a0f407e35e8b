"""The README's Quick start, second command, in a fresh clone with nothing beside it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import article
import pytest
from conftest import COPY_IGNORE, REPO


def test_only_the_differential_test_reads_outside_the_checkout():
    """What the test below relies on: the article (tests/article.py) is the one thing
    a test takes from beside the checkout, and only test_dirty.py asks for it."""
    users = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("*.py")
                   if re.search(r"^import article$", p.read_text(), re.M))
    assert users == ["tests/test_quickstart.py", "tests/tools/test_dirty.py"]
    here = ("article.py", "test_quickstart.py")
    outside = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests").rglob("*.py")
                     if p.name not in here
                     and re.search(r"""["']shared["']\s*[/)]""", p.read_text()))
    assert outside == []


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of the repository in a directory of its own: no ../shared beside it."""
    top = tmp_path_factory.mktemp("fresh")
    copy = top / "hasthook"
    shutil.copytree(REPO, copy, ignore=COPY_IGNORE)
    assert sorted(os.listdir(top)) == ["hasthook"]
    return copy


def without_article() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (article.ENV, "PYTHONPATH")}


def test_ci_fails_without_the_article(clone, tmp_path):
    """.ci/run's check, run as .ci/run runs it, before anything is installed."""
    [check] = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
               if "tests/article.py" in line and not line.startswith("#")]
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index(check) < ci.index("apt-get install") < ci.index("-m pytest tests")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=clone,
                       env=without_article(), capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "the source article" in r.stderr, r
    found = tmp_path / "seed"
    found.mkdir()
    (found / article.NAME).write_text("the article\n")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=clone,
                       env={**without_article(), article.ENV: str(found)},
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, ""), r


def test_pytest_in_a_fresh_clone_passes_and_says_why_the_differential_test_skips(clone):
    """`python -m pytest tests` from a copy of the repository with no ../shared beside it.

    The whole suite takes minutes, far too long inside a test, and all but one of
    its files never look outside the checkout (pinned by the first test here). So this
    runs the one file that does, tests/tools/test_dirty.py, exactly as the README's
    command would (same interpreter, `python -m pytest`, from the copy's top), and
    checks that its pure tests pass, that every differential test is reported as
    skipped with the reason (the article is missing, $HASTHOOK_ARTICLE unset), and
    that nothing fails or errors.
    """
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/tools/test_dirty.py", "-rs",
                        "-p", "no:cacheprovider"], cwd=clone, env=without_article(),
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # The copy's own test file ran, not this checkout's.
    assert f"rootdir: {clone}" in out, out
    summary = re.search(r"(\d+) passed, (\d+) skipped in", out)
    assert summary, out
    assert int(summary[1]) > 0 and int(summary[2]) == 5, out
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 5, out
    for line in skips:
        assert "the source article" in line and "$HASTHOOK_ARTICLE is not set" in line, line
        assert "differential test" in line, line
    assert not re.search(r"\b(failed|error)", out, re.I), out
