"""Find, read and default the YAML config.

The file is found by `-c FILE`, else `$HASTHOOK_CONFIG`, else
/usr/local/etc/hasthook/rules.yaml; with no file at all, the built-in
defaults apply (record every event, act on none).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PATH = "/usr/local/etc/hasthook/rules.yaml"
ENV_VAR = "HASTHOOK_CONFIG"

DEFAULT_SETTINGS: dict[str, Any] = {
    "hostname": None,
    "hastctl": "/sbin/hastctl",
    "hastctl_timeout": "5s",
    "state_dir": "/var/db/hasthook",
    "syslog": {"facility": "daemon", "tag": "hasthook", "socket": None},
    "retention": "30d",
    "hook_timeout": "45s",
    # `hasthook role` refuses to act unless this pid file names a live process.
    "hastd_pidfile": "/var/run/hastd.pid",
    "dev_dir": "/dev/hast",           # where /dev/hast/PROVNAME appears on a primary
    # Programs `hasthook failover` runs; tests point them at recording stand-ins.
    "commands": {"fsck": "/sbin/fsck", "mount": "/sbin/mount", "umount": "/sbin/umount",
                 "zpool": "/sbin/zpool", "service": "/usr/sbin/service",
                 "pgrep": "/bin/pgrep"},  # FreeBSD's path; Debian has it there too
    "failover_step_timeout": "10m",
}


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and, when known, the line."""


@dataclass
class Config:
    path: str | None
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return self.settings.get("hostname") or socket.gethostname().split(".")[0]

    @property
    def rules(self) -> list[dict[str, Any]]:
        return self.data.get("rules") or []

    @property
    def channels(self) -> dict[str, Any]:
        return self.data.get("channels") or {}


def find(explicit: str | None = None) -> tuple[str | None, bool]:
    """Which file to read, and whether the admin named it (so its absence is an error)."""
    if explicit:
        return explicit, True
    env = os.environ.get(ENV_VAR)
    if env:
        return env, True
    return DEFAULT_PATH, False


def merge_settings(user: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_SETTINGS.items()}
    for k, v in (user or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def from_data(data: dict[str, Any] | None, path: str | None = None) -> Config:
    data = dict(data or {})
    return Config(path, data, merge_settings(data.get("settings")))


def parse_text(text: str, path: str = "<string>") -> dict[str, Any]:
    """YAML text to a mapping; syntax errors name the file and line."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    return data


def load(explicit: str | None = None) -> Config:
    """Read the config; a named file that is missing or broken raises ConfigError."""
    path, named = find(explicit)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{path}: no such file") from None
        return from_data({}, None)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return from_data(parse_text(text, path), path)
