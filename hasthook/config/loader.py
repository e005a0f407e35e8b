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
from ..errors import ConfigError
from ..record import Record, fresh
from .problem import Problem
from .settings import Settings

TYPE_CHECKING = False  # typing is not imported at run time: hasthook-exec starts faster
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/etc/hasthook/rules.yaml"
ENV_VAR = "HASTHOOK_CONFIG"

LKG_NAME = "config.lkg.json"


class Config(Record):
    """A rules file as hasthook uses it: its data, its typed settings, where it came from."""

    path: str | None
    data: dict[str, Any] = fresh(dict)
    settings: Settings = fresh(Settings)
    # "file" (just validated), "cache" (unchanged since validated), "last-good"
    # (the file is broken; this is the copy that last passed), or "defaults".
    origin: str = "file"

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
        """Why commands from this file must not run as root, as cron and sudo judge it.

        The file and its directory must be owned by root (or by us) and not
        writable by group or other; else anyone who can edit them runs code as root.
        """
        from .. import trust

        return trust.problem(self.path) if self.path else None


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
    return from_data(data, path)


# -- the hook's path: cached, and a last good copy when the file breaks ---------

_STATE_DIR_LINE = re.compile(r"""^[ \t{]*state_dir\s*:\s*["']?([^"'\s,}#]+)""", re.M)


def _state_dir_hint(text: str) -> str:
    """Where the cache should be, read without parsing YAML (only a hint: verified by hash)."""
    m = _STATE_DIR_LINE.search(text) or re.search(
        r"""[{,]\s*state_dir\s*:\s*["']?([^"'\s,}#]+)""", text)
    return m.group(1) if m else Settings.state_dir


def read_last_good(state_dir: str) -> dict[str, Any] | None:
    return last_good(state_dir)[0]


def last_good(state_dir: str) -> tuple[dict[str, Any] | None, str | None]:
    """The copy the hook falls back on: (copy, None), (None, None) when there is none
    (or it is damaged: the hook would not use it either), (None, why) when it cannot be
    read from here (`hasthook check` as a user who cannot read the state dir)."""
    path = os.path.join(state_dir, LKG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"{path}: {e.strerror or e}"
    except ValueError:
        return None, None
    ok = isinstance(saved, dict) and isinstance(saved.get("data"), dict)
    return (saved if ok else None), None


def last_good_for(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """last_good() of the state dir this file's text names, found as the hook finds it."""
    return last_good(_state_dir_hint(text))


def save_last_good(state_dir: str, source: str, text: str, data: dict[str, Any]) -> None:
    """Keep a validated config (0600, written whole then renamed: never half a file)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, LKG_NAME)
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"source": source, "text": text, "saved": time.time(), "data": data}, f)
    os.replace(tmp, path)


def load_for_hook(explicit: str | None = None) -> tuple[Config, str | None]:
    """The config hasthook-exec runs on, and the error that made it fall back, if any.

    Never raises. Unchanged file: the cached JSON, no YAML, no jsonschema.
    Changed and valid: validated, used, and cached. Broken: the last good copy
    (else the built-in defaults, keeping the file's state_dir if it can be read).
    """
    path, named = find(explicit)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        if not named and isinstance(e, FileNotFoundError):
            return from_data({}, None), None
        return _fallback(path, Settings.state_dir, None,
                         f"{path}: {e.strerror}")
    # The cache is keyed by the file's exact text (any bytes, kept by surrogateescape):
    # comparing a few KB costs nothing, where hashlib costs loading OpenSSL.
    source, exact = os.path.abspath(path), raw.decode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "replace")
    state_dir = _state_dir_hint(text)
    saved = read_last_good(state_dir)
    if saved and saved.get("text") == exact and saved.get("source") == source:
        cfg = from_data(saved["data"], path)
        cfg.origin = "cache"
        return cfg, None
    data: dict[str, Any] = {}
    try:
        data, problems = parse_and_validate(text, path)
        errors = [p for p in problems if not p.warning]
        if errors:
            raise _error(errors)
    except ConfigError as e:
        return _fallback(path, state_dir, saved, str(e), data.get("settings"))
    cfg = from_data(data, path)
    try:
        save_last_good(cfg.settings.state_dir, source, exact, data)
    except OSError:
        pass  # still valid; the next run validates again
    return cfg, None


def _fallback(path: str, state_dir: str, saved: dict[str, Any] | None, error: str,
              settings: Any = None) -> tuple[Config, str]:
    """The last good copy; else the defaults, with the file's settings if they are valid."""
    from .schema import validate

    saved = saved or read_last_good(state_dir)
    if saved:
        cfg = from_data(saved["data"], path)
        cfg.origin = "last-good"
        return cfg, error
    if not (isinstance(settings, dict) and not validate({"settings": settings})):
        settings = {"state_dir": state_dir}
    cfg = from_data({"settings": settings}, path)
    cfg.origin = "defaults"
    return cfg, error
