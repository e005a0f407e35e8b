"""Loading the config: validation on load, the hook's cache, and its last-known-good copy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, command, run_cmd

from hasthook.config import ConfigError, load, load_for_hook
from hasthook.config import loader as config

GOOD = {"channels": {"ops": "json://127.0.0.1:9/hook"},
        "rules": [{"name": "sb", "match": {"event": "split-brain"},
                   "actions": [{"notify": "ops"}]}]}


def test_load_keeps_the_settings_defaults(write_config, tmp_path):
    cfg = load(str(write_config(GOOD, hastctl_timeout="2s")))
    assert cfg.settings.hastctl_timeout == 2.0
    assert cfg.settings.retention == 30 * 86400
    assert cfg.settings.syslog.tag == "hasthook"
    assert cfg.rules[0]["name"] == "sb" and cfg.channels == {"ops": "json://127.0.0.1:9/hook"}


def test_load_rejects_an_invalid_file_naming_file_line_and_path(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: sb\n    match: {event: split-brian}\n")
    with pytest.raises(ConfigError) as e:
        load(str(path))
    assert str(e.value) == (
        f"{path}:3:20: rules[0].match.event: 'split-brian' is not one of role, connect, "
        "disconnect, syncstart, syncdone, syncintr, split-brain, hastd-down, io-errors, "
        "degraded, sync-stalled, stuck-init, role-unexpected, exec-not-wired, * or a "
        "condition's NAME-resolved (did you mean 'split-brain'?)")


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load(str(path))
    [problem] = e.value.problems
    assert (problem.line, problem.path) == (3, "(yaml)")
    assert str(problem).startswith(f"{path}:3:1: (yaml): syntax error:")


@pytest.mark.parametrize("text,where,key,first", [
    # Two `ops:` channels: PyYAML kept the second, and alerts went to its URL.
    ("channels:\n  ops: json://a/\n  team: json://b/\n  ops: json://c/\n", (4, 3), "ops", 2),
    ("rules:\n  - name: a\n    actions: []\n    name: b\n", (4, 5), "name", 2),
    ("settings: {state_dir: /x, hastctl: /h, state_dir: /y}\n", (1, 40), "state_dir", 1),
    ("settings:\n  hostname: a\nchannels: {}\nsettings:\n  hostname: b\n", (4, 1),
     "settings", 1),
])
def test_duplicate_keys_are_errors_at_the_second_naming_the_first(tmp_path, text, where, key,
                                                                   first):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(str(path))
    [problem] = e.value.problems
    assert (problem.line, problem.col) == where
    assert str(problem) == (f"{path}:{where[0]}:{where[1]}: (yaml): duplicate key {key!r} "
                            f"(first on line {first})")


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("channels:\n  ops: &ops {urls: [json://a/], format: text}\n"
                    "  team: {<<: *ops, format: markdown}\n")
    cfg = load(str(path))
    assert cfg.channels["team"] == {"urls": ["json://a/"], "format": "markdown"}


def test_a_duplicate_key_in_an_edited_file_keeps_the_hook_on_the_last_good_copy(write_config):
    path = write_config(GOOD)
    load_for_hook(str(path))
    path.write_text(path.read_text().replace("channels:\n", "channels:\n  ops: json://x/\n"))
    cfg, error = load_for_hook(str(path))
    assert cfg.origin == "last-good" and cfg.channels == GOOD["channels"]
    assert "duplicate key 'ops'" in error


def test_no_file_at_all_means_the_built_in_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent.yaml"))
    cfg, error = load_for_hook()
    assert (cfg.path, cfg.rules, error) == (None, [], None)


# -- the hook's path ---------------------------------------------------------------------

def test_hook_caches_a_validated_config_and_reuses_it_by_hash(write_config, tmp_path):
    path = write_config(GOOD)
    cfg, error = load_for_hook(str(path))
    assert (cfg.origin, error) == ("file", None)
    lkg = tmp_path / "state" / config.LKG_NAME
    assert stat.S_IMODE(lkg.stat().st_mode) == 0o600
    saved = json.loads(lkg.read_text())
    assert saved["source"] == str(path) and saved["data"]["rules"] == GOOD["rules"]
    cfg, error = load_for_hook(str(path))
    assert (cfg.origin, error, cfg.rules) == ("cache", None, GOOD["rules"])


def test_unchanged_file_loads_without_yaml_or_jsonschema(write_config):
    """The point of the cache: the hook's start-up skips both imports."""
    path = write_config(GOOD)
    load_for_hook(str(path))
    code = ("import sys; from hasthook.config import load_for_hook; "
            f"cfg, err = load_for_hook({str(path)!r}); "
            "print(cfg.origin, err, 'yaml' in sys.modules, 'jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["cache", "None", "False", "False"]


def test_changed_file_is_validated_again(write_config):
    path = write_config(GOOD)
    load_for_hook(str(path))
    path.write_text(path.read_text().replace("name: sb", "name: split"))
    cfg, error = load_for_hook(str(path))
    assert (cfg.origin, error, cfg.rules[0]["name"]) == ("file", None, "split")
    assert load_for_hook(str(path))[0].origin == "cache"


def test_broken_file_falls_back_to_the_last_good_copy(write_config):
    path = write_config(GOOD)
    load_for_hook(str(path))
    text = path.read_text()
    path.write_text(text.replace("event: split-brain", "event: [split-brain"))
    cfg, error = load_for_hook(str(path))
    assert cfg.origin == "last-good" and cfg.rules == GOOD["rules"]
    assert error.startswith(f"{path}:") and "syntax error" in error
    path.write_text(text.replace("notify: ops", "notify: opps"))
    cfg, error = load_for_hook(str(path))
    assert cfg.origin == "last-good"
    assert "rules[0].actions[0].notify: unknown channel 'opps' (did you mean 'ops'?)" in error


def test_broken_file_without_a_good_copy_keeps_its_state_dir(write_config, tmp_path):
    path = write_config(GOOD)
    path.write_text(path.read_text() + "bogus: [\n")
    cfg, error = load_for_hook(str(path))
    assert cfg.origin == "defaults" and cfg.rules == [] and error
    assert cfg.settings.state_dir == str(tmp_path / "state")


def test_a_hook_that_waited_for_another_to_validate_lets_go_of_the_lock(write_config,
                                                                       tmp_path):
    """Held for the rest of its run, every later hook of a burst after an edit would
    wait in line for the one before it to exit."""
    import threading

    from hasthook.proc import FileLock

    path, state = write_config(GOOD), tmp_path / "state"
    state.mkdir(mode=0o700)
    lock = FileLock(str(state / "config.lock"))
    assert lock.acquire(wait=False)  # "another hook" is validating the edit
    got = []
    waiter = threading.Thread(target=lambda: got.append(load_for_hook(str(path), wait=60)))
    waiter.start()
    config._validate(str(path), str(state), os.path.abspath(path), path.read_text())
    lock.close()  # the edit is validated and cached when it lets go
    waiter.join(60)
    assert got[0][0].origin == "cache"
    again = FileLock(str(state / "config.lock"))
    assert again.acquire(wait=False), "config.lock still held by a hook that is done with it"
    again.close()


def test_a_last_good_copy_planted_in_a_state_dir_others_can_write_is_not_read(
        write_config, tmp_path):
    path, state = write_config(GOOD), tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    planted = {**GOOD, "rules": [{"name": "planted", "match": {"event": "split-brain"},
                                  "actions": [{"command": ["/bin/sh", "-c", "id"]}]}]}
    (state / config.LKG_NAME).write_text(json.dumps({
        "source": os.path.abspath(path), "text": path.read_text(), "data": planted}))
    cfg, _ = load_for_hook(str(path))
    assert [r["name"] for r in cfg.rules] == ["sb"] and cfg.origin == "file"
    assert config.read_last_good(str(state)) is None


def test_the_state_dir_is_known_before_the_config_is_loaded(write_config, tmp_path):
    assert config.state_dir_hint(str(write_config(GOOD))) == str(tmp_path / "state")
    assert config.state_dir_hint(str(tmp_path / "missing.yaml")) == config.Settings.state_dir


@pytest.mark.parametrize("text,hint", [
    ("settings:\n  state_dir: /x/y  # comment\n", "/x/y"),
    ("settings: {hastctl: /h, state_dir: '/x/y'}\n", "/x/y"),
    ("settings:\n  # state_dir: /old\n  hastctl: /h\n", config.Settings.state_dir),
])
def test_state_dir_is_found_without_parsing_yaml(text, hint):
    assert config._state_dir_hint(text) == hint


# -- schema -----------------------------------------------------------------------------

def test_schema_is_valid_json_schema_and_printed_by_the_command():
    import jsonschema

    from hasthook.config.schema import SCHEMA_FILE, schema

    jsonschema.Draft202012Validator.check_schema(schema())
    r = run_cmd(command("hasthook"), "schema")
    assert r.returncode == 0 and json.loads(r.stdout) == schema()
    assert r.stdout == Path(SCHEMA_FILE).read_text()


def test_schema_has_room_for_recovery_channels_and_resources():
    from hasthook.config.schema import validate

    data = {
        "channels": {"mail": {"apprise_config": "/usr/local/etc/apprise.yml", "tag": "hast",
                              "format": "markdown", "title": "{resource}", "body": "{summary}"},
                     "many": ["json://a", "json://b"]},
        "resources": {"db": {"filesystem": "ufs", "mountpoint": "/srv/db", "fsck": True,
                             "services": ["postgresql"]},
                      "tank0": {"filesystem": "zfs", "pool": "tank"}},
        "rules": [{"name": "r", "actions": [{"recover": {
            "delay": "2s", "cooldown": "10m", "max_attempts": 3, "window": "1h",
            "pre": [["zfs", "snapshot", "tank/{resource}@hasthook-{time}"]],
            "dry_run": True, "restore_role": "secondary"}}, {"recover": None},
            {"notify": {"channels": ["mail", "many"], "title": "t {rule}"}}]}]}
    assert validate(data) == []


def test_packaged_example_passes_check():
    example = REPO / "rules.example.yaml"
    assert example.read_text().startswith(
        "# yaml-language-server: $schema=./hasthook/config/schema.json\n")
    r = run_cmd(command("hasthook"), "check", "-c", str(example))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{example}: OK: 13 rules, 2 channels")
    data = yaml.safe_load(example.read_text())
    words = {e for rule in data["rules"] for e in
             ([rule["match"].get("event")] if isinstance(rule["match"].get("event"), str)
              else rule["match"].get("event") or [])}
    assert {"split-brain", "disconnect", "syncintr", "role", "io-errors", "hastd-down",
            "*"} <= words
    actions = {next(iter(a)) for rule in data["rules"] for a in rule.get("actions", [])}
    assert actions == {"notify", "recover", "command"}


# -- last known good, end to end through hasthook-exec on the simulator ---------------------

@pytest.fixture
def node(tmp_path):
    from hasthook.sim.driver import SimNode

    n = SimNode(tmp_path / "node", resources=[{"name": "shared1", "localpath": "/dev/md0"}],
                exec=command("hasthook-exec"),
                env={"HASTHOOK_CONFIG": str(tmp_path / "rules.yaml")})
    yield n
    n.close()


def test_last_known_good_end_to_end_on_the_simulator(write_config, node, tmp_path, syslog):
    acted = tmp_path / "acted"
    good = {"channels": {"ops": "json://127.0.0.1:9/hook"},
            "settings": {"hastctl": node.hastctl_path, "alert_channels": ["ops"]},
            "rules": [{"name": "sb", "match": {"event": "split-brain"}, "actions": [
                {"command": {"argv": ["sh", "-c", 'echo "$1" >> "$0"', str(acted),
                                      "{resource} {role}"]}}]}]}
    path = write_config(good)
    node.set_role("shared1", "secondary")
    node.fire("split-brain", "shared1")
    assert all(h["exitcode"] == 0 for h in node.wait_hooks())
    assert acted.read_text() == "shared1 secondary\n"

    # The admin saves a half-edited file: a typo in an action name on line 18.
    lines = path.read_text().splitlines()
    broken = [ln.replace("- command:", "- comand:") for ln in lines]
    assert broken != lines
    path.write_text("\n".join(broken) + "\n")
    node.fire("split-brain", "shared1")
    assert all(h["exitcode"] == 0 for h in node.wait_hooks())
    line = syslog.wait_for("config:")
    assert line.startswith("<26>")  # daemon.crit
    typo = next(i for i, ln in enumerate(broken, 1) if "comand" in ln)
    assert f"{path}:{typo}:" in line and "unknown action 'comand' (did you mean 'command'?)" \
        in line and "running on the last good copy" in line
    assert acted.read_text() == "shared1 secondary\n" * 2  # the last good rules acted

    from hasthook.store import Store

    store = Store(str(tmp_path / "state"))
    newest = store.history(event="split-brain")[0]
    store.close()
    alert, acted_out = newest["outcome"]["actions"]
    assert alert["action"] == "notify" and alert["rule"] is None  # the config-error alert
    assert acted_out["action"] == "command" and acted_out["ok"] is True


def test_broken_file_and_no_good_copy_still_records(write_config, node, tmp_path, syslog):
    """Settings that validate on their own are kept (syslog socket, state dir)."""
    path = write_config({"rules": [{"name": "x", "match": {"event": "split-brian"}}]},
                        hastctl=node.hastctl_path)
    node.fire("split-brain", "shared1")
    assert all(h["exitcode"] == 0 for h in node.wait_hooks())
    line = syslog.wait_for("config:")
    assert f"{path}:" in line and "built-in defaults" in line
    from hasthook.store import Store

    store = Store(str(tmp_path / "state"))
    assert [r["event"] for r in store.history()] == ["split-brain"]
    store.close()
    assert not (tmp_path / "state" / config.LKG_NAME).exists()

