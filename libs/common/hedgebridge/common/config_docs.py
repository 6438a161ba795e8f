"""The documentation of a configuration Struct, generated from its fields: which variable each field is read
from, its default and its one-line meaning (``config.setting``), as a Markdown table, a plain-text table (a
config module's docstring) or ``.env.example`` lines.

Pure functions of the Structs; which Struct goes into which file is ``hedgebridge.cli.config_tables``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec

from . import profiles
from .config import env_names


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable a Struct reads."""

    name: str  # HEDGEBRIDGE_EXECUTOR_ORDER_TIMEOUT_MS
    value: str  # the default as a value of the variable ("10000", "false", "")
    default: str  # the default as the docs show it ("10000", "(none)", "ex-<host>-<pid>")
    meaning: str


def render(value: object) -> str:
    """A default as the value of a variable: ``false``, ``30`` (not ``30.0``), ``nats://…``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _meta(kind: type[msgspec.Struct], field: str, hints: dict[str, object]) -> msgspec.Meta:
    for meta in getattr(hints[field], "__metadata__", ()):
        if isinstance(meta, msgspec.Meta) and meta.description:
            return meta
    raise ValueError(f"{kind.__name__}.{field} has no meaning: declare it Annotated[..., config.setting(...)]")


def _profile_defaults() -> dict[str, str]:
    """Variable -> "<default>, <profile>: <value>" for the variables another profile gives another default."""
    default = profiles.current({})
    others = [p for p in profiles.PROFILES.values() if p.name != default.name]
    shown: dict[str, str] = {}
    for name, value in default.gateway_defaults().items():
        changes = [f"{p.name}: {p.gateway_defaults()[name]}" for p in others if p.gateway_defaults()[name] != value]
        if changes:
            shown[name] = ", ".join([value, *changes])
    return shown


def variables(kind: type[msgspec.Struct], prefix: str) -> list[Variable]:
    """The variables ``kind`` reads, in field order (a base's shared fields first)."""
    names = env_names(kind, prefix)
    by_profile = _profile_defaults()
    hints = typing.get_type_hints(kind, include_extras=True)
    found: list[Variable] = []
    for field in msgspec.structs.fields(kind):
        meta = _meta(kind, field.name, hints)
        name, value = names[field.name], render(field.default)
        shown = (meta.extra or {}).get("default") or by_profile.get(name) or (value if value else "(none)")
        found.append(Variable(name, value, str(shown), meta.description or ""))
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _default(row: Variable) -> str:
    """A default cell: a value in backticks, a note such as "(none)" as it is."""
    return row.default if row.default.startswith("(") else f"`{row.default}`"


def markdown(rows: Iterable[Variable], read_by: Mapping[str, str] | None = None) -> str:
    """A Markdown table: variable, default, (read by,) meaning."""
    head = ["variable", "default", *(["read by"] if read_by is not None else []), "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [_cell(c) for c in (*([read_by[row.name]] if read_by is not None else []), row.meaning)]
        lines.append("| " + " | ".join([f"`{row.name}`", _default(row), *cells]) + " |")
    return "\n".join(lines) + "\n"


def text_table(rows: Iterable[Variable]) -> str:
    """A plain-text table (for a docstring): variable, default, meaning in aligned columns."""
    table = [("variable", "default", "meaning"), *((r.name, r.default, r.meaning) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in table) + "\n"


def with_table(doc: str | None, kind: type[msgspec.Struct], prefix: str) -> str:
    """A config module's docstring followed by the table of the variables ``kind`` reads."""
    return (
        f"{doc or ''}\nEnvironment variables (generated from {kind.__name__}):\n\n{text_table(variables(kind, prefix))}"
    )


def env_example(rows: Iterable[Variable]) -> str:
    """``.env.example`` lines: each variable commented out with its default, its meaning above it."""
    lines = []
    for row in rows:
        note = f" [default: {row.default}]" if row.default not in (row.value, "(none)") else ""
        lines.append(f"# {row.meaning}{note}\n# {row.name}={row.value}\n")
    return "".join(lines)
