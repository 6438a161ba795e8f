"""The shape of the tree: layering, no import cycles, module sizes and docstrings.

Imports are read from the sources (``ast``), those under ``if TYPE_CHECKING:`` included: a cycle that only
type hints close is still two modules that each need the other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [
    *sorted(p for group in ("libs", "services") for p in (ROOT / group).iterdir() if p.is_dir()),
    ROOT / "cli",
]
MAX_SERVICE_LINES = 420  # "about 400": a module past it holds more than one concern


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        for path in (root / "hedgebridge").rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The project modules ``name`` imports (``from .x import y`` resolved; ``y`` counted when a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the module; ``from pkg import name`` imports the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and not f"{name}.".startswith(f"{target}."):  # a module's own packages are imported before it
                yield target


GRAPH = {name: sorted(set(_imports(name, path))) for name, path in MODULES.items()}


def _component(name: str) -> str:
    """``hedgebridge.gateway.server`` -> ``gateway``: the library, service or CLI a module belongs to."""
    return name.split(".")[1]


SERVICES = {"gateway", "executor", "coordinator", "monitor", "mt5bridge"}
LIBS = {"protocol", "common", "sim", "client"}


def test_the_module_list_is_read() -> None:
    assert "hedgebridge.gateway.server" in MODULES
    assert "hedgebridge.protocol.messages" in GRAPH["hedgebridge.protocol"]


def test_no_service_imports_another_and_no_library_imports_a_service() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if (_component(name) in SERVICES and _component(target) in SERVICES and _component(target) != _component(name))
        or (_component(name) in LIBS and _component(target) in SERVICES | {"cli"})
    ]
    assert wrong == []


def test_protocol_imports_no_other_part() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if _component(name) == "protocol"
        for target in targets
        if _component(target) != "protocol"
    ]
    assert wrong == []


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    GRAPH["test.a"], GRAPH["test.b"] = ["test.b"], ["test.a"]
    try:
        assert ["test.a", "test.b"] in _cycles()
    finally:
        del GRAPH["test.a"], GRAPH["test.b"]


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_service_modules_stay_small() -> None:
    big = {
        str(path.relative_to(ROOT)): lines
        for name, path in MODULES.items()
        if _component(name) in SERVICES and (lines := len(path.read_text().splitlines())) > MAX_SERVICE_LINES
    }
    assert big == {}


def test_every_module_says_what_it_owns() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if path.read_text().strip() and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert missing == []
