"""`hasthook check`, `hasthook test` and what they tell the admin, through the real command."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import command, run_cmd

from hasthook import sysexits


def check(path, *args):
    return run_cmd(command("hasthook"), "check", "-c", str(path), *args)


def write(tmp_path, text, mode=0o600):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    path.chmod(mode)
    return path


def errors_of(r):
    assert r.returncode == sysexits.EX_CONFIG, (r.stdout, r.stderr)
    return r.stderr.splitlines()[:-1]


def test_valid_file_exits_0_with_a_summary(tmp_path):
    path = write(tmp_path, """
        channels: {ops: "json://127.0.0.1:9/x"}
        rules:
          - name: sb
            match: {event: split-brain}
            actions: [{notify: ops}]
          - name: quiet
            actions: []
        """)
    r = check(path)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"{path}: OK: 2 rules, 1 channel, 0 templates\n"


def test_every_error_on_its_own_line_with_file_line_column_and_path(tmp_path):
    path = write(tmp_path, """
        settings:
          hook_timout: 45s
          retention: 30 days
        channels:
          ops: "json://127.0.0.1:9/x"
          bad: "nosuchservice://x"
        rules:
          - name: sb
            match: {event: split-brian, dirty_over: 1 Gig}
            thrrottle: {max: 1, window: 1h}
            actions:
              - notify: opz
              - notfy: ops
              - {notify: ops, command: {argv: [x]}}
          - name: sb
            continue: "yes"
            actions:
              - notify: {channels: [ops], body: "{resorce} is {status}"}
        """)
    assert errors_of(check(path)) == [
        f"{path}:2:3: settings.hook_timout: unknown key 'hook_timout' "
        "(did you mean 'hook_timeout'?)",
        f"{path}:3:14: settings.retention: not a duration: '30 days' "
        "(use e.g. 500ms, 2s, 10m, 1h, 1d)",
        f"{path}:6:8: channels.bad: apprise cannot parse this URL "
        "(unknown service or malformed)",
        f"{path}:9:20: rules[0].match.event: 'split-brian' is not one of role, connect, "
        "disconnect, syncstart, syncdone, syncintr, split-brain, hastd-down, io-errors, "
        "degraded, sync-stalled, stuck-init, role-unexpected, exec-not-wired, * or a "
        "condition's NAME-resolved (did you mean 'split-brain'?)",
        f"{path}:9:45: rules[0].match.dirty_over: not a size: '1 Gig' "
        "(use e.g. 512K, 64M, 1G)",
        f"{path}:10:5: rules[0].thrrottle: unknown key 'thrrottle' (did you mean 'throttle'?)",
        f"{path}:12:17: rules[0].actions[0].notify: unknown channel 'opz' "
        "(did you mean 'ops'?); defined: ops, bad",
        f"{path}:13:9: rules[0].actions[1].notfy: unknown action 'notfy' "
        "(did you mean 'notify'?)",
        f"{path}:14:9: rules[0].actions[2]: an action is a mapping with exactly one key: "
        "notify, recover or command",
        f"{path}:15:11: rules[1].name: duplicate rule name 'sb' (first used by rules[0])",
        f"{path}:16:15: rules[1].continue: expected true or false, got a string",
        f"{path}:18:41: rules[1].actions[0].notify.body: unknown placeholder {{resorce}} "
        "(did you mean {resource}?)",
    ]
    assert check(path).stderr.splitlines()[-1] == (
        f"{path}: 12 errors; the hook has no good copy of this file: it records every event "
        "and acts on none until this is fixed")


def test_errors_say_what_the_hook_runs_on_meanwhile(write_config):
    """Its last good copy when it has one (made by a hook run), else the defaults."""
    path = write_config({"rules": [{"name": "sb", "match": {"event": "split-brain"}}]})
    text = path.read_text()
    path.write_text(text.replace("split-brain", "split-brian"))
    assert check(path).stderr.splitlines()[-1] == (
        f"{path}: 1 error; the hook has no good copy of this file: it records every event "
        "and acts on none until this is fixed")
    path.write_text(text)
    assert run_cmd(command("hasthook-exec"), "connect", "r1",
                   env={"HASTHOOK_CONFIG": str(path)}).returncode == 0
    path.write_text(text.replace("split-brain", "split-brian"))
    last = check(path).stderr.splitlines()[-1]
    assert last.startswith(f"{path}: 1 error; the hook keeps running on the last good copy "
                           "(validated 20")
    assert last.endswith("Z) until this is fixed")


@pytest.mark.parametrize("template,why", [
    ("{resource.__class__}", "attribute access is not allowed"),
    ("{0}", "positional fields are not allowed"),
    ("{resource!r}", "conversions (!r, !s, !a) are not allowed"),
    ("{resource:>99999}", "format specs are not allowed"),
])
def test_template_injection_is_rejected_with_a_clear_message(tmp_path, template, why):
    path = write(tmp_path, f"""
        channels: {{ops: "json://127.0.0.1:9/x"}}
        rules:
          - name: r
            actions:
              - notify: {{channels: ops, title: "alert {template}"}}
              - command: {{argv: [echo, "{template}"]}}
        """)
    assert errors_of(check(path)) == [
        f"{path}:5:40: rules[0].actions[0].notify.title: {template}: {why}; "
        "use a plain name such as {resource}",
        f"{path}:6:32: rules[0].actions[1].command.argv[1]: {template}: {why}; "
        "use a plain name such as {resource}",
    ]


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, """
        rules:
          - name: sb
            match: {event: split-brain
        """)
    [line] = errors_of(check(path))
    assert line.startswith(f"{path}:4:1: (yaml): syntax error: ")


def test_duplicate_key(tmp_path):
    path = write(tmp_path, """
        channels:
          ops: "json://127.0.0.1:9/first"
          oncall: "json://127.0.0.1:9/pager"
          ops: "json://127.0.0.1:9/second"
        """)
    assert errors_of(check(path)) == [f"{path}:4:3: (yaml): duplicate key 'ops' (first on line 2)"]


def test_credentials_readable_by_others_is_a_warning(tmp_path):
    text = """
        channels:
          ops: "json://127.0.0.1:9/x"
          mail: {urls: "mailtos://alerts:s3cret@mail.example.com?to=oncall@example.com"}
        """
    r = check(write(tmp_path, text, mode=0o644))
    path = tmp_path / "rules.yaml"
    assert r.returncode == 0
    assert r.stderr == (f"{path}:3:16: warning: channels.mail.urls: this URL holds credentials "
                        f"and {path} is readable by group/other (mode 0644); chmod 600 {path}\n")
    assert r.stdout.endswith("; 1 warning\n")
    assert check(write(tmp_path, text, mode=0o600)).stderr == ""


def test_config_others_can_write_is_an_error_naming_the_file_and_the_fix(tmp_path):
    """Root would run what others can change: the trust rule (issue 13) makes it an error."""
    path = write(tmp_path, """
        rules:
          - name: r
            actions: [{command: {argv: ["true"]}}]
        """, mode=0o664)
    r = check(path)
    assert r.returncode == sysexits.EX_CONFIG
    [line, summary] = r.stderr.splitlines()
    assert line.startswith(f"{path}:1:1: (top level): {path} is writable by group or other "
                           "(mode 0664)")
    assert "the hook ignores its programs" in line and "chmod go-w the file" in line
    assert summary.startswith(f"{path}: 1 error")


@pytest.mark.parametrize("settings,warned", [
    ("{hastctl_timeout: 60s}", "longer than a third of hook_timeout (45s): hasthook-exec "
                               "cuts hastctl at 15s"),
    ("{hastctl_timeout: 2s, hook_timeout: 3s}", "longer than a third of hook_timeout (3s): "
                                                "hasthook-exec cuts hastctl at 1s"),
    ("{hastctl_timeout: 5s, hook_timeout: 15s}", None),
    ("{hastctl_timeout: 5s}", None),
])
def test_a_hastctl_timeout_the_hook_cannot_honour_is_a_warning(tmp_path, settings, warned):
    path = write(tmp_path, f"settings: {settings}\n")
    r = check(path)
    assert r.returncode == 0
    assert r.stderr == (f"{path}:1:29: warning: settings.hastctl_timeout: {warned}\n"
                        if warned else "")


def test_missing_named_file(tmp_path):
    r = check(tmp_path / "absent.yaml")
    assert (r.returncode, r.stderr) == (sysexits.EX_NOINPUT,
                                        f"hasthook: {tmp_path}/absent.yaml: no such file\n")


def test_command_refused_at_hook_time_when_others_can_write_the_config(write_config, tmp_path,
                                                                       syslog):
    marker = tmp_path / "ran"
    cfg = write_config({"rules": [{"name": "r", "actions": [
        {"command": {"argv": ["touch", str(marker)]}}]}]}, hastctl="/nonexistent")
    cfg.chmod(0o666)
    r = run_cmd(command("hasthook-exec"), "connect", "shared1",
                env={"HASTHOOK_CONFIG": str(cfg)})
    assert r.returncode == 0
    assert not marker.exists()
    line = syslog.wait_for("refused to run commands")
    assert line.startswith("<26>") and "writable by group or other (mode 0666)" in line


# -- hasthook test ---------------------------------------------------------------------

RULES = """
    settings: {{state_dir: {state}, hastctl: {hastctl}, hostname: host1}}
    channels: {{ops: "json://127.0.0.1:9/x"}}
    rules:
      - name: sb-secondary
        match: {{event: split-brain, role: secondary, dirty_over: 512M}}
        continue: true
        actions:
          - command: {{argv: [logger, "{{resource}} is split", "{{dirty_h}}"]}}
      - name: sb
        match: {{event: split-brain}}
        repeat_interval: 30m
        actions:
          - notify: {{channels: ops, title: "SB {{resource}} on {{host}} ({{rule}})"}}
      - name: roles
        match: {{event: role, new_role: primary}}
        actions: []
    """


def test_dry_run_shows_matching_rules_actions_and_messages(tmp_path):
    path = write(tmp_path, RULES.format(state=tmp_path / "state", hastctl="/nonexistent"))
    r = run_cmd(command("hasthook"), "test", "-c", str(path), "split-brain", "shared1",
                "--role", "secondary", "--status", "degraded", "--dirty", "1G")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == ("event: split-brain shared1 on host1, severity critical, "
                      "role secondary, status degraded, dirty 1.0GB")
    assert out[1] == "rule 'sb-secondary' (rules[0]) matches; continue: true, so later rules " \
                     "are tried"
    assert out[2] == "  command: would run logger 'shared1 is split' 1.0GB (timeout 10s)"
    assert out[3] == "rule 'sb' (rules[1]) matches"
    assert out[4] == "  repeat_interval: 30m (until resolved)"
    assert out[6] == "    to ops: SB shared1 on host1 (sb)"
    assert "SPLIT-BRAIN detected on host1" in out[7]
    assert not (tmp_path / "state").exists()


def test_dry_run_json_and_role_events(tmp_path):
    path = write(tmp_path, RULES.format(state=tmp_path / "state", hastctl="/nonexistent"))
    r = run_cmd(command("hasthook"), "test", "-c", str(path), "--json",
                "role", "shared1", "secondary", "primary")
    report = json.loads(r.stdout)
    assert report["event"]["old_role"] == "secondary"
    assert [(m["rule"], m["actions"]) for m in report["matches"]] == [("roles", [])]
    r = run_cmd(command("hasthook"), "test", "-c", str(path), "--json", "connect", "shared1")
    assert json.loads(r.stdout)["matches"] == []


def test_dry_run_reads_silences_and_repeat_state_without_writing(tmp_path):
    """What would happen *now*: the history's silences and rule state, opened read-only."""
    path = write(tmp_path, RULES.format(state=tmp_path / "state", hastctl="/nonexistent"))
    db = tmp_path / "state" / "hasthook.db"

    def dry(*words):
        r = run_cmd(command("hasthook"), "test", "-c", str(path), *words)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert dry("split-brain", "shared1").splitlines()[-1] == (
        "dry run: nothing recorded, sent or run; silences, throttle and repeat state "
        f"not read: no history yet at {db}")
    assert not db.parent.exists()
    # A real split-brain: rule sb acts, so its repeat_interval holds the next one back.
    assert run_cmd(command("hasthook-exec"), "split-brain", "shared1",
                   env={"HASTHOOK_CONFIG": str(path)}).returncode == 0
    out = dry("split-brain", "shared1").splitlines()
    assert out[1:3] == ["rule 'sb' (rules[1]) matches", "  repeat_interval: 30m (until resolved)"]
    assert out[3] == "  held back now by its repeat_interval: only recover actions would run"
    assert out[-1].endswith("silences, throttle and repeat state as the history holds them now")
    report = json.loads(dry("--json", "split-brain", "shared1"))
    assert [(m["rule"], m["held_by"]) for m in report["matches"]] == [
        ("sb", {"by": "repeat", "count": 1})]
    r = run_cmd(command("hasthook"), "silence", "add", "shared*", "--for", "1h", "-c", str(path))
    sid = int(r.stdout)
    before = db.read_bytes()
    report = json.loads(dry("--json", "split-brain", "shared1"))
    assert (report["history"], report["silenced_by"]["id"]) == ("read", sid)
    # Silenced, sb has nothing left to do: like the hook, the dry run leaves its
    # repeat state out of it (exec.counts_toward_state).
    assert [(m["rule"], m["held_by"]) for m in report["matches"]] == [("sb", None)]
    assert dry("split-brain", "shared1").splitlines()[1].startswith(
        f"silenced now by silence {sid} (shared*, every event, until ")
    assert dry("connect", "shared1").splitlines()[1:3] == [
        f"silenced now by silence {sid} (shared*, every event, until "
        + report["silenced_by"]["ends"] + "): notify actions would not run",
        "no rule matches: the event would be recorded, nothing else"]
    assert db.read_bytes() == before
    r = run_cmd(command("hasthook"), "history", "--json", "-c", str(path))
    assert [e["event"] for e in json.loads(r.stdout)] == ["split-brain"]


@pytest.mark.parametrize("args", [["split-brain"], ["role", "shared1", "boss", "primary"],
                                  ["connect", "shared1", "--dirty", "lots"]])
def test_dry_run_refuses_calls_hastd_would_not_make(tmp_path, args):
    path = write(tmp_path, RULES.format(state=tmp_path / "state", hastctl="/nonexistent"))
    r = run_cmd(command("hasthook"), "test", "-c", str(path), *args)
    assert r.returncode == sysexits.EX_USAGE and r.stderr.startswith("hasthook: ")


def test_dry_run_leaves_history_and_hastctl_untouched_on_the_simulator(tmp_path, write_config):
    from hasthook.sim.driver import SimNode
    from hasthook.store import Store

    with SimNode(tmp_path / "node", resources=[{"name": "shared1", "localpath": "/dev/md0"}],
                 exec=command("hasthook-exec"),
                 env={"HASTHOOK_CONFIG": str(tmp_path / "rules.yaml")}) as node:
        path = write(tmp_path, RULES.format(state=tmp_path / "state",
                                            hastctl=node.hastctl_path))
        node.set_role("shared1", "secondary")
        node.fire("split-brain", "shared1")
        node.wait_hooks()
        store = Store(str(tmp_path / "state"))
        before_history, before_calls = store.history(), node.calls()
        before_db = (tmp_path / "state" / "hasthook.db").read_bytes()
        assert len(before_history) == 2 and before_calls  # the real hooks did both
        for words in (["split-brain", "shared1", "--role", "secondary", "--dirty", "1G"],
                      ["role", "shared1", "secondary", "primary"]):
            r = run_cmd(command("hasthook"), "test", "-c", str(path), *words)
            assert r.returncode == 0, r.stderr
        assert store.history() == before_history
        assert node.calls() == before_calls
        assert (tmp_path / "state" / "hasthook.db").read_bytes() == before_db
        store.close()
