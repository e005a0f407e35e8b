"""Shared test fixtures: a real syslog socket, a config file, the installed commands."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from hasthook.log import Levels

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent  # the checkout: etc/, man/, README.md
# What a copy of the checkout leaves out (tests that build or test from a copy).
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info",
                                     ".pytest_cache", ".ruff_cache", ".mypy_cache",
                                     ".hypothesis", "build", "dist")


@pytest.fixture(autouse=True)
def _no_time_box_left_armed():
    """A hook run in this process (hasthook.exec.run) arms SIGALRM; left armed, it
    strikes some later test with TimeBox. Disarm it and fail the test that left it."""
    yield
    left = signal.setitimer(signal.ITIMER_REAL, 0)[0]
    assert left == 0, "this test left the hook's time box (SIGALRM) armed"


def command(name: str) -> str:
    """The installed console script, next to the interpreter running the tests."""
    path = BIN / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}; pip install -e ."
    return str(path)


class RecordingLog(Levels):
    """A Log that keeps (level, message) pairs instead of sending them to syslog."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, message: str, **_) -> None:
        self.lines.append((level, message))


def evaluate(store, cfg, ev, log):
    """The pipeline as the hook runs it: the event recorded and matched in one
    transaction on a real store; (jobs it would run, rules matched, what was held)."""
    from hasthook.pipeline import Pipeline

    h = Pipeline(cfg, store, log).record(ev)
    return h.jobs, h.matched, h.held


class SyslogSink:
    """A real AF_UNIX datagram socket standing in for syslogd's."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hh-log-", dir="/tmp")
        self.path = os.path.join(self.dir, "log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.lines: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.lines.append(self.sock.recv(65536).decode())
            except BlockingIOError:
                return self.lines

    def wait_for(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.drain():
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no syslog line with {text!r}; got {self.lines}")

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def syslog():
    sink = SyslogSink()
    yield sink
    sink.close()


@pytest.fixture
def write_config(tmp_path, syslog):
    """write_config(data) -> path of a rules.yaml whose state and syslog live in this test."""

    def write(data: dict | None = None, **settings) -> Path:
        data = dict(data or {})
        s = {"state_dir": str(tmp_path / "state"),
             "syslog": {"socket": syslog.path, "tag": "hasthook", "facility": "daemon"},
             "hostname": "host1", **(data.get("settings") or {}), **settings}
        data["settings"] = s
        path = tmp_path / "rules.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def run_cmd(*argv: str, env: dict | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=input)


def doc_yaml(doc: str, first_line: str) -> str:
    """The one ```yaml block of docs/<doc> that starts with first_line."""
    import re

    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / doc).read_text(), re.S)
    [block] = [b for b in blocks if b.startswith(first_line)]
    return block


def check_doc_settings(tmp_path: Path, doc: str, first_line: str) -> None:
    """A docs example of the rules file passes `hasthook check` (state dir: tmp_path's)."""
    data = yaml.safe_load(doc_yaml(doc, first_line))
    data["settings"]["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data))
    r = run_cmd(command("hasthook"), "check", "-c", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def http():
    """A webhook receiver on 127.0.0.1 (tests/receivers.py)."""
    from receivers import HttpSink

    sink = HttpSink()
    yield sink
    sink.hold.set()
    sink.down()


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1."""
    from receivers import SmtpSink

    sink = SmtpSink()
    yield sink
    sink.down()
