"""The client API: what systems and admins exchange with the gateway on ``/client`` (JSON frames).

Client → gateway:

- ``AUTH`` {token}: the first frame, for clients that cannot set an Authorization header (browsers).
- ``REQUEST`` {requestId, body}: ``body`` is an OPEN_ORDER, CLOSE_ORDER, CLOSE_BATCH or ACTION. Answered by
  one ``REPLY`` with the same requestId (or an ``ERROR`` whose ``refId`` is the requestId).
- ``SUBSCRIBE`` {requestId, topics, accounts?}: live events of those topics, limited to ``accounts`` (all
  the token may see when absent). Answered by ``SUBSCRIBED``. ``UNSUBSCRIBE`` {requestId, topics}.
- ``HEARTBEAT``: as on the EA wire.

Gateway → client: ``CLIENT_WELCOME`` (after authentication), ``REPLY``, ``SUBSCRIBED``, ``EVENT``
{topic, data}, ``HEARTBEAT``, ``ERROR``.
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
    MonitorReport,
    OpenedEvent,
    OpenOrder,
    OrderResult,
    PositionUpdate,
    PriceTick,
    TerminalStatus,
)
from .names import SCOPE_MAX

RequestId = Annotated[str, Meta(min_length=1, max_length=128)]

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


class Auth(Message, frozen=True, kw_only=True, tag="AUTH"):
    token: Annotated[str, Meta(min_length=1, max_length=8192)]


class ClientRequest(Message, frozen=True, kw_only=True, tag="REQUEST"):
    request_id: RequestId
    body: OpenOrder | CloseOrder | CloseBatch | ActionRequest


class Subscribe(Message, frozen=True, kw_only=True, tag="SUBSCRIBE"):
    request_id: RequestId
    topics: Annotated[list[Topic], Meta(min_length=1, max_length=len(TOPICS))]
    accounts: Annotated[list[AccountId], Meta(max_length=SCOPE_MAX)] | None = None


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
    result: OrderResult | BatchResult | ActionState


class Subscribed(Message, frozen=True, kw_only=True, tag="SUBSCRIBED"):
    request_id: str
    topics: list[str]
    accounts: list[str] | None


EventData = (
    OpenedEvent
    | ClosedEvent
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
    topic: str
    data: EventData


ClientFrame = Auth | ClientRequest | Subscribe | Unsubscribe | Heartbeat
ServerFrame = ClientWelcome | ClientReply | Subscribed | Push | Heartbeat | ErrorMessage

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
