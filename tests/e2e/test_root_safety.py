"""hasthook runs as root: what it runs, reads, writes and shows can be steered by nobody
else (issue 13). Real processes; `nobody` (via setpriv) plays the other user.

- the trust rule: programs a config names run only when the config, the program and
  the directories above them are root's and writable by no one else;
- secrets in channel URLs never reach a log line, the database or any output;
- a state dir or textfile directory another user controls is refused, whatever
  links they plant; no root-owned file changes content or mode;
- a channel whose apprise config is missing or untrusted is told, not left to die;
- control characters in a resource name are printed escaped; a 100 KB name works.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import command, run_cmd
from receivers import HttpSink, wait_until

NOBODY = pwd.getpwnam("nobody")


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                           "--clear-groups", *argv], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def base():
    """A directory nobody can enter (tmp_path is root's 0700), removed after."""
    d = Path(tempfile.mkdtemp(prefix="hh-safety-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def config(path: Path, data: dict, state: Path, log: Path, **settings) -> Path:
    s = {"state_dir": str(state), "hostname": "host1", "syslog": {"socket": str(log)},
         **settings}
    path.write_text(yaml.safe_dump({**data, "settings": s}, sort_keys=False))
    path.chmod(0o600)
    return path


def hook(cfg: Path, *words: str) -> subprocess.CompletedProcess:
    return run_cmd(command("hasthook-exec"), *words, env={"HASTHOOK_CONFIG": str(cfg)})


def hasthook(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cmd(command("hasthook"), *args, "-c", str(cfg))


# -- the trust rule -------------------------------------------------------------------


def canary(tmp_path: Path) -> tuple[str, Path]:
    """A program that would leave a file behind if it ever ran (root's, 0755)."""
    ran = tmp_path / "ran"
    prog = tmp_path / "bin" / "canary"
    prog.parent.mkdir()
    prog.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {ran}\n")
    prog.chmod(0o755)
    return str(prog), ran


@pytest.mark.parametrize("how", ["the file writable by others", "its directory writable "
                                 "by others", "the file owned by another user"])
def test_programs_an_untrusted_config_names_never_run(tmp_path, syslog, http, how):
    prog, ran = canary(tmp_path)
    conf = tmp_path / "conf"
    conf.mkdir()
    cfg = config(conf / "rules.yaml", {
        "channels": {"ops": f"json://{http.base}/ops"},
        "rules": [{"name": "sb", "match": {"event": "split-brain"},
                   "actions": [{"command": {"argv": [prog, "{resource}"]}}]}],
        "resources": {"shared1": {"filesystem": "ufs", "mountpoint": "/mnt/x"}}},
        tmp_path / "state", Path(syslog.path), hastctl=prog, group_wait="0s",
        commands={k: prog for k in ("fsck", "mount", "umount", "zpool", "service", "pgrep")})
    if how.startswith("the file writable"):
        cfg.chmod(0o666)
    elif how.startswith("its directory"):
        conf.chmod(0o777)
    else:
        os.chown(cfg, NOBODY.pw_uid, NOBODY.pw_gid)
    assert hook(cfg, "split-brain", "shared1").returncode == 0
    assert hasthook(cfg, "failover", "promote", "shared1").returncode != 0
    assert hasthook(cfg, "role", "secondary", "shared1").returncode != 0
    assert not ran.exists()  # not hastctl, not fsck, mount, pgrep..., not the command
    # The event is recorded, enriched (or not) by the built-in /sbin/hastctl instead.
    assert "local state unknown: /sbin/hastctl" in syslog.wait_for("[shared1] local state")
    assert "programs refused" in syslog.wait_for("programs refused")
    r = hasthook(cfg, "history", "--json")
    assert "split-brain" in [e["event"] for e in json.loads(r.stdout)]
    # hasthook's own alert is queued for the alert channels.
    titles = [m["title"] for m in json.loads(hasthook(cfg, "queue", "--json", "--sent").stdout)]
    assert f"hasthook on host1: programs refused in {cfg}" in titles
    r = hasthook(cfg, "check")
    assert r.returncode == 78 and str(cfg) in r.stderr and "chmod go-w" in r.stderr


def test_a_program_others_can_change_never_runs_even_from_a_trusted_config(tmp_path, syslog):
    prog, ran = canary(tmp_path)
    os.chown(prog, NOBODY.pw_uid, NOBODY.pw_gid)  # nobody could rewrite it
    cfg = config(tmp_path / "rules.yaml", {}, tmp_path / "state", Path(syslog.path),
                 hastctl=prog)
    assert hook(cfg, "connect", "shared1").returncode == 0
    assert not ran.exists()
    line = syslog.wait_for("programs refused")
    assert f"settings.hastctl {prog} not run" in line and "/sbin/hastctl instead" in line
    r = hasthook(cfg, "check")
    assert r.returncode == 78 and f"{prog} is owned by uid {NOBODY.pw_uid}" in r.stderr


# -- secrets never shown ----------------------------------------------------------------

SECRETS = {"S1": "S1apikeyvalue0001", "S2": "S2headervalue0002",
           "S3": "S3pathtoken00000003xyz", "S4": "S4password00004", "S5": "S5ampass00005"}


@pytest.mark.parametrize("works", [True, False])
def test_no_secret_of_a_url_is_ever_shown(tmp_path, syslog, works):
    s = SECRETS
    http = HttpSink()
    try:
        if not works:
            http.status = 500
        base = f"127.0.0.1:{http.port}"
        urls = [f"json://{base}/a?-apikey={s['S1']}", f"json://{base}/b?+X-Api-Key={s['S2']}",
                f"json://{base}/hooks/{s['S3']}", f"json://alerts:{s['S4']}@{base}/d"]
        cfg = config(tmp_path / "rules.yaml", {
            "channels": {"ops": urls, "am": {"alertmanager": f"http://am:{s['S5']}@{base}/"}},
            "rules": [{"name": "all", "match": {"event": "*"},
                       "actions": [{"notify": ["ops", "am"]}]}]},
            tmp_path / "state", Path(syslog.path), group_wait="0s", send_timeout="5s")
        assert hook(cfg, "disconnect", "shared1").returncode == 0
        wait_until(lambda: len(http.received()) >= 5, what="every URL tried")
        outputs = [hasthook(cfg, *a) for a in (
            ["queue"], ["queue", "--json", "--sent"], ["notify-test", "ops"], ["check"],
            ["history"], ["history", "--json"], ["flush", "--all"], ["status"])]
        text = "\n".join(r.stdout + r.stderr for r in outputs)
        text += "\n".join(syslog.drain())
        state = tmp_path / "state"
        if (state / "hasthook.log").exists():
            text += (state / "hasthook.log").read_text()
        db = sqlite3.connect(state / "hasthook.db")
        text += "\n".join(db.iterdump())
        db.close()
        assert ("sent to ops via" in text) == works  # the run really told, or failed
        for name, secret in s.items():
            assert secret not in text, name
        assert "json://127.0.0.1" in text  # what is shown still says where
    finally:
        http.down()


# -- a state dir or a textfile directory another user controls ---------------------------


def victims(base: Path) -> dict[Path, tuple[bytes, int]]:
    out = {}
    for name in ("passwd", "shadow", "secret.key"):
        p = base / f"victim-{name}"
        p.write_bytes(f"root's {name}\n".encode())
        p.chmod(0o600)
        out[p] = (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
    return out


PLANTED = ("hasthook.db", "hasthook.db-wal", "hasthook.db-shm", "hasthook.log", "deliver.lock",
           "db.lock", "config.lock", "config.lkg.json", "config.bad.json", "spool.jsonl",
           "spool.rejected.jsonl", "recover.shared1.lock", "failover.lock")


@pytest.mark.parametrize("owner", ["nobody's", "world-writable"])
def test_a_state_dir_others_control_is_refused_whatever_they_plant(base, syslog, owner):
    files = victims(base)
    state = base / "state"
    state.mkdir()
    if owner == "nobody's":
        os.chown(state, NOBODY.pw_uid, NOBODY.pw_gid)
    else:
        state.chmod(0o777)
    targets = list(files)
    for i, name in enumerate(PLANTED):
        r = as_nobody("ln", "-s", str(targets[i % len(targets)]), str(state / name))
        assert r.returncode == 0, r.stderr
    cfg = config(base / "rules.yaml", {"channels": {"ops": "json://127.0.0.1:9/x"}}, state,
                 Path(syslog.path), hastctl="/nonexistent")
    assert hook(cfg, "split-brain", "shared1").returncode == 0
    assert "state dir refused" in syslog.wait_for("cannot record")
    for args in (["history"], ["flush"], ["queue"], ["status"], ["recover", "shared1"]):
        r = hasthook(cfg, *args)
        assert r.returncode != 0 and "state dir refused" in r.stderr, args
        assert "Traceback" not in r.stderr
    for p, (content, mode) in files.items():
        assert (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) == (content, mode), p
    assert [n for n in PLANTED if not (state / n).is_symlink()] == []  # none replaced


@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_textfile_directory_others_can_write(base, syslog, mode):
    files = victims(base)
    target = next(iter(files))
    out = base / "textfile"
    out.mkdir()
    out.chmod(mode)
    r = as_nobody("ln", "-s", str(target), str(out / "hasthook.prom"))
    assert r.returncode == 0
    cfg = config(base / "rules.yaml", {}, base / "state", Path(syslog.path),
                 hastctl="/nonexistent")
    r = hasthook(cfg, "metrics", "--textfile", str(out / "hasthook.prom"))
    if mode == 0o777:  # others may swap the file: refused, and said why
        assert r.returncode != 0 and "writable by group or other" in r.stderr
        assert (out / "hasthook.prom").is_symlink()
    else:  # sticky: nobody cannot touch root's file; the link itself is replaced
        assert r.returncode == 0, r.stderr
        written = out / "hasthook.prom"
        assert not written.is_symlink() and written.stat().st_uid == 0
        assert stat.S_IMODE(written.stat().st_mode) == 0o644
        assert "hasthook_hastd_up" in written.read_text()
    for p, (content, m) in files.items():
        assert (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) == (content, m), p


# -- a channel that cannot send is told --------------------------------------------------


@pytest.mark.parametrize("problem", ["missing", "writable by others"])
def test_a_broken_apprise_config_is_told_not_left_to_die(tmp_path, syslog, problem):
    http = HttpSink()
    try:
        conf = tmp_path / "apprise.yml"
        if problem != "missing":
            conf.write_text(f"urls:\n  - json://{http.base}/mail\n")
            conf.chmod(0o666)
        cfg = config(tmp_path / "rules.yaml", {
            "channels": {"mail": {"apprise_config": str(conf)},
                         "ops": f"json://{http.base}/ops"},
            "rules": [{"name": "link", "match": {"event": "disconnect"},
                       "actions": [{"notify": "mail"}]}]},
            tmp_path / "state", Path(syslog.path), group_wait="0s", max_age="10s")
        r = hasthook(cfg, "check")
        assert r.returncode == 78 and "channels.mail.apprise_config" in r.stderr
        assert str(conf) in r.stderr
        assert hook(cfg, "disconnect", "shared1").returncode == 0
        [told] = wait_until(lambda: http.received("/ops"), what="the other channel told")
        assert told["body"]["title"] == "hasthook on host1: channel mail cannot send"
        assert http.received("/mail") == []
        # The message itself goes dead after max_age; flush says so while it lasts.
        wait_until(lambda: hasthook(cfg, "flush").returncode == 69, timeout=120,
                   what="flush to report the dead message")
        assert hasthook(cfg, "flush").returncode == 69
    finally:
        http.down()


# -- names --------------------------------------------------------------------------------


def test_control_characters_in_a_name_are_printed_escaped(tmp_path, syslog):
    name = "r\x1b]0;owned\x07\x1b[31m"
    cfg = config(tmp_path / "rules.yaml", {
        "channels": {"ops": "json://127.0.0.1:9/x"},
        "rules": [{"name": "all", "match": {"event": "*"},
                   "actions": [{"notify": "ops"}]}]},
        tmp_path / "state", Path(syslog.path), hastctl="/nonexistent", group_wait="1h")
    assert hook(cfg, "disconnect", name).returncode == 0
    for args in (["history"], ["queue"], ["status"], ["test", "disconnect", name]):
        r = hasthook(cfg, *args)
        out = r.stdout + r.stderr
        assert "\x1b" not in out and "\x07" not in out, args
        if args[0] != "status":  # status fails before: hastctl cannot be asked
            assert "r\\x1b]0;owned\\x07\\x1b[31m" in out, args
    history = json.loads(hasthook(cfg, "history", "--json").stdout)
    assert history[0]["resource"] == name  # JSON stays exact


def test_a_100k_resource_name_still_recovers(tmp_path, syslog):
    name = "r" * 100_000
    calls = tmp_path / "calls"
    ctl = tmp_path / "hastctl"
    # A stand-in hastctl keeping one role (a secondary at first) and the calls it got.
    role = tmp_path / "role"
    role.write_text("secondary")
    ctl.write_text(f"#!/bin/sh\necho \"$1 ${{#2}} ${{#3}} ${{#4}}\" >> {calls}\n"
                   f'if [ "$1" = role ]; then printf %s "$2" > {role}; fi\n'
                   f'if [ "$1" = list ]; then printf "%s:\\n  role: %s\\n" "$2" "$(cat {role})"; '
                   "fi\n")
    ctl.chmod(0o755)
    cfg = config(tmp_path / "rules.yaml", {
        "rules": [{"name": "sb", "match": {"event": "split-brain"},
                   "actions": [{"recover": {"delay": "0s"}}]}]},
        tmp_path / "state", Path(syslog.path), hastctl=str(ctl))
    assert hook(cfg, "split-brain", name).returncode == 0
    report = json.loads(hasthook(cfg, "history", "--json", "--event", "recover").stdout)
    assert [r["extra"]["state"] for r in report] == ["recovered"]
    assert [ln.split()[0] for ln in calls.read_text().splitlines()][-6:] == [
        "role", "list", "create", "list", "role", "list"]  # each change after a fresh read
    locks = [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith("recover.")]
    assert len(locks) == 1 and len(locks[0]) < 255
