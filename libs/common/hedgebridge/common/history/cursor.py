"""The cursor of a HISTORY page, pure: ``h1.`` + base64url JSON holding, per stream, its epoch and the last
sequence consumed (``Position``)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .query import STREAMS, HistoryError

CURSOR_PREFIX = "h1."


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream's next page starts: after ``seq`` in the history ``epoch``."""

    epoch: str
    seq: int


Cursor = dict[str, Position]


def encode_cursor(cursor: Mapping[str, Position]) -> str:
    raw = json.dumps({s: [p.epoch, p.seq] for s, p in sorted(cursor.items())}, separators=(",", ":"))
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """A cursor a page gave (``HistoryError`` on field ``cursor`` when it is not one)."""
    bad = HistoryError("not a cursor a HISTORY_PAGE gave (nextCursor)", "cursor")
    if not text.startswith(CURSOR_PREFIX):
        raise bad
    body = text[len(CURSOR_PREFIX) :]
    try:
        raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(raw, dict):
        raise bad
    cursor: Cursor = {}
    for stream, value in raw.items():
        ok = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and type(value[1]) is int
        if stream not in STREAMS or not ok or value[1] < 0:
            raise bad
        cursor[stream] = Position(value[0], value[1])
    return cursor
