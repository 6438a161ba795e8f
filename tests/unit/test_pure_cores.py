"""The pure cores (executor, coordinator, monitor, the terminal link's rules, the client API's rules, the
supervision rules of ``hedgebridge up``) stay pure: neither they nor any project module they
import (transitively) imports asyncio, NATS, a cache client or a WebSocket library, and none of them reads
the clock (``time``): they are given the time."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PURE = [
    "hedgebridge.executor.order_run",
    "hedgebridge.executor.run_actions",
    "hedgebridge.executor.repeat",
    "hedgebridge.executor.lifecycle",
    "hedgebridge.executor.orders",
    "hedgebridge.common.terminal_link.rules",
    "hedgebridge.common.history.core",
    "hedgebridge.sim.checks",
    "hedgebridge.sim.book",
    "hedgebridge.gateway.client_rules",
    "hedgebridge.coordinator.run",
    "hedgebridge.coordinator.actions",
    "hedgebridge.coordinator.model",
    "hedgebridge.coordinator.validation",
    "hedgebridge.coordinator.planning",
    "hedgebridge.coordinator.consistency",
    "hedgebridge.monitor.watch",
    "hedgebridge.monitor.health",
    "hedgebridge.monitor.picture",
    "hedgebridge.monitor.rules",
    "hedgebridge.monitor.latency",
    "hedgebridge.cli.supervision",
]
IO_LIBRARIES = {"asyncio", "nats", "redis", "valkey", "websockets", "aiohttp"}


def _path(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a name inside a module, not a module
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(name: str) -> set[str]:
    """Every module ``name`` imports, relative imports resolved (``from pkg import mod`` counts ``pkg.mod``)."""
    path = _path(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            if base.startswith("hedgebridge"):
                found |= {f"{base}.{a.name}" for a in node.names if _path(f"{base}.{a.name}") is not None}
    return found


def _reached(name: str) -> dict[str, set[str]]:
    """The project modules ``name`` reaches, each with what it imports."""
    seen: dict[str, set[str]] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen[current] = _imports(current)
        todo += [m for m in seen[current] if m.startswith("hedgebridge.") and m not in seen]
    return seen


@pytest.mark.parametrize("core", PURE)
def test_a_pure_core_imports_no_io_and_reads_no_clock(core: str) -> None:
    reached = _reached(core)
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in reached.items()
        for target in targets
        if target.split(".")[0] in IO_LIBRARIES
    )
    assert wrong == []
    assert "time" not in _imports(core)


def test_the_check_sees_an_io_import() -> None:
    assert "asyncio" in _imports("hedgebridge.coordinator.driver")
    assert any(m.startswith("nats") for m in _reached("hedgebridge.coordinator.errors")["hedgebridge.common.bus"])
