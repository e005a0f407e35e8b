"""The package's shape (docs/design.md): imports point one way, nothing imports the hook.

Every import in hasthook/ is read from the source (lazy ones inside functions
included; `if TYPE_CHECKING:` blocks are for the type checker and left out).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "hasthook"

# Highest first. A module may import its own layer or lower ones, never higher.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("programs", ("hasthook.cli", "hasthook.commands", "hasthook.exec", "hasthook.sim")),
    ("pipeline", ("hasthook.pipeline", "hasthook.spool", "hasthook.watch")),
    ("actions", ("hasthook.actions",)),
    ("tools", ("hasthook.tools",)),
    ("edges", ("hasthook.delivery", "hasthook.store", "hasthook.hast", "hasthook.log",
               "hasthook.proc", "hasthook.config", "hasthook.trust", "hasthook.files",
               "hasthook.turns")),
    ("core", ("hasthook.event", "hasthook.rules", "hasthook.silences", "hasthook.render",
              "hasthook.units", "hasthook.record", "hasthook.errors", "hasthook.sysexits",
              "hasthook.redact", "hasthook.hastconf", "hasthook")),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The hasthook modules `name` imports at run time."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def layer(name: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or
                                                            len(p) > len(best[1])):
                best = (i, p)
    assert best is not None, f"{name} is in no layer: add it to LAYERS and docs/design.md"
    return best[0]


def test_nothing_imports_the_hook():
    g = graph()
    assert [m for m, deps in g.items() if "hasthook.exec" in deps] == []


def test_imports_point_down_the_layers():
    g = graph()
    upward = [(m, d) for m, deps in g.items() for d in deps if layer(d) < layer(m)]
    assert upward == []


def test_no_import_cycles():
    g = graph()
    seen: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for d in sorted(g.get(m, ())):
            if seen.get(d) == 1:
                cycles.append(path[path.index(d):] + [d] if d in path else [m, d])
            elif d not in seen:
                visit(d, path + [d])
        seen[m] = 2

    for m in sorted(g):
        if m not in seen:
            visit(m, [m])
    assert cycles == []


def test_subprocess_and_apprise_live_in_one_place_each():
    """One way to run a program (proc.py; the simulator plays FreeBSD's processes), one
    module that imports apprise (delivery/apprise_target.py; check only parses URLs)."""
    mods = modules()
    users = {}
    for lib in ("subprocess", "apprise"):
        users[lib] = sorted(
            name for name, path in mods.items()
            if not name.startswith("hasthook.sim")
            and any(isinstance(n, ast.Import | ast.ImportFrom)
                    and lib in ([a.name for a in n.names] if isinstance(n, ast.Import)
                                else [n.module])
                    for n in ast.walk(ast.parse(path.read_text()))))
    assert users == {"subprocess": ["hasthook.proc"],
                     "apprise": ["hasthook.config.schema", "hasthook.delivery.apprise_target"]}
