"""Check a config against schema.json and what JSON Schema cannot say, with precise errors.

The schema file is the single description of the format: jsonschema enforces
it here, editors complete and check against it (yaml-language-server), and
`hasthook schema` prints it. What a schema cannot express (unique rule names,
channels that exist, templates that are safe, URLs that apprise parses) is
checked below. Every problem becomes one line, `FILE:LINE:COL: path: message`,
with the line found by walking the YAML node tree along the JSON path.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from ..units import did_you_mean, format_duration, parse_duration, parse_size
from .problem import Problem
from .settings import HASTCTL_SHARE, Settings

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schema.json")
_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "nothing (null)"}


def schema_text() -> str:
    with open(SCHEMA_FILE, encoding="utf-8") as f:
        return f.read()


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads(schema_text())


@functools.cache
def _validator() -> Any:
    import jsonschema

    from .. import render

    fc = jsonschema.FormatChecker(formats=())

    def strings_only(fn):
        def check(value: object) -> bool:
            if isinstance(value, str):
                fn(value)
            return True
        return check

    def template(value: str) -> None:
        bad = render.problems(value)
        if bad:
            raise ValueError("; ".join(bad))

    def pattern(value: str) -> None:
        if value.startswith("re:"):
            try:
                re.compile(value[3:])
            except re.error as e:
                raise ValueError(f"bad regular expression {value[3:]!r}: {e}") from None

    for name, fn in (("duration", parse_duration), ("size", parse_size),
                     ("template", template), ("pattern", pattern),
                     ("alertmanager_url", check_url)):
        fc.checks(name, raises=ValueError)(strings_only(fn))
    return jsonschema.Draft202012Validator(schema(), format_checker=fc)


def check_url(url: str) -> None:
    """Raise ValueError unless `url` is an http(s) URL (an Alertmanager's)."""
    from urllib.parse import urlsplit

    from .. import redact

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {redact.url(url)!r}")


# One finding before it has a line: (JSON path, message, points at the key?, warning?)
Finding = tuple[list[Any], str, bool, bool]


def validate(data: dict[str, Any], file: str = "<config>", text: str | None = None,
             deep: bool = False) -> list[Problem]:
    """Every problem in a parsed config, sorted by line; [] when it is valid.

    `deep` also asks apprise whether each channel URL parses (slow to import,
    so `hasthook check` does it and the hook does not).
    """
    findings: list[Finding] = []
    for err in _validator().iter_errors(data):
        findings.extend(_explain(err))
    findings.extend(_semantic(data))
    if deep:
        findings.extend(_apprise_urls(data))
    if not findings:
        return []
    locate = _locator(text)
    out = [Problem(file, *locate(path, at_key), _dotted(path), msg, warning)
           for path, msg, at_key, warning in findings]
    return sorted(set(out), key=lambda p: (p.line, p.col, p.path, p.message))


def _dotted(path: list[Any]) -> str:
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(top level)"




def _types(t: str | list[str]) -> str:
    names = [_TYPE_NAMES.get(x, x) for x in ([t] if isinstance(t, str) else t)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _type_of(v: object) -> str:
    for name, types in (("null", type(None)), ("boolean", bool), ("integer", int),
                        ("number", float), ("string", str), ("array", list),
                        ("object", dict)):
        if isinstance(v, types):
            return _TYPE_NAMES[name]
    return type(v).__name__


def _explain(err: Any) -> Iterator[Finding]:
    """One jsonschema error as admin-readable findings."""
    path, v, sch, inst = list(err.absolute_path), err.validator, err.schema, err.instance
    if isinstance(sch, dict) and "x-message" in sch and v in (
            "oneOf", "anyOf", "not", "minProperties", "maxProperties"):
        yield path, sch["x-message"], False, False
    elif v in ("anyOf", "oneOf") and err.context:
        yield from _explain_branches(err)
    elif v == "additionalProperties":
        props = sch.get("properties", {})
        kind = sch.get("x-name", "key")
        for k in inst:
            if k not in props:
                yield path + [k], f"unknown {kind} {k!r}{did_you_mean(k, props)}", True, False
    elif v == "type":
        yield path, f"expected {_types(err.validator_value)}, got {_type_of(inst)}", False, False
    elif v == "enum":
        choices = err.validator_value
        # The events' list names each watch condition once, not again as NAME-resolved.
        shown = [str(c) for c in choices if not str(c).endswith("-resolved")]
        more = " or a condition's NAME-resolved" if len(shown) < len(choices) else ""
        yield path, (f"{inst!r} is not one of {', '.join(shown)}{more}"
                     f"{did_you_mean(inst, choices)}"), False, False
    elif v == "const":
        yield path, f"must be {err.validator_value!r}", False, False
    elif v == "required":
        for k in err.validator_value:
            if isinstance(inst, dict) and k not in inst:
                yield path, f"missing required key {k!r}", False, False
    elif v == "format":
        yield path, str(err.cause or err.message), False, False
    elif v in ("minItems", "minLength") and err.validator_value == 1:
        yield path, "must not be empty", False, False
    elif v == "minimum":
        yield path, f"must be at least {err.validator_value}", False, False
    elif v == "uniqueItems":
        yield path, "lists an item twice", False, False
    elif v == "pattern" and isinstance(inst, str):  # propertyNames: channel names
        yield path + [inst], f"{inst!r} is not a name (use letters, digits, _ . -)", True, False
    else:
        yield path, err.message, False, False


def _explain_branches(err: Any) -> Iterator[Finding]:
    """anyOf/oneOf: report the branch the value was meant for, not every alternative.

    A branch that got further into the value (an error below it) is the one
    meant; else any branch that failed on more than the value's type.
    """
    depth = len(err.absolute_path)
    branches: dict[Any, list[Any]] = {}
    for e in err.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    deeper = [b for b in branches.values() if any(len(e.absolute_path) > depth for e in b)]
    meant = [e for b in deeper for e in b] or [
        e for e in err.context if e.validator not in ("type", "enum")]
    if not meant:
        enum = [e for e in err.context if e.validator == "enum"]
        if enum and isinstance(err.instance, str):
            meant = enum
    if meant:
        for e in meant:
            yield from _explain(e)
        return
    wanted: list[str] = []
    for e in err.context:
        if e.validator == "type":
            t = e.validator_value
            wanted += [t] if isinstance(t, str) else t
        elif e.validator == "enum":
            wanted.append("string")
    yield (list(err.absolute_path), f"expected {_types(list(dict.fromkeys(wanted)))}, "
           f"got {_type_of(err.instance)}", False, False)


def _channel_refs(data: dict[str, Any]) -> Iterator[tuple[list[Any], str]]:
    """Every place that names a channel: (path, name)."""
    settings = data.get("settings")
    if isinstance(settings, dict):
        yield from _names(settings.get("alert_channels"), ["settings", "alert_channels"])
    rules = data.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        actions = rule.get("actions") if isinstance(rule, dict) else None
        for j, action in enumerate(actions if isinstance(actions, list) else []):
            if not isinstance(action, dict) or "notify" not in action:
                continue
            n, base = action["notify"], ["rules", i, "actions", j, "notify"]
            if isinstance(n, dict):
                n, base = n.get("channels"), base + ["channels"]
            yield from _names(n, base)


def _names(value: object, base: list[Any]) -> Iterator[tuple[list[Any], str]]:
    if isinstance(value, str):
        yield base, value
    elif isinstance(value, list):
        for k, v in enumerate(value):
            if isinstance(v, str):
                yield base + [k], v


def _semantic(data: dict[str, Any]) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    rules = data.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        name = rule.get("name") if isinstance(rule, dict) else None
        if isinstance(name, str):
            if name in seen:
                yield (["rules", i, "name"], f"duplicate rule name {name!r} "
                       f"(first used by rules[{seen[name]}])", False, False)
            seen.setdefault(name, i)
    channels = data.get("channels")
    known = list(channels) if isinstance(channels, dict) else []
    for path, name in _channel_refs(data):
        if name not in known:
            where = (f"defined: {', '.join(known)}" if known
                     else "no channels are defined")
            yield path, f"unknown channel {name!r}{did_you_mean(name, known)}; {where}", \
                False, False
    yield from _hastctl_timeout(data.get("settings"))


def _hastctl_timeout(settings: Any) -> Iterator[Finding]:
    """hasthook-exec gives hastctl at most a third (HASTCTL_SHARE) of its time box: a longer
    hastctl_timeout does not apply there, say so."""
    if not isinstance(settings, dict) or "hastctl_timeout" not in settings:
        return
    try:
        ctl = parse_duration(settings["hastctl_timeout"])
        box = parse_duration(settings.get("hook_timeout", Settings.hook_timeout))
    except (TypeError, ValueError):
        return  # the schema reports it
    cut = box / HASTCTL_SHARE
    if ctl > cut:
        yield (["settings", "hastctl_timeout"],
               f"longer than a third of hook_timeout ({format_duration(box)}): "
               f"hasthook-exec cuts hastctl at {round(cut, 1):g}s", False, True)


def channel_urls(data: dict[str, Any]) -> Iterator[tuple[list[Any], str]]:
    """Every apprise URL written in the config: (path, url)."""
    channels = data.get("channels")
    for name, ch in (channels.items() if isinstance(channels, dict) else ()):
        base = ["channels", name]
        if isinstance(ch, dict):
            ch, base = ch.get("urls"), base + ["urls"]
        yield from _names(ch, base)


def _apprise_urls(data: dict[str, Any]) -> Iterator[Finding]:
    for path, url in channel_urls(data):
        if secret_url(url) is None:
            yield path, "apprise cannot parse this URL (unknown service or malformed)", \
                False, False


@functools.cache
def secret_url(url: str) -> bool | None:
    """Does an apprise URL hold credentials? None when apprise cannot parse it."""
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return None
    return plugin.url(privacy=True) != plugin.url(privacy=False)


def _locator(text: str | None):
    """path -> (line, col), 1-based, from the YAML node tree of `text`."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader) if text is not None else None
    except yaml.YAMLError:
        root = None

    def locate(path: list[Any], at_key: bool) -> tuple[int, int]:
        if root is None:
            return 1, 1
        node, mark = root, root.start_mark
        for i, part in enumerate(path):
            if isinstance(node, yaml.MappingNode):
                for k, val in node.value:
                    if getattr(k, "value", None) == str(part):
                        last = i == len(path) - 1
                        mark = k.start_mark if (last and at_key) else val.start_mark
                        node = val
                        break
                else:
                    break
            elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
                  and part < len(node.value)):
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return mark.line + 1, mark.column + 1

    return locate


def file_warnings(path: str, data: dict[str, Any], text: str | None) -> list[Problem]:
    """What is risky about the file and what it names: secrets others can read (a
    warning), and, as errors, a file or a program root would run or read that fails the
    trust rule (owned by root, not writable by group or other, nor the directories above)."""
    import stat

    from .. import trust

    findings: list[Finding] = []
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return []
    if mode & 0o044:
        secret = next((p for p, url in channel_urls(data) if secret_url(url)), None)
        if secret is not None:
            findings.append((secret, f"this URL holds credentials and {path} is readable by "
                             f"group/other (mode {mode:04o}); chmod 600 {path}", False, True))
    why = trust.problem(path)
    if why:
        findings.append(([], f"{why}: root would run programs named by a file others can "
                         "change, so the hook ignores its programs (settings.hastctl, "
                         "commands, command actions, pre steps); fix: chown root and chmod "
                         "go-w the file and the directories above it", False, False))
    for where, program in named_programs(data):
        why = trust.program(program)
        if why:
            findings.append((where, f"{why}: root will not run it; fix: chown root and "
                             f"chmod go-w {program} and the directories above it",
                             False, False))
    for where, conf in _apprise_configs(data):
        why = (trust.problem(conf) if os.path.exists(conf)
               else f"{conf}: no such file")
        if why:
            findings.append((where, f"{why}: the channel cannot send; fix the file or the "
                             "path", False, False))
    locate = _locator(text)
    return [Problem(path, *locate(p, k), _dotted(p), m, w) for p, m, k, w in findings]


def named_programs(data: dict[str, Any]) -> Iterator[tuple[list[Any], str]]:
    """Every program the config has root run: settings.hastctl and settings.commands.*,
    and the argv[0] of each command action and recovery pre step (when not a template)."""
    settings = data.get("settings")
    if isinstance(settings, dict):
        if isinstance(settings.get("hastctl"), str):
            yield ["settings", "hastctl"], settings["hastctl"]
        cmds = settings.get("commands")
        for k, v in (cmds.items() if isinstance(cmds, dict) else ()):
            if isinstance(v, str):
                yield ["settings", "commands", k], v
    rules = data.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        acts = rule.get("actions") if isinstance(rule, dict) else None
        for j, action in enumerate(acts if isinstance(acts, list) else []):
            if not isinstance(action, dict):
                continue
            base = ["rules", i, "actions", j]
            cmd = action.get("command")
            argvs = [(base + ["command", "argv", 0], cmd.get("argv"))] \
                if isinstance(cmd, dict) else []
            rec = action.get("recover")
            if isinstance(rec, dict) and isinstance(rec.get("pre"), list):
                argvs += [(base + ["recover", "pre", k, 0], a) for k, a in enumerate(rec["pre"])]
            for where, argv in argvs:
                if isinstance(argv, list) and argv and isinstance(argv[0], str) \
                        and "{" not in argv[0]:
                    yield where, argv[0]


def _apprise_configs(data: dict[str, Any]) -> Iterator[tuple[list[Any], str]]:
    channels = data.get("channels")
    for name, ch in (channels.items() if isinstance(channels, dict) else ()):
        if isinstance(ch, dict) and isinstance(ch.get("apprise_config"), str):
            yield ["channels", name, "apprise_config"], ch["apprise_config"]
