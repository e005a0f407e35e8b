"""Find, read and default the YAML config.

The file is found by `-c FILE`, else `$HASTHOOK_CONFIG`, else
/usr/local/etc/hasthook/rules.yaml; with no file at all, the built-in
defaults apply (record every event, act on none).

The hook must act on every event even while the admin is halfway through an
edit, and must start fast: each config it validates is kept in the state dir
as `config.lkg.json` with the file's exact text. When the file is unchanged the
hook reads that JSON and skips YAML and jsonschema entirely; when the file is
broken it says so (crit, with file and line) and runs on the last good copy.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time

from .. import sysexits
from ..errors import ConfigError, HasthookError
from ..record import Record, fresh
from .problem import Problem
from .settings import Settings

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/etc/hasthook/rules.yaml"
ENV_VAR = "HASTHOOK_CONFIG"

LKG_NAME = "config.lkg.json"
BAD_NAME = "config.bad.json"  # the last file that failed, by its exact text, and why


class Config(Record):
    """A rules file as hasthook uses it: its data, its typed settings, where it came from."""

    path: str | None
    data: dict[str, Any] = fresh(dict)
    settings: Settings = fresh(Settings)
    # "file" (just validated), "cache" (unchanged since validated), "last-good"
    # (the file is broken; this is the copy that last passed), or "defaults".
    origin: str = "file"
    # Programs the settings named that fail the trust rule: the built-in paths run
    # instead, and hasthook's own alert says so (pipeline).
    untrusted: list[str] = fresh(list)

    @property
    def hostname(self) -> str:
        return self.settings.hostname or socket.gethostname().split(".")[0]

    @property
    def rules(self) -> list[dict[str, Any]]:
        return self.data.get("rules") or []

    @property
    def channels(self) -> dict[str, Any]:
        return self.data.get("channels") or {}

    @property
    def templates(self) -> dict[str, Any]:
        return self.data.get("templates") or {}

    @property
    def resources(self) -> dict[str, Any]:
        return self.data.get("resources") or {}

    @property
    def alert_channels(self) -> list[str]:
        """Where hasthook's own alerts go: settings.alert_channels, else every channel."""
        chans = self.settings.alert_channels
        return list(self.channels) if chans is None else list(chans)

    def unsafe_reason(self) -> str | None:
        """Why programs this file names must not run as root, as cron and sshd judge it.

        The file and every directory above it must be owned by root (or by us) and
        not writable by group or other; else anyone who can edit them runs code as root.
        """
        from .. import trust

        return trust.problem(self.path) if self.path else None

    def refusal(self, program: str) -> str | None:
        """Why root must not run `program` because this file names it (the file or the
        program fails the trust rule); None: it may run."""
        from .. import trust

        why = self.unsafe_reason()
        if why:
            return f"refused to run commands from {self.path}: {why}"
        why = trust.program(program)
        return f"refused to run {program}: {why}" if why else None


def guard_programs(cfg: Config) -> Config:
    """Settings that name programs root must not run fall back to the built-in paths
    (/sbin/hastctl still enriches and records every event); cfg.untrusted says why."""
    from .. import trust

    builtin, s = Settings(), cfg.settings
    named = {"hastctl": s.hastctl, **{f"commands.{k}": v
                                      for k, v in s.commands.as_dict().items()}}
    why_file = cfg.unsafe_reason()
    bad = {}
    for key, path in named.items():
        default = (builtin.hastctl if key == "hastctl"
                   else getattr(builtin.commands, key.split(".")[1]))
        if path == default:
            continue  # the built-in path: not the file's choice
        why = why_file and f"{cfg.path}: {why_file}" or trust.program(path)
        if why:
            bad[key] = default
            cfg.untrusted.append(f"settings.{key} {path} not run ({why}); {default} instead")
    if bad:
        cmds = {k.split(".")[1]: v for k, v in bad.items() if k != "hastctl"}
        cfg.settings = s.replace(hastctl=bad.get("hastctl", s.hastctl),
                                 commands=s.commands.replace(**cmds))
    return cfg


def is_alertmanager(spec: Any) -> bool:
    """Is this channel spec an Alertmanager cluster (not apprise URLs)?"""
    return isinstance(spec, dict) and "alertmanager" in spec


def find(explicit: str | None = None) -> tuple[str, bool]:
    """Which file to read, and whether the admin named it (so its absence is an error)."""
    if explicit:
        return explicit, True
    env = os.environ.get(ENV_VAR)
    if env:
        return env, True
    return DEFAULT_PATH, False


def from_data(data: dict[str, Any] | None, path: str | None = None) -> Config:
    """A Config from parsed (and validated) data."""
    data = dict(data or {})
    return Config(path, data, Settings.from_dict(data.get("settings")))


# A rules file is kilobytes. These bound what a typo or a hostile file can cost the
# hook before its time box: an alias bomb ("billion laughs") is small as text but
# huge once aliases are expanded, which validation and the last good copy both do.
MAX_CHARS = 4 * 1024 * 1024
MAX_VALUES = 200_000            # counting each alias as the copy it stands for
MAX_DEPTH = 64


_LOADER: Any = None
DUPLICATE = "duplicate key"


def _loader() -> Any:
    """yaml.SafeLoader refusing duplicate keys. PyYAML keeps the last of two `ops:`
    silently, so a pasted second channel or rule would quietly replace the first.
    Made on first use: the hook imports yaml only when the file changed."""
    global _LOADER
    if _LOADER is None:
        import yaml

        merge = "tag:yaml.org,2002:merge"

        class Loader(yaml.SafeLoader):
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                if isinstance(node, yaml.MappingNode):
                    seen: dict[Any, Any] = {}
                    for key_node, _ in node.value:
                        if key_node.tag == merge:  # `<<:` merges are meant to be overridden
                            continue
                        key = self.construct_object(key_node, deep=True)
                        try:
                            first = seen.setdefault(key, key_node.start_mark)
                        except TypeError:  # an unhashable key: the base class says so
                            continue
                        if first is not key_node.start_mark:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"{DUPLICATE} {key!r} (first on line "
                                f"{first.line + 1})", key_node.start_mark)
                return super().construct_mapping(node, deep)

        _LOADER = Loader
    return _LOADER


def parse_text(text: str, path: str = "<string>") -> dict[str, Any]:
    """YAML text to a mapping; syntax errors and duplicate keys name the file and line."""
    import yaml

    if len(text) > MAX_CHARS:
        raise _error([Problem(path, 1, 1, "(yaml)",
                              f"file too large ({len(text)} characters; at most {MAX_CHARS})")])
    try:
        data = yaml.load(text, Loader=_loader())  # a SafeLoader: plain data only
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(e, "problem", None) or str(e)
        if not problem.startswith(DUPLICATE):
            problem = f"syntax error: {problem}"
        raise _error([Problem(path, line, col, "(yaml)", problem)]) from None
    except RecursionError:
        raise _error([Problem(path, 1, 1, "(yaml)",
                              f"nested more than {MAX_DEPTH} levels deep")]) from None
    why = _too_big(data)
    if why:
        raise _error([Problem(path, 1, 1, "(yaml)", why)])
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _error([Problem(path, 1, 1, "(top level)",
                              f"must be a mapping, not {type(data).__name__}")])
    return data


def _too_big(data: Any) -> str | None:
    """Why parsed YAML is too big to use; walks it as validation would, up to the limits."""
    seen, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return (f"more than {MAX_VALUES} values once aliases are expanded "
                    "(an alias bomb?)")
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return None


def _error(problems: list[Problem]) -> ConfigError:
    errors = [p for p in problems if not p.warning]
    more = f" (and {len(errors) - 1} more; see hasthook check)" if len(errors) > 1 else ""
    return ConfigError(f"{errors[0]}{more}", errors)


def parse_and_validate(text: str, path: str, deep: bool = False
                       ) -> tuple[dict[str, Any], list[Problem]]:
    """YAML text to validated data and every problem found (warnings included).

    Raises ConfigError only when the text is not a YAML mapping at all.
    """
    from .schema import validate

    data = parse_text(text, path)
    return data, validate(data, path, text, deep=deep)


def read_text(path: str, named: bool) -> str | None:
    """The rules file's text; None when the default file is absent (the built-in defaults).

    ConfigError: 66 (EX_NOINPUT) for a named file that is missing or one that cannot
    be read, 78 (EX_CONFIG) for a file that is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{path}: no such file", status=sysexits.EX_NOINPUT) from None
        return None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}", status=sysexits.EX_NOINPUT) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start})", status=sysexits.EX_CONFIG) from None


def load(explicit: str | None = None) -> Config:
    """Read the config; a named file that is missing or broken raises ConfigError."""
    path, named = find(explicit)
    text = read_text(path, named)
    if text is None:
        return from_data({}, None)
    data, problems = parse_and_validate(text, path)
    if any(not p.warning for p in problems):
        raise _error(problems)
    return guard_programs(from_data(data, path))


# -- the hook's path: cached, and a last good copy when the file breaks ---------

_STATE_DIR_LINE = re.compile(r"""^[ \t{]*state_dir\s*:\s*["']?([^"'\s,}#]+)""", re.M)


def _state_dir_hint(text: str) -> str:
    """Where the cache should be, read without parsing YAML (only a hint: verified by hash)."""
    m = _STATE_DIR_LINE.search(text) or re.search(
        r"""[{,]\s*state_dir\s*:\s*["']?([^"'\s,}#]+)""", text)
    return m.group(1) if m else Settings.state_dir


def state_dir_hint(explicit: str | None = None) -> str:
    """The state dir the rules file names, read without YAML and without waiting for
    anything: where hasthook-exec takes its turn (hasthook/turns.py) before the config
    is loaded, which may wait for another hook to validate an edit."""
    path, _ = find(explicit)
    try:
        with open(path, "rb") as f:
            return _state_dir_hint(f.read(MAX_CHARS).decode("utf-8", "replace"))
    except OSError:
        return Settings.state_dir


def _read_json(state_dir: str, name: str) -> dict[str, Any] | None:
    saved, _ = _read_json_why(state_dir, name)
    return saved


def _read_json_why(state_dir: str, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """A record of the state dir (never through a symlink): (record, None), (None, None)
    when there is none or it is damaged, (None, why) when it cannot be read from here.
    A state dir others could write to is not read at all: what a record there says,
    root would run."""
    from .. import trust

    path = os.path.join(state_dir, name)
    try:
        trust.state_dir(state_dir, create=False)
    except trust.Untrusted:
        return None, None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as f:
            saved = json.load(f)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{path}: {e.strerror or e}"
    except ValueError:
        return None, None
    return (saved if isinstance(saved, dict) else None), None


def read_last_good(state_dir: str) -> dict[str, Any] | None:
    return last_good(state_dir)[0]


def last_good(state_dir: str) -> tuple[dict[str, Any] | None, str | None]:
    """The copy the hook falls back on: (copy, None), (None, None) when there is none
    (or it is damaged: the hook would not use it either), (None, why) when it cannot be
    read from here (`hasthook check` as a user who cannot read the state dir)."""
    saved, why = _read_json_why(state_dir, LKG_NAME)
    return (saved if saved and isinstance(saved.get("data"), dict) else None), why


def last_good_for(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """last_good() of the state dir this file's text names, found as the hook finds it."""
    return last_good(_state_dir_hint(text))


def _save(state_dir: str, name: str, record: dict[str, Any]) -> None:
    """Keep a record in the state dir (0600, whole or not at all, no symlink followed)."""
    from .. import files, trust

    trust.state_dir(state_dir)
    files.write(os.path.join(state_dir, name), json.dumps(record).encode())


def save_last_good(state_dir: str, source: str, text: str, data: dict[str, Any]) -> None:
    """Keep a validated config, keyed by the file's exact text."""
    _save(state_dir, LKG_NAME, {"source": source, "text": text, "saved": time.time(),
                                "data": data})


def _same(saved: dict[str, Any] | None, source: str, exact: str) -> bool:
    return saved is not None and saved.get("text") == exact and saved.get("source") == source


def load_for_hook(explicit: str | None = None, wait: float = 10.0
                  ) -> tuple[Config, str | None]:
    """The config hasthook-exec runs on (see _load_for_hook), its programs guarded."""
    cfg, error = _load_for_hook(explicit, wait)
    return guard_programs(cfg), error


def _load_for_hook(explicit: str | None = None, wait: float = 10.0
                   ) -> tuple[Config, str | None]:
    """The config hasthook-exec runs on, and the error that made it fall back, if any.

    Never raises. Unchanged file: the cached JSON, no YAML, no jsonschema. Changed:
    validated once per edit, by the first hook to get the state dir's config.lock
    (the others wait for it, at most `wait` seconds, then use its result; past that
    they run on the last good copy); cfg.origin is "file" in the hook that
    validated it. Broken: the last good copy (else the built-in defaults, keeping
    the file's state_dir if it can be read), and the verdict is kept by the file's
    exact text, so a broken file costs later hooks no more than an unchanged one.
    """
    path, named = find(explicit)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        if not named and isinstance(e, FileNotFoundError):
            cfg = from_data({}, None)
            cfg.origin = "defaults"  # no file: nothing to validate
            return cfg, None
        return _fallback(path, Settings.state_dir, f"{path}: {e.strerror}")
    # The cache is keyed by the file's exact text (any bytes, kept by surrogateescape):
    # comparing a few KB costs nothing, where hashlib costs loading OpenSSL.
    source, exact = os.path.abspath(path), raw.decode("utf-8", "surrogateescape")
    state_dir = _state_dir_hint(raw.decode("utf-8", "replace"))
    found = _cached(path, state_dir, source, exact)
    if found is not None:
        return found
    from .. import trust
    from ..proc import FileLock

    lock = None
    try:  # the lock is dropped on every way out: a hook holding it holds up every other
        try:
            trust.state_dir(state_dir)
            lock = FileLock(os.path.join(state_dir, "config.lock"))
            if not lock.acquire(wait=wait):
                saved = read_last_good(state_dir)
                if saved:  # another hook is still validating the edit: run on what was good
                    cfg = from_data(saved["data"], path)
                    cfg.origin = "last-good"
                    return cfg, None
            else:
                found = _cached(path, state_dir, source, exact)  # validated while we waited
                if found is not None:
                    return found
        except (OSError, trust.Untrusted):
            pass  # no lock to be had: validate anyway (and cache nothing there)
        return _validate(path, state_dir, source, exact)
    finally:
        if lock is not None:
            lock.close()


def _cached(path: str, state_dir: str, source: str, exact: str
            ) -> tuple[Config, str | None] | None:
    """The verdict kept for this exact text: the valid config, or the fallback and error."""
    saved = read_last_good(state_dir)
    if saved and _same(saved, source, exact):
        cfg = from_data(saved["data"], path)
        cfg.origin = "cache"
        return cfg, None
    bad = _read_json(state_dir, BAD_NAME)
    if bad and _same(bad, source, exact) and isinstance(bad.get("error"), str):
        if saved:
            cfg = from_data(saved["data"], path)
            cfg.origin = "last-good"
        else:
            cfg = from_data({"settings": bad.get("settings") or {}}, path)
            cfg.origin = "defaults"
        return cfg, bad["error"]
    return None


def _validate(path: str, state_dir: str, source: str, exact: str
              ) -> tuple[Config, str | None]:
    text = exact.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    data: dict[str, Any] = {}
    try:
        data, problems = parse_and_validate(text, path)
        errors = [p for p in problems if not p.warning]
        if errors:
            raise _error(errors)
    except ConfigError as e:
        cfg, error = _fallback(path, state_dir, str(e), data.get("settings"))
        try:
            _save(state_dir, BAD_NAME, {"source": source, "text": exact, "error": error,
                                        "settings": cfg.data.get("settings")})
        except (OSError, HasthookError):
            pass  # the next hook judges it again
        return cfg, error
    cfg = from_data(data, path)
    try:
        save_last_good(cfg.settings.state_dir, source, exact, data)
    except (OSError, HasthookError):
        pass  # still valid; the next run validates again
    return cfg, None


def _fallback(path: str, state_dir: str, error: str, settings: Any = None
              ) -> tuple[Config, str]:
    """The last good copy; else the defaults, with the file's settings if they are valid."""
    from .schema import validate

    saved = read_last_good(state_dir)
    if saved:
        cfg = from_data(saved["data"], path)
        cfg.origin = "last-good"
        return cfg, error
    if not (isinstance(settings, dict) and not validate({"settings": settings})):
        settings = {"state_dir": state_dir}
    cfg = from_data({"settings": settings}, path)
    cfg.origin = "defaults"
    return cfg, error
