"""The shape of the code: no import cycle in service/, one table of routes."""

from __future__ import annotations

import ast
from pathlib import Path

from service import routes

SERVICE = Path(__file__).resolve().parent.parent / "service"


def _module(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The service modules ``path`` imports, anywhere in it (a lazy import inside a function counts)."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(SERVICE.rglob("*.py"))
    known = {_module(f) for f in files}
    return {_module(f): _imports(f, known) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ importing its own submodules is how packages work, not a cycle.
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_service() -> None:
    graph = import_graph()
    assert graph["service.app"], "the graph must be read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_imports_nothing_of_the_web_layer() -> None:
    for module, imports in import_graph().items():
        if module.startswith("service.activations"):
            assert all(m.startswith("service.activations") for m in imports), (module, imports)


def test_every_path_is_written_once() -> None:
    # The table is the one place a route is defined: no other module spells a route's path.
    paths = {op.path for op in routes.TABLE if op.path not in ("/",)}
    for path in SERVICE.glob("*.py"):
        if path.name in ("routes.py", "client.py"):  # the client calls the routes; it defines none
            continue
        text = path.read_text(encoding="utf-8")
        for route in paths:
            assert f'"{route}"' not in text, f"{path.name} spells the route {route}"
