"""One contract for every `hasthook` command, as hasthook(8) states it.

Every status of the man page's EXIT STATUS table from a command of each family that
can end with it (history and queue; check and test; flush and notify-test; metrics;
the HAST tools; silence; demo and schema), each a real process: one line on stderr
naming what went wrong, never a traceback. Then what the table's prose promises:
read-only commands create no state directory, every command that changes state has
-n/--dry-run, no command offers an option it ignores, usage lines show what is
required, empty results say so.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, command, run_cmd
from samples import LIST_SAMPLE

# Run as `nobody`, as an admin who is not root would (the suite runs as root).
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def hasthook(*argv: str, nobody: bool = False, env: dict | None = None):
    cmd = [command("hasthook"), *argv]
    if nobody:
        assert shutil.which("setpriv"), "setpriv (util-linux) runs commands as nobody"
        cmd = NOBODY + cmd
    return run_cmd(*cmd, env=env)


def fails(r, status: int) -> str:
    """The one line a failing command prints, after checking its status."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    return r.stderr


class Node:
    """A world-readable directory: a rules file, a hastctl stand-in answering for
    shared1, and the state directory (made 0700 by the first hook, as root)."""

    def __init__(self, syslog):
        self.dir = Path(tempfile.mkdtemp(prefix="hh-cli-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.state = self.dir / "state"
        hastctl = self.dir / "hastctl"
        listed = LIST_SAMPLE.format(pid=1).replace("storage", "shared1")
        hastctl.write_text("#!/bin/sh\ncase \"$1\" in\n"
                           "dump) echo 'resource: shared1' ;;\n"
                           f"list) cat <<'EOF'\n{listed}EOF\n;;\nesac\n")
        hastctl.chmod(0o755)
        self.cfg = self.dir / "rules.yaml"
        self.write({"channels": {"ops": "json://127.0.0.1:9/hook"},  # nothing listens
                    "rules": [{"name": "link", "match": {"event": "disconnect"},
                               "group_wait": "0s", "actions": [{"notify": "ops"}]}]},
                   state_dir=str(self.state), hastctl=str(hastctl), hostname="host1",
                   syslog={"socket": syslog.path})

    def write(self, data: dict, **settings) -> None:
        data = {**data, "settings": {**settings}} if settings else data
        self.data = data
        self.cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        self.cfg.chmod(0o644)

    def setting(self, **settings) -> None:
        self.write({**self.data, "settings": {**self.data["settings"], **settings}})

    def hook(self, *words: str) -> None:
        r = run_cmd(command("hasthook-exec"), *words, env={"HASTHOOK_CONFIG": str(self.cfg)})
        assert r.returncode == 0 and self.state.is_dir()

    def run(self, *argv: str, nobody: bool = False):
        return hasthook("-c", str(self.cfg), *argv, nobody=nobody)


@pytest.fixture
def node(syslog):
    n = Node(syslog)
    yield n
    shutil.rmtree(n.dir, ignore_errors=True)


# -- every status of the table ----------------------------------------------------------

def test_0_success(node):
    node.hook("disconnect", "shared1")
    assert node.run("history").returncode == 0
    assert node.run("status").returncode == 0
    assert node.run("check", "-q").returncode == 0


USAGE_ERRORS = [
    ["bogus"], ["histroy"],
    ["history", "--limit", "x"], ["history", "--event", "disconect"], ["queue", "--bogus"],
    ["test"], ["test", "splitbrain", "shared1"], ["check", "extra"],
    ["flush", "--bogus"], ["notify-test"], ["notify-test", "ops", "--timeout", "soon"],
    ["metrics", "--textfile"],
    ["dirty", "-w", "1"], ["role"], ["role", "boss"], ["status", "extra"],
    ["failover", "sideways"], ["recover"], ["recover", "shared1", "--delay", "soon"],
    ["silence"], ["silence", "add", "shared1"],
    ["silence", "add", "shared1", "--for", "1h", "--event", "disconect"],
    ["demo", "--resources", "1"], ["schema", "extra"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=" ".join)
def test_64_a_usage_error_in_every_family(node, argv):
    """argparse's own errors (it exits 2) and the commands' checks alike."""
    uses_config = argv[0] not in ("demo", "schema")
    r = hasthook(*(["-c", str(node.cfg)] if uses_config else []), *argv)
    assert r.returncode == 64, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    last = r.stderr.splitlines()[-1]
    assert re.match(r"hasthook( [a-z-]+)*: ", last), r.stderr
    if len(r.stderr.splitlines()) > 1:  # argparse's: the usage, then the error
        assert r.stderr.startswith("usage: hasthook"), r.stderr
    assert not node.state.exists()


@pytest.mark.parametrize("argv,hint", [
    (["histroy"], "(did you mean 'history'?)"),
    (["history", "--event", "disconect"], "(did you mean 'disconnect'?)"),
    (["history", "--event", "recovr"], "(did you mean 'recover'?)"),
    (["test", "splitbrain", "shared1"], "(did you mean 'split-brain'?)"),
    (["silence", "add", "shared1", "--for", "1h", "--event", "disconect"],
     "(did you mean 'disconnect'?)"),
    (["role", "primery"], "(did you mean 'primary'?)"),
])
def test_a_mistyped_name_gets_a_did_you_mean(node, argv, hint):
    r = node.run(*argv)
    assert r.returncode == 64 and hint in r.stderr.splitlines()[-1], r.stderr


def test_65_an_unknown_silence_id(node):
    assert fails(node.run("silence", "del", "999"), 65) == (
        "hasthook: silence del: no silence 999\n")


MISSING_CONFIG = [["history"], ["queue"], ["check"], ["test", "connect", "shared1"],
                  ["flush"], ["notify-test", "ops"], ["metrics"], ["dirty"],
                  ["role", "init", "shared1"], ["status"], ["failover", "promote"],
                  ["recover", "shared1"], ["silence", "list"]]


@pytest.mark.parametrize("argv", MISSING_CONFIG, ids=" ".join)
def test_66_a_named_rules_file_that_does_not_exist(argv, tmp_path):
    missing = tmp_path / "nope.yaml"
    assert fails(hasthook("-c", str(missing), *argv), 66) == f"hasthook: {missing}: no such file\n"


def test_66_from_the_environment_and_for_a_file_one_cannot_read(node):
    r = hasthook("status", env={"HASTHOOK_CONFIG": str(node.dir / "nope.yaml")})
    assert fails(r, 66) == f"hasthook: {node.dir / 'nope.yaml'}: no such file\n"
    node.cfg.chmod(0o600)  # root's
    for argv in (["history"], ["check"], ["test", "connect", "shared1"]):
        r = node.run(*argv, nobody=True)
        assert fails(r, 66) == f"hasthook: {node.cfg}: Permission denied\n", argv


def test_69_hastd_or_a_channel_unavailable(node):
    node.setting(hastctl="/nonexistent/hastctl")
    assert "cannot read resource state from hastd" in fails(node.run("status"), 69)
    r = node.run("notify-test", "ops")  # 127.0.0.1:9: refused
    assert r.returncode == 69 and r.stdout.startswith("FAIL  json://127.0.0.1:9/hook")


def test_73_a_textfile_that_cannot_be_written(node):
    where = node.dir / "no-such-dir" / "hasthook.prom"
    assert fails(node.run("metrics", "--textfile", str(where)), 73).startswith(
        f"hasthook: cannot write {where}: ")


STATE_READERS = [["history"], ["queue"], ["status"], ["metrics"], ["silence", "list"],
                 ["flush"], ["silence", "add", "shared1", "--for", "1h"]]


@pytest.mark.parametrize("argv", STATE_READERS, ids=" ".join)
def test_74_a_state_dir_that_is_a_file(node, argv):
    node.state.write_text("not a directory\n")
    assert fails(node.run(*argv), 74) == (
        f"hasthook: {node.state}: not a directory (settings.state_dir)\n")


def test_75_messages_wait_for_a_retry(node):
    node.hook("disconnect", "shared1")      # its message is refused: queued for a retry
    r = node.run("flush", "--all")
    assert r.returncode == 75, r.stderr
    assert "0 sent, 1 failed" in r.stdout
    [row] = [ln for ln in node.run("queue").stdout.splitlines() if "shared1" in ln]
    assert "shared1 disconnect: 2 attempts, next in " in row


@pytest.mark.parametrize("argv", STATE_READERS, ids=" ".join)
def test_77_a_state_dir_nobody_may_read_names_it_no_traceback(node, argv):
    node.hook("disconnect", "shared1")      # root's: 0700
    assert fails(node.run(*argv, nobody=True), 77) == (
        f"hasthook: {node.state}: permission denied (settings.state_dir; hasthook-exec keeps "
        "it as root: run this as root)\n")


def test_77_does_not_stop_what_needs_no_state(node):
    """`test` says the history could not be read and still dry-runs; `check` says it
    cannot tell whether the hook has a good copy."""
    node.hook("disconnect", "shared1")
    r = node.run("test", "disconnect", "shared1", nobody=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].endswith(
        f"not read ({node.state / 'hasthook.db'}: Permission denied)")
    node.cfg.write_text(node.cfg.read_text().replace("disconnect", "disconect"))
    r = node.run("check", nobody=True)
    assert r.returncode == 78
    assert r.stderr.splitlines()[-1].endswith(
        "whether the hook has a good copy to run on cannot be read here "
        f"({node.state / 'config.lkg.json'}: Permission denied)")


def test_74_or_0_for_test_when_the_state_dir_is_a_file(node):
    node.state.write_text("x\n")
    r = node.run("test", "disconnect", "shared1")
    assert r.returncode == 0 and "no history yet" not in r.stdout
    assert r.stdout.splitlines()[-1].endswith(
        f"not read ({node.state / 'hasthook.db'}: Not a directory)")


BROKEN_CONFIG = [["history"], ["check"], ["test", "connect", "shared1"], ["flush"],
                 ["notify-test", "ops"], ["status"], ["dirty"], ["silence", "list"]]


@pytest.mark.parametrize("argv", BROKEN_CONFIG, ids=" ".join)
def test_78_a_broken_rules_file(node, argv):
    node.cfg.write_text(node.cfg.read_text().replace("event: disconnect", "event: disconect"))
    r = node.run(*argv)
    assert r.returncode == 78 and "Traceback" not in r.stderr
    assert f"{node.cfg}:" in r.stderr and "did you mean 'disconnect'?" in r.stderr


def test_78_a_rules_file_that_is_not_utf8(node):
    node.cfg.write_bytes(node.cfg.read_bytes() + b"# caf\xe9\n")
    for argv in (["check"], ["history"]):
        assert fails(node.run(*argv), 78).startswith(f"hasthook: {node.cfg}: not UTF-8 text")


COVERED = {0: test_0_success, 64: test_64_a_usage_error_in_every_family,
           65: test_65_an_unknown_silence_id,
           66: test_66_a_named_rules_file_that_does_not_exist,
           69: test_69_hastd_or_a_channel_unavailable,
           73: test_73_a_textfile_that_cannot_be_written,
           74: test_74_a_state_dir_that_is_a_file, 75: test_75_messages_wait_for_a_retry,
           77: test_77_a_state_dir_nobody_may_read_names_it_no_traceback,
           78: test_78_a_broken_rules_file}


def test_every_status_of_the_man_pages_table_is_tested():
    text = (REPO / "man" / "hasthook.8").read_text()
    section = text.split(".Sh EXIT STATUS\n")[1].split("\n.Sh ")[0]
    table = {int(n) for n in re.findall(r"^\.It (\d+)", section, re.M)}
    assert table == set(COVERED)


# -- what the table's prose promises -------------------------------------------------------

def test_read_only_commands_never_create_the_state_dir(node):
    for argv in (["history"], ["history", "--json"], ["queue"], ["status"], ["metrics"],
                 ["silence", "list"], ["test", "split-brain", "shared1"], ["check"],
                 ["dirty"], ["flush", "--dry-run"],
                 ["silence", "add", "shared1", "--for", "1h", "-n"],
                 ["silence", "del", "-n", "1"]):
        r = node.run(*argv)
        assert r.returncode in (0, 65), (argv, r.stderr)
        assert not node.state.exists(), argv


def test_a_read_only_command_brings_an_older_database_up_to_date(node):
    """After an upgrade, before any hook ran: read-only, the tables this version adds
    would be missing; the command migrates as the next hook would."""
    import sqlite3

    from hasthook.store import SCHEMA_VERSION

    node.hook("connect", "shared1")
    db = sqlite3.connect(node.state / "hasthook.db")
    db.execute("DROP TABLE silences")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    r = node.run("silence", "list")
    assert (r.returncode, r.stdout, r.stderr) == (0, "no active silences\n", "")
    db = sqlite3.connect(node.state / "hasthook.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_empty_results_say_so(node):
    assert node.run("history").stdout == "no events recorded yet\n"
    assert node.run("queue").stdout == (
        "nothing queued: no message pending, being sent or dead\n")
    assert node.run("silence", "list").stdout == "no active silences\n"
    node.hook("connect", "shared1")
    [none, reach] = node.run("history", "--event", "split-brain", "--since",
                             "1h").stdout.splitlines()
    assert none == "no events match --event split-brain, --since 1h"
    assert reach.startswith("# the history reaches back to ")  # what retention kept
    assert json.loads(node.run("history", "--resource", "x", "--json").stdout) == []


WRITERS = [["flush"], ["recover"], ["role"], ["failover"], ["silence", "add"],
           ["silence", "del"]]


@pytest.mark.parametrize("argv", WRITERS, ids=" ".join)
def test_every_command_that_changes_state_has_dry_run(argv):
    r = hasthook(*argv, "--help")
    assert r.returncode == 0 and re.search(r"^\s+-n, --dry-run\b", r.stdout, re.M), r.stdout


def test_flush_dry_run_says_what_it_would_send_and_sends_nothing(node):
    node.hook("disconnect", "shared1")
    before = node.run("queue", "--json").stdout
    r = node.run("flush", "--all", "-n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "would send to ops: one message for 1 queued row",
        "  [warning] shared1 lost its peer (host1)",
        "dry run: nothing taken in, sent or changed"]
    assert node.run("queue", "--json").stdout == before


@pytest.mark.parametrize("name", ["demo", "schema"])
def test_no_command_offers_an_option_it_ignores(node, name):
    """The demo brings its own rules; the schema is the same for every file."""
    assert not re.search(r"(^|\s)-c\b|--config", hasthook(name, "--help").stdout)
    r = hasthook("-c", str(node.cfg), name)
    assert r.returncode == 64
    assert r.stderr.splitlines()[-1] == (f"hasthook {name}: error: -c/--config: {name} reads "
                                         "no rules file")


@pytest.mark.parametrize("argv,usage", [
    (["recover"], "usage: hasthook recover RESOURCE [--delay SECONDS] [-n]"),
    (["silence", "add"], "usage: hasthook silence add (RESOURCE | --all) --for DURATION"),
    (["silence", "del"], "usage: hasthook silence del [-n] [-c FILE] ID"),
    (["test"], "usage: hasthook test [options] EVENT RESOURCE [OLDROLE NEWROLE]"),
    (["notify-test"], "usage: hasthook notify-test [-h] [-c FILE] [--timeout DURATION] CHANNEL"),
])
def test_usage_lines_show_what_is_required(argv, usage):
    assert hasthook(*argv, "--help").stdout.startswith(usage)
