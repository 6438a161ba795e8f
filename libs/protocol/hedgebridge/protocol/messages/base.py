"""Shared field types and the bases of every message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from ..names import ACCOUNT_ID_PATTERN, ACTION_ID_PATTERN, SYMBOL_PATTERN, USER_ID_MAX

AccountId = Annotated[str, Meta(pattern=ACCOUNT_ID_PATTERN)]
Symbol = Annotated[str, Meta(pattern=SYMBOL_PATTERN)]
Ident = Annotated[str, Meta(min_length=1, max_length=128)]
# An idempotency key: also a JetStream KV key and a NATS subject token, hence the restricted alphabet.
ActionId = Annotated[str, Meta(pattern=ACTION_ID_PATTERN)]
Volume = Annotated[float, Meta(gt=0, le=1_000_000)]
PriceValue = Annotated[float, Meta(ge=0)]
Text = Annotated[str, Meta(max_length=1024)]
Side = Literal["BUY", "SELL"]
Status = Literal["SUCCESS", "FAILED"]
UserId = Annotated[str, Meta(max_length=USER_ID_MAX)]
# Integers on the wire: a count, sequence number or duration is 0..2^53-1, exact in every JSON reader (a
# JavaScript client, an EA parsing numbers as doubles) and within msgpack's 64 bits; a return or error code
# (MT5 retcodes, GetLastError, the MetaTrader5 package's negative codes) is a 32-bit signed int.
MAX_SAFE_INT = 2**53 - 1
Count = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
Code = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
# W3C trace context of the order's trace: commands carry it, the terminal echoes it in its report (optional)
TraceParent = Annotated[str, Meta(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Body(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Nested objects: camelCase, unknown fields ignored."""


class Message(_Body, frozen=True, kw_only=True, tag_field="type"):
    """Base of every tagged message."""


def to_builtins(msg: Struct) -> object:
    """The JSON-ready form of a message (camelCase keys, ISO timestamps)."""
    return msgspec.to_builtins(msg)
