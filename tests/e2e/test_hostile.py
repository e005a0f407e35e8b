"""Hostile input: what hastd (or anyone who can run hasthook-exec) can put in argv, and
what a broken or malicious rules file can hold. Every case ends in a recorded event or
a clear error; nothing reaches a shell, nothing is taken for an option, no log line
is forged, and nothing hangs the hook.

Template injection in the rules (`{resource.__class__}` ...) is tested in test_render,
test_check and test_notify; here the hostile text is in the values.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import command, run_cmd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receivers import HttpSink, wait_until

from hasthook import exec as hook_exec
from hasthook.config import loader as config
from hasthook.log import SOCKETS, _is_socket
from hasthook.sim.driver import SimNode

SYSLOG_LINE = re.compile(r"^<\d{1,3}>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d hasthook\[\d+\]: ")
FILE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \w+ hasthook\[\d+\]: ")
FORGED = "<13>Nov 25 08:00:00 sshd[1]: Accepted password for root from 10.6.6.6"


def recorder(tmp_path: Path, name: str, out: str) -> str:
    """A program writing its argv, NUL-separated, to OUT/NAME.PID; prints nothing."""
    d = tmp_path / out
    d.mkdir(exist_ok=True)
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {d}/argv.$$\nexit 1\n")
    p.chmod(0o755)
    return str(p)


def calls(tmp_path: Path, out: str) -> list[list[str]]:
    d = tmp_path / out
    if not d.exists():
        return []
    return [os.fsdecode(f.read_bytes()).split("\0")[:-1] for f in sorted(d.iterdir())]


def history(state: Path) -> list[dict]:
    if not (state / "hasthook.db").exists():
        return []
    db = sqlite3.connect(state / "hasthook.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY id")]
    except sqlite3.OperationalError:  # created, no schema yet
        return []
    finally:
        db.close()


# -- resource names ---------------------------------------------------------------

CANARY = "/tmp/hasthook-canary-{pid}"


def names(canary: str) -> list[tuple[str, str | bytes]]:
    return [
        ("semicolon", f"r1;touch {canary}"),
        ("subshell", f"$(touch {canary})"),
        ("backticks", f"`touch {canary}`"),
        ("pipe-and", f"r1|touch {canary}&&touch {canary}"),
        ("quotes", f"r1'\"; touch {canary}; echo \""),
        ("rm-rf", "; rm -rf / --no-preserve-root"),
        ("newline-forges-syslog", f"shared1\n{FORGED}"),
        ("carriage-return-and-escape", "shared1\r\x1b[2Jforged"),
        ("10k-chars", "r" * 10_000),
        ("dash-c", "-c"),
        ("dash-dash-help", "--help"),
        ("dash-rf", "-rf"),
        ("template-lookalike", "{resource.__class__}{host}{{x}}%s%n"),
        ("glob-and-path", "../../etc/*[a]"),
        ("unicode", "r\u202eevil\u2028\U0001F4A5"),
        ("not-utf8", b"r\xff\xfe\x80"),
    ]


@pytest.mark.parametrize("case", [c for c, _ in names("")])
def test_hostile_resource_name_is_recorded_intact_and_runs_nothing(
        write_config, tmp_path, syslog, case):
    canary = CANARY.format(pid=os.getpid()) + f"-{case}"
    name = dict(names(canary))[case]
    shown = hook_exec.argv_text([os.fsdecode(name) if isinstance(name, bytes) else name])[0]
    cfg = write_config(
        {"rules": [{"name": "run", "match": {}, "actions": [{"command": {
            "argv": [recorder(tmp_path, "on-event", "cmd-calls"), "{resource}"]}}]}]},
        hastctl=recorder(tmp_path, "hastctl", "hastctl-calls"))
    try:
        r = subprocess.run([command("hasthook-exec"), "disconnect", name], capture_output=True,
                           env={**os.environ, "HASTHOOK_CONFIG": str(cfg)}, timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
        [row] = history(tmp_path / "state")
        assert (row["event"], row["resource"]) == ("disconnect", shown)
        # The command got the name as one argv element (control characters as `?`, as
        # in every rendered value), and no shell saw it.
        assert calls(tmp_path, "cmd-calls") == [[re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?",
                                                         shown)]]
        assert not os.path.exists(canary)
        # hastctl got it as a name, never an option: `--` first when it starts with '-'.
        want = ["list", "--", shown] if shown.startswith("-") else ["list", shown]
        assert calls(tmp_path, "hastctl-calls") == [want]
        # Every datagram is one line of ours: no forged line, no control characters.
        for line in syslog.drain():  # the hook has exited: all of it is in the socket
            assert SYSLOG_LINE.match(line), line
            assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line), line
            assert not line.startswith(FORGED[:4])
    finally:
        if os.path.exists(canary):
            os.unlink(canary)


def test_names_reach_a_webhook_as_text(write_config, tmp_path):
    """A name that looks like a template arrives literally, in the title and the body,
    and the rule's own placeholders still work."""
    http = HttpSink()
    try:
        cfg = write_config({"channels": {"hooks": f"json://{http.base}/j"}, "rules": [{
            "name": "tell", "match": {}, "group_wait": "0s",
            "actions": [{"notify": {"channels": "hooks", "title": "{event} {resource} on {host}",
                                    "body": "{summary}"}}]}]},
            hastctl="/nonexistent")
        name = "{host}$(id)\n{resource.__class__}"
        assert run_cmd(command("hasthook-exec"), "split-brain", name,
                       env={"HASTHOOK_CONFIG": str(cfg)}).returncode == 0
        [req] = wait_until(lambda: http.received("/j"), what="the message")
        assert req["body"]["title"] == "split-brain {host}$(id)\n{resource.__class__} on host1"
        assert req["body"]["message"] == ("[{host}$(id)\n{resource.__class__}] SPLIT-BRAIN "
                                          "detected on host1")
    finally:
        http.down()


def test_not_utf8_name_does_not_stop_the_database_for_later_events(write_config, tmp_path):
    cfg = write_config(hastctl="/nonexistent")
    env = {**os.environ, "HASTHOOK_CONFIG": str(cfg)}
    for word in (b"bad\xff", b"connect"):
        r = subprocess.run([command("hasthook-exec"), "connect", word], env=env, timeout=60)
        assert r.returncode == 0
    assert [r["resource"] for r in history(tmp_path / "state")] == ["bad\\xff", "connect"]
    assert not (tmp_path / "state" / "spool.jsonl").exists()


def test_names_starting_with_a_dash_are_names_to_hastctl_and_the_tools(write_config, tmp_path):
    """hast.conf allows `resource -c { ... }`; the simulator's hastctl parses options with
    getopt(3) like the real one, so `hastctl list -c` would be a usage error."""
    names = ["-c", "-d"]
    node = SimNode(tmp_path / "sim", "host1",
                   [{"name": n, "localpath": f"/dev/ada{i}"} for i, n in enumerate(names)])
    try:
        for n in names:
            node.set_state(n, role="primary", connected=True, dirty_extents=2)
        cfg = write_config(hastctl=node.hastctl_path, hastd_pidfile=str(node.pidfile),
                           dev_dir=str(node.dev_dir), commands={"pgrep": node.pgrep_path})
        assert run_cmd(command("hasthook-exec"), "disconnect", "-c",
                       env={"HASTHOOK_CONFIG": str(cfg)}).returncode == 0
        [row] = history(tmp_path / "state")
        assert (row["resource"], row["role"], row["dirty"]) == ("-c", "primary", 2 * 2097152)
        r = run_cmd(command("hasthook"), "dirty", "--config", str(cfg), "--", "-c", "-d")
        assert (r.returncode, r.stdout) == (2, "-c 4194304\n-d 4194304\n"), r.stderr
        # Options before the role: argparse takes no option between positionals and `--`.
        r = run_cmd(command("hasthook"), "role", "-c", str(cfg), "secondary", "--", "-d")
        assert r.returncode == 0, r.stderr
        assert ["role", "--", "secondary", "-d"] in node.calls()
        r = run_cmd(node.hastctl_path, "list", "--", "-d")
        assert "  role: secondary" in r.stdout and "  role: primary" in run_cmd(
            node.hastctl_path, "list", "--", "-c").stdout
    finally:
        node.close()


# -- rules files that are bombs, abysses or nonsense -------------------------------


def alias_bomb(where: str, levels: int = 9) -> str:
    lines = ["x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    body = "\n".join(lines)
    if where == "channels":
        return body.replace("x", "  c").replace("  c0", "channels:\n  c0") + "\n"
    return body + f"\nrules: [{{name: r, match: {{resource: *a{levels - 1}}}}}]\n"


BAD_FILES = {
    "alias bomb in channels": (alias_bomb("channels"), "once aliases are expanded"),
    "alias bomb in a match": (alias_bomb("rules"), "once aliases are expanded"),
    "recursive alias": ("rules: &r [*r]\n", "nested more than"),
    "deep nesting": ("rules: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    "nesting past the recursion limit": ("x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
                                         "nested more than"),
    "huge file": ("# " + "x" * (5 * 1024 * 1024) + "\n", "file too large"),
    "wrong types": ("settings: {hook_timeout: [1], hastctl: 5}\nrules: 7\n", ""),
    "command argv a string": ("rules: [{name: r, actions: [{command: {argv: 'rm -rf /'}}]}]\n",
                              "rules[0].actions[0].command.argv"),
    "not a mapping": ("- just\n- a list\n", "must be a mapping"),
    "binary junk": ("\x00\x01\x02\xff\xfe" * 100, ""),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_broken_rules_file_is_an_error_and_the_event_still_recorded(tmp_path, case):
    """`hasthook check` says what is wrong (exit 78); the hook, given the same file
    after a valid settings line, records the event on the built-in defaults and logs
    crit naming the file. Before the bounds, the bombs hung both and the deep files
    killed the hook silently (exit 70)."""
    text, why = BAD_FILES[case]
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(text, errors="surrogateescape")
    r = run_cmd(command("hasthook"), "check", "-c", str(cfg))
    assert r.returncode == 78 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert why in r.stdout + r.stderr
    state = tmp_path / "state"
    # Later keys win in YAML: for "wrong types" the file's own settings replace this line,
    # and as they are invalid the hook keeps only the state_dir it finds in the text.
    cfg.write_text(f"settings: {{state_dir: {state}, hastctl: /nonexistent, "
                   f"syslog: {{socket: /nonexistent}}}}\n" + text, errors="surrogateescape")
    r = run_cmd(command("hasthook-exec"), "split-brain", "shared1",
                env={"HASTHOOK_CONFIG": str(cfg)})
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert [(e["event"], e["resource"]) for e in history(state)] == [("split-brain", "shared1")]
    # Invalid settings are dropped whole: then the line goes to this host's syslogd, if any.
    if case != "wrong types" or not any(map(_is_socket, SOCKETS)):
        log = (state / "hasthook.log").read_text()
        assert re.search(rf" crit hasthook\[\d+\]: config: {re.escape(str(cfg))}:\d+:\d+: ",
                         log), log


# -- properties ------------------------------------------------------------------


@functools.cache
def prop_dir() -> Path:
    """One directory for every example of the properties (function-scoped fixtures and
    hypothesis do not mix), with a rules file whose state and log live in it."""
    d = Path(tempfile.mkdtemp(prefix="hh-prop-"))
    atexit.register(shutil.rmtree, d, True)
    (d / "rules.yaml").write_text(yaml.safe_dump({"settings": {
        "state_dir": str(d / "state"), "hastctl": "/nonexistent", "hostname": "host1",
        "syslog": {"socket": "/nonexistent"}}}))
    return d


_TEXT = st.characters(blacklist_characters="\x00")  # execve(2) cannot pass a NUL
argv_word = st.one_of(
    st.text(_TEXT, max_size=40),
    st.binary(max_size=40).filter(lambda b: b"\x00" not in b).map(os.fsdecode),
    st.sampled_from(["role", "connect", "disconnect", "split-brain", "syncintr", "init",
                     "primary", "secondary", "-c", "--", "$(id)", ";", "\n"]),
    st.text(_TEXT, min_size=4000, max_size=4100),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(argv=st.lists(argv_word, max_size=6))
def test_any_argv_is_recorded_or_refused_never_a_crash(argv):
    """hastd's argv can be anything: 0 with the event recorded (its resource as readable
    text), or 64 with nothing recorded; never an exception (a traceback to /dev/null),
    and every line the hook logged is one line."""
    state = prop_dir() / "state"
    before = len(history(state))
    try:
        code = hook_exec.run(list(argv), str(prop_dir() / "rules.yaml"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert code in (0, 64), (argv, code)
    rows = history(state)
    if code == 0:
        assert len(rows) == before + 1
        assert rows[-1]["resource"] == hook_exec.argv_text(argv)[1]
    else:
        assert len(rows) == before
    for line in (state / "hasthook.log").read_text(errors="replace").splitlines():
        assert FILE_LINE.match(line), line


yaml_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=20))
yaml_data = st.recursive(yaml_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(["settings", "rules", "channels", "templates",
                                               "resources", "match", "actions", "name",
                                               "notify", "command", "argv", "hook_timeout"]),
                              st.text(max_size=8)), kids, max_size=4)), max_leaves=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(yaml_data.map(yaml.safe_dump), st.text(max_size=300)))
def test_any_rules_file_is_valid_or_a_config_error(text):
    """What `hasthook check` and the hook make of any file: problems or ConfigError,
    nothing else escapes; the hook's loader never raises at all."""
    try:
        config.parse_and_validate(text, "rules.yaml")
    except config.ConfigError as e:
        assert str(e).startswith("rules.yaml:")
    path = prop_dir() / "any.yaml"
    path.write_text(text, errors="surrogateescape")
    # A valid file is cached in its state_dir, which here could name any path: not kept.
    with mock.patch.object(config, "save_last_good"):
        cfg, error = config.load_for_hook(str(path))
    assert cfg.settings.state_dir
    assert error is None or cfg.origin in ("defaults", "last-good")
