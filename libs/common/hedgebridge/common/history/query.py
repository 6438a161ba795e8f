"""A HISTORY query, pure: the types of persisted events (``KINDS``: the stream each lives in, the client topic
whose rules say who sees it, its subjects and where they name the account), a request checked (``Query``),
``since`` as the command line writes it (``parse_since``) and who may see what (``Visible``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hedgebridge.protocol import (
    ActionState,
    Alert,
    ClosedEvent,
    Conflict,
    ModifiedEvent,
    OpenedEvent,
    OrderResult,
    subjects,
)
from hedgebridge.protocol.client import HISTORY_TYPES, HistoryData, HistoryRequest, HistoryType

STREAMS = (subjects.EVENTS_STREAM, subjects.ALERTS_STREAM)  # the order of equal times

# Whether a client may see an event: (its client topic, the account its subject names or None, the event).
Visible = Callable[[str, str | None, HistoryData], bool]


def everything(topic: str, account: str | None, data: HistoryData) -> bool:
    """The visibility of a reader with every right (the command line, on NATS)."""
    return True


class HistoryError(Exception):
    """A query that cannot be answered as asked; ``field`` names what to change."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Kind:
    """A type of persisted event: its stream, the client topic whose rules say who sees it, the subject of
    every account's events, and where an account is in its subject (``of_account`` builds one account's,
    ``account_token`` is the account's token; None when the subject names no account)."""

    name: HistoryType
    stream: str
    topic: str
    wildcard: str
    message: type[HistoryData]
    of_account: Callable[[str], str] | None = None
    account_token: int | None = None


KINDS: dict[str, Kind] = {
    "OPENED": Kind(
        "OPENED",
        subjects.EVENTS_STREAM,
        "trades",
        subjects.event_any_account("OPENED"),
        OpenedEvent,
        lambda a: subjects.event(a, "OPENED"),
        2,
    ),
    "CLOSED": Kind(
        "CLOSED",
        subjects.EVENTS_STREAM,
        "trades",
        subjects.event_any_account("CLOSED"),
        ClosedEvent,
        lambda a: subjects.event(a, "CLOSED"),
        2,
    ),
    "MODIFIED": Kind(
        "MODIFIED",
        subjects.EVENTS_STREAM,
        "trades",
        subjects.event_any_account("MODIFIED"),
        ModifiedEvent,
        lambda a: subjects.event(a, "MODIFIED"),
        2,
    ),
    "ORDER_RESULT": Kind(
        "ORDER_RESULT", subjects.EVENTS_STREAM, "orders", subjects.ALL_RESULTS, OrderResult, subjects.result, 3
    ),
    "ACTION_STATE": Kind("ACTION_STATE", subjects.EVENTS_STREAM, "actions", subjects.ALL_ACTIONS, ActionState),
    "CONFLICT": Kind("CONFLICT", subjects.EVENTS_STREAM, "consistency", subjects.CONFLICTS, Conflict),
    "ALERT": Kind("ALERT", subjects.ALERTS_STREAM, "alerts", subjects.ALL_ALERTS, Alert, subjects.account_alerts),
}
assert tuple(KINDS) == HISTORY_TYPES


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    wanted, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(wanted) == len(got)


def kind_of(subject: str) -> Kind | None:
    return next((k for k in KINDS.values() if subject_matches(k.wildcard, subject)), None)


@dataclass(frozen=True, slots=True)
class Query:
    """A HISTORY request checked: the types (every one when the request names none), the accounts asked
    (None: all the reader may see), the time bounds, the page's size."""

    types: tuple[str, ...]
    accounts: frozenset[str] | None
    since: datetime | None
    until: datetime | None
    limit: int

    @classmethod
    def of(cls, request: HistoryRequest) -> Query:
        if request.since is not None and request.until is not None and request.until < request.since:
            raise HistoryError("until is before since", "until")
        types = HISTORY_TYPES if request.types is None else tuple(t for t in HISTORY_TYPES if t in request.types)
        accounts = None if request.accounts is None else frozenset(request.accounts)
        return cls(types, accounts, request.since, request.until, request.limit)

    def streams(self) -> list[str]:
        return [s for s in STREAMS if any(KINDS[t].stream == s for t in self.types)]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_UNIT_S = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse_since(text: str, now: datetime) -> datetime:
    """``since`` as the command line takes it: an ISO 8601 time (UTC when it names no zone) or a duration
    back from ``now`` (``90s``, ``15m``, ``1h``, ``2d``, ``1w``, ``1h30m``). Raises ValueError."""
    text = text.strip()
    if text and _DURATION.sub("", text) == "" and text[0].isdigit():
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(text))
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-24T10:00:00Z) nor a duration (90s, 15m, 1h, 2d, 1w)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
