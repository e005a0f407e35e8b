"""hast.conf(5) as hastd reads it: which program each resource runs, who its peers are. Pure.

The grammar follows sbin/hastd/token.l and parse.y: words are
`[a-zA-Z0-9./:_[\\]-]+`, `#` starts a comment, `{ }` open and close a section.
Global statements (control, pidfile, listen, replication, checksum,
compression, timeout, exec, metaflush) and `on NODE { control pidfile listen }`
come before or between `resource NAME { ... }` sections; a resource takes
replication, checksum, compression, timeout, exec, metaflush, name, local and
`on NODE { name local remote source metaflush }`. A resource's `exec` falls
back to the global one, its provider name to the resource name; the `on`
section whose name is this host (the full hostname or its first component,
as isitme() compares) is this node's view.

Used to tell whether hastd runs hasthook-exec for a resource (`hasthook watch`)
and which two hosts form a pair (the metrics' `pair` label).
"""

from __future__ import annotations

import re

from .record import Record, fresh

# Keywords of token.l: they are never a plain word, so a resource cannot be named so.
KEYWORDS = frozenset((
    "control", "pidfile", "listen", "replication", "checksum", "compression", "timeout",
    "exec", "metaflush", "resource", "name", "local", "remote", "source", "on", "off",
    "fullsync", "memsync", "async", "none", "crc32", "sha256", "hole", "lzf"))
_TOKEN = re.compile(r"([{}])|([a-zA-Z0-9./:_\[\]-]+)|(\S)")
_GLOBAL = ("control", "pidfile", "listen", "replication", "checksum", "compression",
           "timeout", "exec", "metaflush")
_RESOURCE = ("replication", "checksum", "compression", "timeout", "exec", "metaflush",
             "name", "local")
_RESOURCE_NODE = ("name", "local", "remote", "source", "metaflush")
_NODE = ("control", "pidfile", "listen")


class HastConfError(ValueError):
    """hast.conf does not parse; the message names the line, as hastd's does."""


class Node(Record):
    """One `on NODE { ... }` section of a resource."""

    host: str
    settings: dict[str, str] = fresh(dict)


class Resource(Record):
    """One `resource NAME { ... }` section, with the globals it inherits filled in."""

    name: str
    settings: dict[str, str] = fresh(dict)   # resource-level statements
    nodes: list[Node] = fresh(list)
    exec: str | None = None                  # resource exec, else the global one

    @property
    def hosts(self) -> list[str]:
        """The names of its `on` sections: the two hosts of the pair."""
        return [n.host for n in self.nodes]

    def node(self, hostname: str) -> Node | None:
        """This host's `on` section: the full hostname or its first component (isitme)."""
        short = hostname.split(".", 1)[0]
        return next((n for n in self.nodes if n.host in (hostname, short)), None)

    def provname(self, hostname: str) -> str:
        """The GEOM provider name: the node's `name`, the resource's, else its own name."""
        node = self.node(hostname)
        return ((node.settings.get("name") if node else None)
                or self.settings.get("name") or self.name)

    def pair(self) -> str:
        """Both hosts, sorted and joined by `+`: the same text on either node."""
        return "+".join(sorted(self.hosts))


class HastConf(Record):
    settings: dict[str, str] = fresh(dict)   # global statements
    resources: dict[str, Resource] = fresh(dict)


def _tokens(text: str) -> list[tuple[int, str]]:
    """(line, token) pairs: words and braces; comments dropped, anything else refused."""
    out: list[tuple[int, str]] = []
    for line, content in enumerate(text.splitlines(), 1):
        for m in _TOKEN.finditer(content.split("#", 1)[0]):
            brace, word, other = m.groups()
            if other is not None:
                raise HastConfError(f"line {line}: unexpected {other!r}")
            out.append((line, brace or word))
    return out


def parse(text: str) -> HastConf:
    """The file's sections; HastConfError names the line of the first problem."""
    toks = _tokens(text)
    conf = HastConf()
    i = 0

    def word(what: str) -> str:
        nonlocal i
        if i >= len(toks):
            raise HastConfError(f"end of file: expected {what}")
        line, tok = toks[i]
        if tok in "{}":
            raise HastConfError(f"line {line}: expected {what}, got {tok!r}")
        i += 1
        return tok

    def expect(tok: str) -> None:
        nonlocal i
        if i >= len(toks) or toks[i][1] != tok:
            where = f"line {toks[i][0]}" if i < len(toks) else "end of file"
            raise HastConfError(f"{where}: expected {tok!r}")
        i += 1

    def section(allowed: tuple[str, ...], where: str) -> dict[str, str]:
        nonlocal i
        out: dict[str, str] = {}
        expect("{")
        while i < len(toks) and toks[i][1] != "}":
            line, key = toks[i]
            if key not in allowed:
                raise HastConfError(f"line {line}: {key!r} is not allowed in {where}")
            i += 1
            out[key] = word(f"a value for {key}")
        expect("}")
        return out

    while i < len(toks):
        line, key = toks[i]
        i += 1
        if key == "resource":
            name = word("a resource name")
            if name in KEYWORDS:
                raise HastConfError(f"line {line}: {name!r} is a keyword, not a name")
            if name in conf.resources:
                raise HastConfError(f"line {line}: Resource {name} configured more than once.")
            res = Resource(name)
            expect("{")
            while i < len(toks) and toks[i][1] != "}":
                rline, rkey = toks[i]
                i += 1
                if rkey == "on":
                    host = word("a node name")
                    res.nodes.append(Node(host, section(_RESOURCE_NODE, f"on {host}")))
                elif rkey in _RESOURCE:
                    res.settings[rkey] = word(f"a value for {rkey}")
                else:
                    raise HastConfError(f"line {rline}: {rkey!r} is not allowed in "
                                        f"resource {name}")
            expect("}")
            conf.resources[name] = res
        elif key == "on":
            host = word("a node name")
            section(_NODE, f"on {host}")
        elif key in _GLOBAL:
            conf.settings[key] = word(f"a value for {key}")
        else:
            raise HastConfError(f"line {line}: unexpected {key!r}")
    for res in conf.resources.values():
        res.exec = res.settings.get("exec") or conf.settings.get("exec")
    return conf


def load(path: str) -> HastConf:
    """Read and parse a hast.conf; OSError and HastConfError name the file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    try:
        return parse(text)
    except HastConfError as e:
        raise HastConfError(f"{path}: {e}") from None
