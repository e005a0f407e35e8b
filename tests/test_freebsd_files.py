"""The FreeBSD integration files in etc/: they parse, and they say what hasthook accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hasthook.cli import build_parser

ETC = Path(__file__).resolve().parent.parent / "etc"
RC = ETC / "rc.d" / "hasthook"

# Just enough of /etc/rc.subr to run the script's functions as rc(8) would.
FAKE_RC_SUBR = r"""
load_rc_config() { :; }
warn() { echo "$0: WARNING: $*" >&2; }
checkyesno() {
	eval _value=\$${1}
	case $_value in [Yy][Ee][Ss]|[Tt][Rr][Uu][Ee]|[Oo][Nn]|1) return 0 ;; *) return 1 ;; esac
}
run_rc_command() {
	_arg=$1
	case $_arg in fast*) rc_fast=yes; _arg=${_arg#fast} ;; esac
	eval _cmd=\$${_arg}_cmd
	[ -n "$_cmd" ] || { echo "unknown command $1" >&2; return 3; }
	$_cmd
}
"""


def test_rc_script_parses():
    assert subprocess.run(["sh", "-n", str(RC)], capture_output=True).returncode == 0


def test_rc_script_header_follows_rcorder():
    text = RC.read_text()
    assert re.search(r"^# PROVIDE: hasthook$", text, re.M)
    assert re.search(r"^# REQUIRE: hastd$", text, re.M)
    assert re.search(r"^# KEYWORD: .*\bshutdown\b", text, re.M)
    assert 'rcvar="hasthook_enable"' in text and "hasthook_resources" in text


@pytest.fixture
def rc(tmp_path):
    """Run etc/rc.d/hasthook ARG with a fake rc.subr, hastctl and hasthook that record argv."""
    subr = tmp_path / "rc.subr"
    subr.write_text(FAKE_RC_SUBR)
    script = tmp_path / "hasthook.rc"
    script.write_text(RC.read_text().replace(". /etc/rc.subr", f". {subr}"))
    log = tmp_path / "calls"
    status = tmp_path / "status.txt"
    status.write_text("Name\tStatus\t Role\t\tComponents\n"
                      "shared1\t-        init           /dev/ada1\t10.0.0.2\n"
                      "shared2\tcomplete primary        /dev/ada2\t10.0.0.2\n"
                      "shared3\tdegraded secondary      /dev/ada3\t10.0.0.2\n")
    for name, body in (("hastctl", f'[ -e {tmp_path}/down ] && exit 71\ncat {status}\n'),
                       ("hasthook", "")):
        p = tmp_path / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}')
        p.chmod(0o755)

    def run(arg, **env):
        e = {"PATH": "/usr/bin:/bin", "hasthook_enable": "YES", "hasthook_wait": "1",
             "hasthook_program": str(tmp_path / "hasthook"),
             "hasthook_hastctl": str(tmp_path / "hastctl"), **env}
        p = subprocess.run(["sh", str(script), arg], env=e, capture_output=True, text=True,
                           timeout=30)
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return p, calls

    run.tmp = tmp_path
    return run


def test_rc_start_sets_only_init_resources_secondary(rc):
    p, calls = rc("start")
    assert p.returncode == 0, p.stderr
    assert calls == ["hastctl status", "hastctl status", "hasthook role secondary shared1"]
    assert "Setting HAST resources to secondary: shared1." in p.stdout


def test_rc_start_named_resources_and_config(rc):
    p, calls = rc("start", hasthook_resources="shared1 shared3",
                  hasthook_config="/etc/hh.yaml")
    assert calls[-2:] == ["hastctl status shared1 shared3",
                          "hasthook -c /etc/hh.yaml role secondary shared1"]


def test_rc_start_gives_up_when_hastd_never_answers(rc):
    (rc.tmp / "down").touch()
    p, calls = rc("start")
    assert p.returncode == 1
    assert "hastd does not answer" in p.stderr
    assert not any(c.startswith("hasthook") for c in calls)


def test_rc_stop_by_hand_changes_nothing_shutdown_demotes(rc):
    assert rc("stop")[1] == []
    assert rc("faststop")[1] == ["hasthook failover demote"]
    assert rc("faststop", hasthook_shutdown_demote="NO")[1] == []
    assert rc("faststop", hasthook_resources="shared2")[1] == [
        "hasthook failover demote shared2"]


def test_rc_promote_demote_status(rc):
    assert rc("promote")[1] == ["hasthook failover promote"]
    assert rc("demote", hasthook_resources="a b")[1] == ["hasthook failover demote a b"]
    assert rc("status")[1] == ["hasthook status"]


def _hasthook_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "/usr/sbin/daemon":
        argv = argv[2:] if argv[1] == "-f" else argv[1:]
    assert argv[0] == "/usr/local/bin/hasthook", command
    return argv[1:]


def _parses(argv: list[str]) -> None:
    """The argv is one hasthook accepts (so a sample cannot drift from the CLI)."""
    args = build_parser().parse_args(argv)
    assert getattr(args, "_module", None) is not None, argv


def test_devd_maps_carp_master_and_backup_to_failover():
    text = (ETC / "devd" / "hasthook.conf").read_text()
    blocks = re.findall(r"notify \d+ \{(.*?)\};", text, re.S)
    seen = {}
    for b in blocks:
        matches = dict(re.findall(r'match\s+"(\w+)"\s+"([^"]*)";', b))
        [action] = re.findall(r'action\s+"([^"]*)";', b)
        assert matches["system"] == "CARP"
        argv = _hasthook_argv(action)
        _parses(argv)
        seen[matches["type"]] = argv
    assert seen == {"MASTER": ["failover", "promote"], "BACKUP": ["failover", "demote"]}


def test_devd_conf_is_balanced():
    text = (ETC / "devd" / "hasthook.conf").read_text()
    body = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert body.count("{") == body.count("}") == 2
    assert all(line.strip().endswith((";", "{")) for line in body.splitlines()
               if line.strip() and line.strip() not in ("};",))


def test_cron_sample_is_one_watch_line_every_minute():
    entries = []
    files = [f for p in ETC.rglob("*cron*") for f in ([p] if p.is_file() else p.iterdir())]
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#") and "=" not in line.split()[0]:
                entries.append(line.split())
    [e] = entries  # watch does what flush and metrics --textfile did: one line
    assert e[:5] == ["*"] * 5 and e[5] == "root"        # system crontab: a user column
    argv = _hasthook_argv(" ".join(e[6:]).split(">")[0])
    assert argv == ["watch", "--quiet"]
    _parses(argv)


def test_rc_watch_runs_the_loop_under_daemon(tmp_path):
    """etc/rc.d/hasthook_watch: it parses, and daemon(8) gets a watch --loop hasthook
    accepts, with -c from rc.conf."""
    rc = ETC / "rc.d" / "hasthook_watch"
    assert subprocess.run(["sh", "-n", str(rc)], capture_output=True).returncode == 0
    text = rc.read_text()
    assert re.search(r"^# PROVIDE: hasthook_watch$", text, re.M)
    subr = tmp_path / "rc.subr"
    subr.write_text('load_rc_config() { :; }\n'
                    'run_rc_command() { echo "$command $command_args"; }\n')
    script = text.replace(". /etc/rc.subr", f". {subr}")
    out = subprocess.run(["sh", "-c", script, "hasthook_watch", "start"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin",
                                         "hasthook_watch_config": "/x.yaml"})
    argv = shlex.split(out.stdout)
    assert argv[:2] == ["/usr/sbin/daemon", "-r"], out
    argv = argv[argv.index("/usr/local/bin/hasthook"):]
    assert argv[1:] == ["-c", "/x.yaml", "watch", "--quiet", "--loop", "15"]
    _parses(argv[1:])


def test_newsyslog_and_syslog_name_the_same_file():
    ns = [ln.split() for ln in (ETC / "newsyslog.conf.d" / "hasthook.conf").read_text()
          .splitlines() if ln.strip() and not ln.startswith("#")]
    [entry] = ns
    assert entry[0] == "/var/log/hasthook.log" and entry[1] == "600"
    sl = (ETC / "syslog.d" / "hasthook.conf").read_text()
    assert "!hasthook" in sl and "/var/log/hasthook.log" in sl


def test_syslog_sample_routes_every_tag_hasthook_logs_under():
    """syslog.conf(5): `!prog1,prog2` starts a block for those programs, `!*` ends it."""
    from hasthook.config.settings import Settings

    s = Settings()
    tags = {s.syslog.tag, s.recover.syslog.tag}
    assert tags == {"hasthook", "hast-recover"}
    lines = [ln.split("#")[0].strip() for ln in
             (ETC / "syslog.d" / "hasthook.conf").read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert lines[0].startswith("!") and lines[-1] == "!*"
    assert set(lines[0][1:].split(",")) == tags
    assert lines[1].split() == ["*.*", "/var/log/hasthook.log"]


def test_rc_conf_gives_hastd_the_config():
    text = (ETC / "rc.conf.example").read_text()
    assert re.search(r'^hastd_env="HASTHOOK_CONFIG=/\S+"$', text, re.M)
    assert re.search(r'^hasthook_enable="YES"$', text, re.M)
    shell = shutil.which("sh")
    assert subprocess.run([shell, "-n", str(ETC / "rc.conf.example")]).returncode == 0


def test_hast_conf_has_the_exec_line():
    text = (ETC / "hast.conf.example").read_text()
    assert re.search(r"^exec /usr/local/bin/hasthook-exec$", text, re.M)


@pytest.mark.parametrize("argv", [["-c", "/x.yaml", "failover", "promote"],
                                  ["failover", "promote", "-c", "/x.yaml"],
                                  ["role", "-c", "/x.yaml", "secondary"]])
def test_dash_c_names_the_rules_file_for_every_command(argv):
    """rc.d passes `-c FILE` before the command; dirty's own -c must not take it away."""
    assert build_parser().parse_args(argv).config == "/x.yaml"
