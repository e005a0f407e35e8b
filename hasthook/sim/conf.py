"""hast.conf(5) of a simulated node: written from its config, read back on a reload.

The file holds what hastd reads: `pidfile`, the global `exec`, and per resource `local`,
its own `exec`, the settings that differ from hastd's defaults, an `on HOST` section
for this node (remote, source) and one for its peer (remote: this node's address).
hasthook.hastconf parses it, as `hasthook watch` and the metrics will. Values are
written as they are: a path hastd's lexer would refuse (a space, a quote) makes a file
that does not parse, as it would on FreeBSD. The driver only: the fake hastctl never
reads it.
"""

from __future__ import annotations

from typing import Any

from hasthook.hastconf import HastConfError, parse

# hast.conf(5) defaults (hast.h): a setting equal to these is left out of the file.
DEFAULTS: dict[str, Any] = {"replication": "memsync", "checksum": "none",
                            "compression": "hole", "timeout": 20, "metaflush": True}
CHOICES = {"replication": ("fullsync", "memsync", "async"),
           "checksum": ("none", "crc32", "sha256"), "compression": ("none", "hole", "lzf")}
# What a reload compares (hastd.c resource_needs_restart/_reload); the rest of a
# resource's fields (sizes) live in its metadata, not in hast.conf.
RESTART_ALWAYS = ("localpath", "provname")
RESTART_OR_RELOAD = ("remoteaddr", "sourceaddr", "replication", "checksum", "compression",
                     "timeout", "exec", "metaflush")
FILE_FIELDS = (*RESTART_ALWAYS, *RESTART_OR_RELOAD)


def render(config: dict[str, Any]) -> str:
    """The node's hast.conf for its config (SimNode's `config` state)."""
    me, peer = config["name"], config.get("peer")
    out = [f"# hast.conf of simulated node {me} (hasthook.sim): hastd reads it at start "
           "and on SIGHUP."]
    if config.get("pidfile"):
        out.append(f"pidfile {config['pidfile']}")
    if config.get("exec"):
        out.append(f"exec {config['exec']}")
    for name in config["order"]:
        spec = config["resources"][name]
        out += ["", f"resource {name} {{", f"\tlocal {spec['localpath']}"]
        if spec.get("exec"):
            out.append(f"\texec {spec['exec']}")
        for key, default in DEFAULTS.items():
            value = spec.get(key, default)
            if value != default:
                word = {True: "on", False: "off"}.get(value, value) if key == "metaflush" else value
                out.append(f"\t{key} {word}")
        if spec.get("provname") and spec["provname"] != name:
            out.append(f"\tname {spec['provname']}")
        out.append(f"\ton {me} {{")
        if spec.get("remoteaddr"):
            out.append(f"\t\tremote {spec['remoteaddr']}")
        if spec.get("sourceaddr"):
            out.append(f"\t\tsource {spec['sourceaddr']}")
        out.append("\t}")
        if peer:
            out += [f"\ton {peer} {{", f"\t\tremote {config.get('address') or 'none'}", "\t}"]
        out.append("}")
    return "\n".join(out) + "\n"


def read(text: str, config: dict[str, Any]) -> dict[str, Any]:
    """This node's view of a hast.conf: {"exec", "order", "resources"}, each resource in
    the simulator's fields. Sizes come from the running config (the metadata), or
    hastctl create's defaults for a new resource. HastConfError says what is wrong."""
    conf = parse(text)
    glob = conf.settings
    out: dict[str, Any] = {"exec": glob.get("exec"), "order": [], "resources": {}}
    for name, res in conf.resources.items():
        node = res.node(config["name"])
        if node is None:  # parse.y: a resource without a section for this host is not ours
            continue
        here = node.settings

        def setting(key: str, _res: Any = res, _here: dict[str, str] = here) -> str | None:
            return _here.get(key) or _res.settings.get(key) or glob.get(key)

        spec: dict[str, Any] = {
            "name": name,
            "localpath": here.get("local") or res.settings.get("local") or "",
            "remoteaddr": here.get("remote", ""),
            "sourceaddr": here.get("source") or None,
            "provname": res.provname(config["name"]),
            "exec": res.settings.get("exec") or None,
        }
        if not spec["localpath"]:
            raise HastConfError(f"Local path not configured for resource {name}.")
        for key in ("replication", "checksum", "compression"):
            value = setting(key) or DEFAULTS[key]
            if value not in CHOICES[key]:
                raise HastConfError(f"resource {name}: invalid {key} {value!r}")
            spec[key] = value
        timeout = setting("timeout") or str(DEFAULTS["timeout"])
        if not timeout.isdigit() or int(timeout) == 0:
            raise HastConfError(f"resource {name}: invalid timeout {timeout!r}")
        spec["timeout"] = int(timeout)
        flush = setting("metaflush") or "on"
        if flush not in ("on", "off"):
            raise HastConfError(f"resource {name}: invalid metaflush {flush!r}")
        spec["metaflush"] = flush == "on"
        old = config["resources"].get(name, {})
        for key, default in (("extentsize", 2097152), ("keepdirty", 64),
                             ("mediasize", 10 * 1024 ** 3)):
            spec[key] = old.get(key, default)
        out["order"].append(name)
        out["resources"][name] = spec
    return out
