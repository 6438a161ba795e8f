"""The per-account symbol map: what the system calls a symbol (canonical) and what an account's broker calls it.

``SYMBOL_MAP`` is what the KV bucket ``hb_symbol_map`` keeps per account (key = account id): explicit entries
from canonical to broker symbol, and an optional ``prefix`` / ``suffix`` that names every other symbol
(``EURUSD`` -> ``EURUSD.m`` with suffix ``.m``). The requests that change or read the maps (client API, admin
tokens only) are ``SET_SYMBOL_MAP``, ``REMOVE_SYMBOL_MAP`` and ``LIST_SYMBOL_MAPS``, each answered with
``SYMBOL_MAPS`` (the maps as they are after the change). The rules (what a map translates, which changes are
refused) are ``hedgebridge.common.symbol_map``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

from ..names import AFFIX_PATTERN
from .base import AccountId, Message, Symbol, UserId

MAP_ENTRIES_MAX = 1000  # explicit entries per account
Affix = Annotated[str, Meta(pattern=AFFIX_PATTERN)]  # a prefix or suffix; "" for none


class SymbolMap(Message, frozen=True, kw_only=True, tag="SYMBOL_MAP"):
    """One account's map. ``symbols``: canonical -> broker symbol (no two canonical names share a broker
    symbol); a canonical symbol not listed is ``prefix + symbol + suffix`` at the broker."""

    account_id: AccountId
    symbols: Annotated[dict[Symbol, Symbol], Meta(max_length=MAP_ENTRIES_MAX)] = {}
    prefix: Affix = ""
    suffix: Affix = ""
    updated_at: datetime | None = None
    updated_by: UserId = ""


class SetSymbolMap(Message, frozen=True, kw_only=True, tag="SET_SYMBOL_MAP"):
    """Add or replace entries of an account's map; ``prefix`` / ``suffix`` when given replace the account's
    (``""`` removes it)."""

    account_id: AccountId
    symbols: Annotated[dict[Symbol, Symbol], Meta(max_length=MAP_ENTRIES_MAX)] = {}
    prefix: Affix | None = None
    suffix: Affix | None = None


class RemoveSymbolMap(Message, frozen=True, kw_only=True, tag="REMOVE_SYMBOL_MAP"):
    """Remove explicit entries (by canonical symbol) of an account's map; the account's prefix and suffix
    then name them again. Naming a symbol the map does not list is refused."""

    account_id: AccountId
    symbols: Annotated[list[Symbol], Meta(min_length=1, max_length=MAP_ENTRIES_MAX)]


class ListSymbolMaps(Message, frozen=True, kw_only=True, tag="LIST_SYMBOL_MAPS"):
    """The map of ``accountId``, or every account's map when absent."""

    account_id: AccountId | None = None


class SymbolMaps(Message, frozen=True, kw_only=True, tag="SYMBOL_MAPS"):
    """The answer to a symbol map request: the maps it names, sorted by account (an account without a map is
    absent from a list and shown empty after a change)."""

    maps: list[SymbolMap] = []


SymbolMapRequest = SetSymbolMap | RemoveSymbolMap | ListSymbolMaps
