"""Opening a connection to ``/client`` and resuming after it ends: the handshake (header or AUTH frame, then
CLIENT_WELCOME), which ends are worth reconnecting after, the backoff between attempts, the cursor of every
STREAM topic (``Cursors``) and the SUBSCRIBE frames that resume what a client followed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hedgebridge.common.backoff import after_retry_after, full_jitter, retry_after_of
from hedgebridge.protocol import ErrorMessage, ProtocolError, encode_frame, subprotocol
from hedgebridge.protocol.client import (
    TOPIC_DELIVERY,
    Auth,
    CaughtUp,
    ClientWelcome,
    Cursor,
    Push,
    Subscribe,
    decode_server_frame,
)

from .errors import UNEXPECTED_REPLY, ClientError, ConnectionLost

SLOW_CONSUMER = "slow consumer"
# closes after which a reconnect may succeed: the gateway stopped (1001), the network (1006, None), a fault
# (1011), a restart (1012), overload (1013), a heartbeat missed (4001), or this client read too slowly
_RETRYABLE = frozenset({1001, 1006, 1011, 1012, 1013, 4001})


@dataclass(frozen=True, slots=True)
class Options:
    """How to (re)open the connection."""

    url: str
    token: str
    auth_frame: bool = False
    open_timeout_s: float = 10.0
    max_frame_bytes: int | None = 64 * 1024 * 1024


async def open_connection(options: Options) -> tuple[ClientConnection, ClientWelcome]:
    """Connect and authenticate. Raises ``ClientError`` when the gateway refuses (an ERROR, or 1008 with the
    reason), ``ConnectionLost`` when it closes, and websockets' or the OS's errors when it cannot be reached."""
    headers = {} if options.auth_frame else {"Authorization": f"Bearer {options.token}"}
    ws = await connect(
        options.url,
        additional_headers=headers,
        subprotocols=[subprotocol()],  # type: ignore[list-item]
        open_timeout=options.open_timeout_s,
        ping_interval=None,  # liveness is the protocol's HEARTBEAT
        max_size=options.max_frame_bytes,
        compression=None,
    )
    try:
        if options.auth_frame:
            await ws.send(encode_frame(Auth(token=options.token)).decode())
        async with asyncio.timeout(options.open_timeout_s):
            first = decode_server_frame(await ws.recv())
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        raise ConnectionLost(code, exc.rcvd.reason if exc.rcvd else "") from None
    except (ProtocolError, TimeoutError):
        await ws.close()
        raise
    if isinstance(first, ErrorMessage):
        await ws.close()
        raise ClientError.from_frame(first)
    if not isinstance(first, ClientWelcome):
        await ws.close()
        raise ClientError(UNEXPECTED_REPLY, f"expected CLIENT_WELCOME, got {type(first).__name__}")
    return ws, first


def worth_reconnecting(lost: ConnectionLost) -> bool:
    """Whether the end of a connection may be healed by connecting again (not a refused or expired token,
    not a normal close)."""
    if lost.close_code is None or lost.close_code in _RETRYABLE:
        return True
    return lost.close_code == 1008 and lost.close_reason == SLOW_CONSUMER


def attempt_failed_for_good(exc: BaseException) -> bool:
    """Whether a failed reconnect attempt means that trying again cannot help (the token is refused)."""
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code in (401, 403)
    if isinstance(exc, ConnectionLost):
        return not worth_reconnecting(exc)
    return isinstance(exc, ClientError)


def backoff_s(attempt: int, *, first_s: float = 0.1, longest_s: float = 5.0) -> float:
    """The wait before reconnect attempt ``attempt`` (1, 2, …): doubling from ``first_s``, at most
    ``longest_s``, with full jitter so that many clients do not come back at once."""
    return full_jitter(attempt, first_s, longest_s)


def wait_after_s(exc: BaseException, attempt: int) -> float:
    """The wait after reconnect attempt ``attempt`` failed with ``exc``: the backoff of the next attempt, or
    longer when a busy gateway refused it with ``Retry-After`` (that long plus a random share of it)."""
    wait = backoff_s(attempt + 1)
    if isinstance(exc, InvalidStatus):
        retry_after = retry_after_of(exc.response.headers.get("Retry-After"))
        if retry_after is not None:
            wait = max(wait, after_retry_after(retry_after))
    return wait


class Cursors:
    """The last (epoch, seq) this client has of every STREAM topic: from each numbered EVENT and from
    CAUGHT_UP (the cursor after a topic's start, even when no event came)."""

    def __init__(self) -> None:
        self.by_topic: dict[str, Cursor] = {}

    def seen(self, frame: Push | CaughtUp) -> None:
        if frame.epoch is not None and frame.seq is not None:
            self.by_topic[frame.topic] = Cursor(epoch=frame.epoch, seq=frame.seq)

    def seed(self, resume: Mapping[str, Cursor]) -> None:
        for topic, cursor in resume.items():
            self.by_topic.setdefault(topic, cursor)

    def forget(self, topics: Iterable[str]) -> None:
        for topic in topics:
            self.by_topic.pop(topic, None)

    def resume_of(self, topics: Iterable[str]) -> dict[str, Cursor]:
        return {t: self.by_topic[t] for t in topics if t in self.by_topic and TOPIC_DELIVERY.get(t) == "STREAM"}


def resume_frames(followed: Iterable[tuple[list[str], list[str] | None]], cursors: Cursors) -> list[Subscribe]:
    """The SUBSCRIBE frames that follow again, on a new connection, what the subscriptions ``followed``
    ((topics, accounts) each; accounts None: every account): one per set of accounts, each topic with the
    union of its subscriptions' accounts, resumed from its cursor, in stream mode (snapshots, CAUGHT_UP)."""
    accounts_of: dict[str, set[str] | None] = {}
    for topics, accounts in followed:
        for topic in topics:
            current = accounts_of.get(topic, set())
            accounts_of[topic] = None if accounts is None or current is None else current | set(accounts)
    groups: dict[tuple[str, ...] | None, list[str]] = {}
    for topic, union in accounts_of.items():
        groups.setdefault(None if union is None else tuple(sorted(union)), []).append(topic)
    frames: list[Subscribe] = []
    for accounts_key, topics in groups.items():
        resume = cursors.resume_of(topics)
        frames.append(
            Subscribe(
                request_id=uuid.uuid4().hex,
                topics=topics,  # type: ignore[arg-type]
                accounts=None if accounts_key is None else list(accounts_key),
                resume=resume or None,  # type: ignore[arg-type]
                recent=0,
            )
        )
    return frames
