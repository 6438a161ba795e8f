"""Symbol mapping as pure functions: what an account's broker calls a canonical symbol, what a broker's symbol
is in canonical terms, what a change to a map does (and which changes are refused), and the translation of a
terminal's events into canonical symbols. No I/O, no clock: the maps and the time come as arguments.

- An account's map (``SymbolMap``) lists explicit entries, canonical -> broker symbol, and may have a
  ``prefix`` and a ``suffix``: a canonical symbol without an entry is ``prefix + symbol + suffix`` at the broker
  (``EURUSD`` -> ``EURUSD.m`` with the suffix ``.m``). No map, or an empty one: the names are the same.
- Back from the broker: an explicit entry's broker symbol is its canonical symbol; otherwise a broker symbol
  that has the prefix and the suffix is the symbol between them (unless that symbol has an entry of its own);
  any other broker symbol keeps its name (nothing in the map explains it).
- One to one: a change that would give two canonical symbols the same broker symbol is refused
  (``SYMBOL_MAP_CONFLICT``). A canonical symbol whose prefix/suffix name is an entry's broker symbol (no rules
  and ``XAUUSD=GOLD``: canonical ``GOLD`` would reach the broker's ``GOLD``, which is ``XAUUSD``) cannot be
  sent: ``to_broker`` refuses it, so that whatever goes out comes back under the name it was sent with.
- Events carry the canonical ``symbol`` and, when the broker names it differently, ``brokerSymbol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import msgspec

from hedgebridge.protocol import (
    Event,
    OpenedEvent,
    Position,
    PositionUpdate,
    PriceTick,
    RemoveSymbolMap,
    SetSymbolMap,
    SymbolMap,
    SymbolSpec,
    SymbolSpecs,
    errors,
    names,
)

_Named = TypeVar("_Named", PriceTick, OpenedEvent, Position, SymbolSpec)  # what carries a symbol


class MapRefused(Exception):
    """A change to a map, or a symbol to send, that the rules refuse: ``code`` from the registry, ``field`` the
    offending field's path when a request names it."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


@dataclass(frozen=True, slots=True)
class Mapping:
    """One account's map, ready to translate in both directions."""

    account_id: str
    symbols: dict[str, str] = field(default_factory=dict)  # canonical -> broker
    prefix: str = ""
    suffix: str = ""
    reverse: dict[str, str] = field(default_factory=dict, init=False)  # broker -> canonical (explicit entries)

    def __post_init__(self) -> None:
        self.reverse.update({broker: canonical for canonical, broker in self.symbols.items()})

    @classmethod
    def of(cls, stored: SymbolMap) -> Mapping:
        return cls(stored.account_id, dict(stored.symbols), stored.prefix, stored.suffix)

    @property
    def identity(self) -> bool:
        """Whether every name is the same at the broker (nothing to translate)."""
        return not self.prefix and not self.suffix and all(c == b for c, b in self.symbols.items())

    def to_broker(self, canonical: str) -> str:
        """The broker's name of ``canonical``; ``MapRefused`` when the map cannot send it unambiguously."""
        explicit = self.symbols.get(canonical)
        if explicit is not None:
            return explicit
        broker = f"{self.prefix}{canonical}{self.suffix}"
        owner = self.reverse.get(broker)
        if owner is not None:  # the name the rules give is another symbol's entry
            raise MapRefused(
                errors.SYMBOL_MAP_CONFLICT,
                f"{canonical} on account {self.account_id} would be sent as {broker}, which the account's symbol "
                f"map gives to {owner}; map {canonical} to its broker symbol (hedgebridge symbols set --account "
                f"{self.account_id} {canonical}=BROKER_SYMBOL); nothing was sent",
            )
        if not names.is_symbol(broker):
            raise MapRefused(
                errors.SYMBOL_MAP_CONFLICT,
                f"{canonical} on account {self.account_id} would be sent as {broker!r}, which is not a valid symbol "
                "(at most 32 of A-Z a-z 0-9 . _ # + -); nothing was sent",
            )
        return broker

    def to_canonical(self, broker: str) -> str:
        """The canonical name of the broker's ``broker`` (itself when nothing in the map explains it)."""
        explicit = self.reverse.get(broker)
        if explicit is not None:
            return explicit
        inner = len(broker) - len(self.prefix) - len(self.suffix)
        if inner > 0 and broker.startswith(self.prefix) and broker.endswith(self.suffix):
            canonical = broker[len(self.prefix) : len(broker) - len(self.suffix)]
            if canonical not in self.symbols and names.is_symbol(canonical):
                return canonical
        return broker


def mapping(stored: SymbolMap | None) -> Mapping | None:
    """The mapping of a stored map; None when it translates nothing."""
    if stored is None:
        return None
    built = Mapping.of(stored)
    return None if built.identity else built


# --- changes -------------------------------------------------------------------------------------------------


def _check_one_to_one(account_id: str, symbols: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for canonical in sorted(symbols):
        broker = symbols[canonical]
        other = seen.get(broker)
        if other is not None:
            raise MapRefused(
                errors.SYMBOL_MAP_CONFLICT,
                f"{other} and {canonical} would both be {broker} at the broker of account {account_id}; a symbol "
                f"map is one to one (remove {other} first, or map {canonical} to another symbol); nothing was "
                "changed",
                f"symbols.{canonical}",
            )
        seen[broker] = canonical


def apply_set(current: SymbolMap | None, change: SetSymbolMap, now: datetime, by: str) -> SymbolMap:
    """The account's map once ``change`` is applied (``MapRefused`` when the result is not one to one)."""
    symbols = dict(current.symbols) if current is not None else {}
    symbols.update(change.symbols)
    _check_one_to_one(change.account_id, symbols)
    prefix = change.prefix if change.prefix is not None else (current.prefix if current is not None else "")
    suffix = change.suffix if change.suffix is not None else (current.suffix if current is not None else "")
    return SymbolMap(
        account_id=change.account_id,
        symbols={c: symbols[c] for c in sorted(symbols)},
        prefix=prefix,
        suffix=suffix,
        updated_at=now,
        updated_by=by,
    )


def apply_remove(current: SymbolMap | None, change: RemoveSymbolMap, now: datetime, by: str) -> SymbolMap:
    """The account's map without the entries ``change`` names (``MapRefused`` when one is not in it)."""
    symbols = dict(current.symbols) if current is not None else {}
    missing = [s for s in change.symbols if s not in symbols]
    if missing:
        listed = ", ".join(missing)
        raise MapRefused(
            errors.INVALID_REQUEST,
            f"the symbol map of account {change.account_id} has no entry for {listed}; nothing was changed",
            "symbols",
        )
    for canonical in change.symbols:
        del symbols[canonical]
    return SymbolMap(
        account_id=change.account_id,
        symbols=symbols,
        prefix=current.prefix if current is not None else "",
        suffix=current.suffix if current is not None else "",
        updated_at=now,
        updated_by=by,
    )


def is_empty(stored: SymbolMap) -> bool:
    """A map with no entry and no rule: the account needs no key at all."""
    return not stored.symbols and not stored.prefix and not stored.suffix


# --- events in canonical symbols -----------------------------------------------------------------------------


def _renamed(m: Mapping, item: _Named) -> _Named:
    """``item`` under its canonical symbol, the broker's kept as ``brokerSymbol`` where it differs (the same
    object when nothing changes)."""
    broker = item.symbol
    assert broker is not None
    canonical = m.to_canonical(broker)
    if canonical == broker:
        return item if item.broker_symbol is None else msgspec.structs.replace(item, broker_symbol=None)
    return msgspec.structs.replace(item, symbol=canonical, broker_symbol=broker)


def inbound(event: Event, m: Mapping | None) -> Event:
    """``event`` (as the terminal sent it, in broker symbols) in canonical symbols, the broker's name kept as
    ``brokerSymbol`` where it differs; unchanged when the account translates nothing."""
    if m is None:
        return event
    if isinstance(event, PriceTick):
        return _renamed(m, event)
    if isinstance(event, OpenedEvent):
        return event if event.symbol is None else _renamed(m, event)
    if isinstance(event, PositionUpdate):
        return msgspec.structs.replace(event, positions=[_renamed(m, p) for p in event.positions])
    if isinstance(event, SymbolSpecs):
        return msgspec.structs.replace(event, symbols=[_renamed(m, s) for s in event.symbols])
    return event
