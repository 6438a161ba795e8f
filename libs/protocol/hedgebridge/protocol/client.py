"""The client API: what systems and admins exchange with the gateway on ``/client`` (JSON frames).

Client → gateway:

- ``AUTH`` {token}: the first frame, for clients that cannot set an Authorization header (browsers).
- ``REQUEST`` {requestId, body}: ``body`` is an OPEN_ORDER, CLOSE_ORDER, MODIFY_ORDER, CLOSE_BATCH or ACTION,
  or (admin tokens only) SET_SYMBOL_MAP, REMOVE_SYMBOL_MAP or LIST_SYMBOL_MAPS. Answered by one ``REPLY`` with
  the same requestId (or an ``ERROR`` whose ``refId`` is the requestId).
- ``SUBSCRIBE`` {requestId, topics, accounts?, resume?, recent?}: live events of those topics, limited to
  ``accounts`` (all the token may see when absent). Answered by ``SUBSCRIBED``. ``UNSUBSCRIBE``
  {requestId, topics}.
- ``HISTORY`` {requestId, accounts?, types?, since?, until?, cursor?, limit?}: one page of the persisted
  events (``HISTORY_TYPES``), oldest first, within the token's scope. Answered by ``HISTORY_PAGE`` {requestId,
  entries, nextCursor, more}; the next page is asked with ``cursor`` = ``nextCursor`` (the same filters).
- ``HEARTBEAT``: as on the EA wire.

Gateway → client: ``CLIENT_WELCOME`` (after authentication), ``REPLY``, ``HISTORY_PAGE``, ``SUBSCRIBED``, ``EVENT``
{topic, data, epoch?, seq?}, ``CAUGHT_UP``, ``RESYNC``, ``SLOW_CONSUMER``, ``HEARTBEAT``, ``ERROR``.

Delivery of each topic (``TOPIC_DELIVERY``) after a reconnect:

- ``STREAM`` (trades, orders, actions, consistency conflicts, alerts): every event is kept in JetStream and
  numbered: ``EVENT.seq`` is its stream sequence (growing, not contiguous: the topic is a filtered view of
  the stream), ``EVENT.epoch`` names the stream's history (it changes when that history restarts). A
  SUBSCRIBE with ``resume`` {topic: {epoch, seq}} gets exactly the events after ``seq`` (replayed), then
  ``CAUGHT_UP`` {topic, epoch, seq}, then the live events, without gap or duplicate; ``recent`` N asks for
  the last N events of a topic without a cursor. When the history no longer reaches back (the epoch
  changed, the events after ``seq`` expired, ``seq`` is unknown, or the gap is longer than the gateway
  replays) the topic gets ``RESYNC`` {topic, reason} first, then its most recent events (100, or
  ``recent`` when larger), then ``CAUGHT_UP``.
- ``SNAPSHOT`` (positions, balances, terminals): each event is the whole state of an account; a stream-mode
  SUBSCRIBE (with ``resume`` or ``recent``) starts with the last event of every account, then
  ``CAUGHT_UP``.
- ``LATEST`` (prices, monitor): latest wins, nothing is replayed; the next event is the current value.

``resume`` and ``recent`` are optional: a SUBSCRIBE without them is answered as before (live events only;
no CAUGHT_UP, RESYNC or snapshot), so older clients keep working. A client whose frames wait past the
gateway's high-water mark gets ``SLOW_CONSUMER`` {queued, highWater, limit} before it is ever closed (1008
"slow consumer" once the queue is full).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from .messages import (
    AccountId,
    AccountUpdate,
    ActionRequest,
    ActionState,
    Alert,
    BatchResult,
    CloseBatch,
    ClosedEvent,
    CloseOrder,
    Conflict,
    ConsistencyStatus,
    Count,
    ErrorMessage,
    Heartbeat,
    Message,
    ModifiedEvent,
    ModifyOrder,
    MonitorReport,
    OpenedEvent,
    OpenOrder,
    OrderResult,
    PositionUpdate,
    PriceTick,
    SymbolMapRequest,
    SymbolMaps,
    TerminalStatus,
)
from .messages.base import _Body
from .names import SCOPE_MAX

RequestId = Annotated[str, Meta(min_length=1, max_length=128)]
Epoch = Annotated[str, Meta(min_length=1, max_length=128)]
Seq = Count  # a stream sequence (JSON clients read integers exactly up to 2**53 - 1)

Topic = Literal[
    "prices", "positions", "balances", "trades", "terminals", "orders", "actions", "consistency", "alerts", "monitor"
]
TOPICS: tuple[str, ...] = (
    "prices",
    "positions",
    "balances",
    "trades",
    "terminals",
    "orders",
    "actions",
    "consistency",
    "alerts",
    "monitor",
)

Delivery = Literal["STREAM", "SNAPSHOT", "LATEST"]
TOPIC_DELIVERY: dict[str, Delivery] = {
    "prices": "LATEST",
    "positions": "SNAPSHOT",
    "balances": "SNAPSHOT",
    "trades": "STREAM",
    "terminals": "SNAPSHOT",
    "orders": "STREAM",
    "actions": "STREAM",
    "consistency": "STREAM",  # conflicts are kept; the overall CONSISTENCY status is latest-wins
    "alerts": "STREAM",
    "monitor": "LATEST",
}
ResyncReason = Literal["EPOCH_CHANGED", "HISTORY_EXPIRED", "UNKNOWN_SEQUENCE", "TOO_FAR_BEHIND"]
RECENT_MAX = 1000  # events a SUBSCRIBE may ask per topic with ``recent``
RESYNC_RECENT = 100  # events of a topic sent after a RESYNC (``recent`` when the SUBSCRIBE asks more)


class Cursor(_Body, frozen=True, kw_only=True):
    """Where a client is in a STREAM topic: the last event it has (``seq``) in the history ``epoch``."""

    epoch: Epoch
    seq: Seq


class Auth(Message, frozen=True, kw_only=True, tag="AUTH"):
    token: Annotated[str, Meta(min_length=1, max_length=8192)]


class ClientRequest(Message, frozen=True, kw_only=True, tag="REQUEST"):
    request_id: RequestId
    body: OpenOrder | CloseOrder | ModifyOrder | CloseBatch | ActionRequest | SymbolMapRequest


class Subscribe(Message, frozen=True, kw_only=True, tag="SUBSCRIBE"):
    request_id: RequestId
    topics: Annotated[list[Topic], Meta(min_length=1, max_length=len(TOPICS))]
    accounts: Annotated[list[AccountId], Meta(max_length=SCOPE_MAX)] | None = None
    resume: Annotated[dict[Topic, Cursor], Meta(max_length=len(TOPICS))] | None = None
    recent: Annotated[int, Meta(ge=0, le=RECENT_MAX)] | None = None

    @property
    def stream_mode(self) -> bool:
        """Whether the client asked for history and snapshots (then every topic ends its start with
        CAUGHT_UP)."""
        return self.resume is not None or self.recent is not None


class Unsubscribe(Message, frozen=True, kw_only=True, tag="UNSUBSCRIBE"):
    request_id: RequestId
    topics: Annotated[list[Topic], Meta(min_length=1, max_length=len(TOPICS))]


class ClientWelcome(Message, frozen=True, kw_only=True, tag="CLIENT_WELCOME"):
    protocol_version: Count
    session_id: str
    role: str
    subject: str
    accounts: list[str] | None  # None: every account (admin)
    users: list[str] = []
    heartbeat_interval_ms: Count
    server_time: datetime


class ClientReply(Message, frozen=True, kw_only=True, tag="REPLY"):
    request_id: str
    result: OrderResult | BatchResult | ActionState | SymbolMaps


class Subscribed(Message, frozen=True, kw_only=True, tag="SUBSCRIBED"):
    request_id: str
    topics: list[str]
    accounts: list[str] | None


EventData = (
    OpenedEvent
    | ClosedEvent
    | ModifiedEvent
    | AccountUpdate
    | PositionUpdate
    | PriceTick
    | TerminalStatus
    | OrderResult
    | ActionState
    | Conflict
    | ConsistencyStatus
    | Alert
    | MonitorReport
)


class Push(Message, frozen=True, kw_only=True, tag="EVENT"):
    """A live or replayed event. On STREAM topics ``epoch`` and ``seq`` number it (see the module's doc)."""

    topic: str
    data: EventData
    epoch: str | None = None
    seq: Seq | None = None


class CaughtUp(Message, frozen=True, kw_only=True, tag="CAUGHT_UP"):
    """The start of a topic asked in stream mode is complete: what follows is live. On a STREAM topic
    ``epoch``/``seq`` are the client's cursor from here (the stream's head at the hand-over) even when no
    event was sent; ``replayed`` counts the events sent from history, ``snapshot`` the snapshot events."""

    request_id: str
    topic: str
    epoch: str | None = None
    seq: Seq | None = None
    replayed: Count = 0
    snapshot: Count = 0


class Resync(Message, frozen=True, kw_only=True, tag="RESYNC"):
    """The history of a STREAM topic does not reach back to the client's cursor: events may be missing
    between the cursor and what follows. ``epoch``/``firstSeq`` are the stream's history now."""

    request_id: str
    topic: str
    reason: ResyncReason
    message: str
    epoch: str
    first_seq: Seq = 0


class SlowConsumerWarning(Message, frozen=True, kw_only=True, tag="SLOW_CONSUMER"):
    """The client's frames wait past the high-water mark: read faster, or it is closed (1008 "slow
    consumer") when ``limit`` frames wait. Sent once per crossing."""

    timestamp: datetime
    queued: Count
    high_water: Count
    limit: Count


# --- history ------------------------------------------------------------------------------------------------

HistoryType = Literal["OPENED", "CLOSED", "MODIFIED", "ORDER_RESULT", "ACTION_STATE", "CONFLICT", "ALERT"]
HISTORY_TYPES: tuple[str, ...] = ("OPENED", "CLOSED", "MODIFIED", "ORDER_RESULT", "ACTION_STATE", "CONFLICT", "ALERT")
HISTORY_LIMIT_MAX = 500  # entries a HISTORY page holds at most
HISTORY_LIMIT_DEFAULT = 100
HistoryCursor = Annotated[str, Meta(min_length=1, max_length=1024)]  # opaque: a page's ``nextCursor``
AwareTime = Annotated[datetime, Meta(tz=True)]  # ISO 8601 with ``Z`` or an offset
HistoryData = OpenedEvent | ClosedEvent | ModifiedEvent | OrderResult | ActionState | Conflict | Alert


class HistoryRequest(Message, frozen=True, kw_only=True, tag="HISTORY"):
    """One page of the persisted events: those of ``types`` (all when absent) of ``accounts`` (all the token
    may see when absent) stored from ``since`` up to ``until`` (both included), oldest first; ``cursor`` (a
    page's ``nextCursor``) continues after that page."""

    request_id: RequestId
    accounts: Annotated[list[AccountId], Meta(max_length=SCOPE_MAX)] | None = None
    types: Annotated[list[HistoryType], Meta(min_length=1, max_length=len(HISTORY_TYPES))] | None = None
    since: AwareTime | None = None
    until: AwareTime | None = None
    cursor: HistoryCursor | None = None
    limit: Annotated[int, Meta(ge=1, le=HISTORY_LIMIT_MAX)] = HISTORY_LIMIT_DEFAULT


class HistoryEntry(_Body, frozen=True, kw_only=True):
    """One persisted event: when JetStream stored it (``time``), where (``stream``, ``seq``), its type, the
    accounts it concerns (none for a system-wide alert) and the event itself."""

    time: datetime
    stream: str
    seq: Seq
    type: HistoryType
    accounts: list[str] = []
    data: HistoryData


class HistoryPage(Message, frozen=True, kw_only=True, tag="HISTORY_PAGE"):
    """The answer to HISTORY. ``more`` false: every event stored when the page was read is in this page or an
    earlier one (later events are read with ``nextCursor`` again). A page may hold fewer entries than asked,
    none even, with ``more`` true: each page reads a bounded number of stored events (``scanned``).
    ``expired``: events after the cursor were removed (max age) before they were read."""

    request_id: str
    entries: list[HistoryEntry]
    next_cursor: str
    more: bool
    scanned: Count
    expired: bool = False


ClientFrame = Auth | ClientRequest | Subscribe | Unsubscribe | HistoryRequest | Heartbeat
ServerFrame = (
    ClientWelcome
    | ClientReply
    | HistoryPage
    | Subscribed
    | Push
    | CaughtUp
    | Resync
    | SlowConsumerWarning
    | Heartbeat
    | ErrorMessage
)

_client_decoder: msgspec.json.Decoder[ClientFrame] = msgspec.json.Decoder(ClientFrame)
_server_decoder: msgspec.json.Decoder[ServerFrame] = msgspec.json.Decoder(ServerFrame)


def decode_client_frame(data: bytes | str) -> ClientFrame:
    """Decode a frame a client sent. Raises ProtocolError only."""
    from .codec import decode_with

    result: ClientFrame = decode_with(_client_decoder, data)
    return result


def decode_server_frame(data: bytes | str) -> ServerFrame:
    """Decode a frame the gateway sent to a client (for the SDK). Raises ProtocolError only."""
    from .codec import decode_with

    result: ServerFrame = decode_with(_server_decoder, data)
    return result
