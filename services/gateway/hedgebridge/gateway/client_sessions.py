"""One client connection on ``/client``: its frames in, its queue of frames out, its subscriptions.

A session reads a frame, checks it with the pure rules (``client_rules``), and either answers at once (an
ERROR, a heartbeat, SUBSCRIBED) or hands a request to its hub (``SessionHub.forward``), at most
``client_max_in_flight`` at a time. Everything it sends goes through one bounded queue, written by one task;
a client that lets the queue fill up is closed as a slow consumer. Its subscriptions are memberships of the
hub's shared feeds (``client_feeds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hedgebridge.common import logs
from hedgebridge.common.auth import Principal
from hedgebridge.common.obs import tracing
from hedgebridge.common.tasks import cancel_and_wait
from hedgebridge.protocol import (
    ActionState,
    BatchResult,
    ErrorMessage,
    Heartbeat,
    Message,
    OrderResult,
    ProtocolError,
    encode_frame,
    errors,
    type_name,
    utcnow,
)
from hedgebridge.protocol.client import (
    Auth,
    ClientReply,
    ClientRequest,
    EventData,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_client_frame,
)
from hedgebridge.protocol.errors import CloseCode

from . import outgoing, telemetry
from .client_feeds import FeedRegistry
from .client_rules import (
    SLOW_CONSUMER,
    FeedKey,
    Refusal,
    RequestBody,
    check_request_scope,
    check_subscribe_scope,
    close_reason,
    complete_body,
    feed_keys,
    merge_selection,
    remaining_accounts,
    request_id_of,
    subscribed_accounts,
    visible,
)
from .config import GatewayConfig
from .limits import TokenBucket

log = logs.get("gateway")


class SessionHub(Protocol):
    """What a session needs of the hub that holds it."""

    config: GatewayConfig
    feeds: FeedRegistry
    slow_consumers: int

    @property
    def nats(self) -> NatsClient: ...

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None: ...

    async def forward(
        self, body: RequestBody, principal: Principal
    ) -> OrderResult | BatchResult | ActionState | Refusal: ...


class ClientSession:
    """One authenticated client connection."""

    def __init__(self, hub: SessionHub, connection: ServerConnection, principal: Principal, version: int) -> None:
        self.hub = hub
        self.connection = connection
        self.principal = principal
        self.version = version
        self.session_id = uuid.uuid4().hex
        self.queue = outgoing.OutgoingQueue(hub.config.client_queue_max, priority=hub.config.client_priority)
        self.selections: dict[str, frozenset[str] | None] = {}  # topic -> accounts subscribed (None: all)
        self.keys: dict[str, set[FeedKey]] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_seen = asyncio.get_running_loop().time()
        self.in_flight = asyncio.Semaphore(hub.config.client_max_in_flight)
        self.bucket = TokenBucket(hub.config.message_rate, hub.config.message_burst)
        self.waiting = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._subscribe_lock = asyncio.Lock()

    # outgoing

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await outgoing.write(self.connection, await self.queue.get_batch(self.hub.config.client_batch_max))

    def enqueue(self, message: Message) -> None:
        telemetry.frame_out("client", type_name(message))
        self.enqueue_text(encode_frame(message).decode())

    def enqueue_text(self, text: str, urgent: bool = True) -> None:
        if self.close_code is not None:
            return
        try:
            self.queue.put_nowait(text, urgent)
        except asyncio.QueueFull:
            self.hub.slow_consumers += 1
            log.warning("slow consumer closed", session=self.session_id, subject=self.principal.subject)
            self.retire(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER)

    def error(
        self, refusal: Refusal | ProtocolError, *, ref_type: str | None = None, ref_id: str | None = None
    ) -> None:
        self.enqueue(
            ErrorMessage(
                code=refusal.code,
                message=refusal.message,
                field=refusal.field,
                ref_type=ref_type,
                ref_id=ref_id,
                timestamp=utcnow(),
            )
        )

    def retire(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` in the background (never blocks the caller)."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = code, reason
        self.hub.spawn(self.connection.close(code, close_reason(reason)))

    def wants(self, topic: str, data: EventData) -> bool:
        if topic not in self.selections:
            return False
        return visible(self.principal, self.selections[topic], topic, data)

    # incoming

    async def handle_frame(self, data: str | bytes) -> None:
        try:
            frame = decode_client_frame(data)
        except ProtocolError as exc:
            self.error(exc, ref_type=exc.ref_type, ref_id=request_id_of(data) or exc.ref_id)
            return
        telemetry.frame_in("client", frame)
        if isinstance(frame, Heartbeat):
            if not frame.reply:
                self.enqueue(Heartbeat(timestamp=utcnow(), seq=frame.seq, reply=True))
        elif isinstance(frame, ClientRequest):
            refusal = check_request_scope(self.principal, frame.body)
            if refusal is not None:
                self.error(refusal, ref_type="REQUEST", ref_id=frame.request_id)
                return
            self.waiting = True  # a client with too many requests running is read no further (not silence)
            try:
                await self.in_flight.acquire()
            finally:
                self.waiting = False
                self.last_seen = asyncio.get_running_loop().time()
            task = asyncio.create_task(self._request(frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(frame, Subscribe):
            await self._subscribe(frame)
        elif isinstance(frame, Unsubscribe):
            await self._unsubscribe(frame)
        elif isinstance(frame, Auth):
            self.error(Refusal(errors.UNEXPECTED_TYPE, "already authenticated"), ref_type="AUTH")

    async def _request(self, frame: ClientRequest) -> None:
        span = tracing.begin("gateway.client_request", "gateway")  # the request's trace starts here
        try:
            body = complete_body(frame.body, self.principal)
            outcome = await self.hub.forward(body, self.principal)
            if isinstance(outcome, Refusal):
                self.error(outcome, ref_type="REQUEST", ref_id=frame.request_id)
            else:
                self.enqueue(ClientReply(request_id=frame.request_id, result=outcome))
        except Exception:
            log.exception("client request failed", session=self.session_id)
            self.error(Refusal(errors.INTERNAL, "internal error"), ref_type="REQUEST", ref_id=frame.request_id)
        finally:
            self.in_flight.release()
            tracing.finish(span, **{"hedgebridge.request_id": frame.request_id})

    async def _subscribe(self, frame: Subscribe) -> None:
        refusal = check_subscribe_scope(self.principal, frame.accounts)
        if refusal is not None:
            self.error(refusal, ref_type="SUBSCRIBE", ref_id=frame.request_id)
            return
        asked = None if frame.accounts is None else frozenset(frame.accounts)
        async with self._subscribe_lock:
            for topic in dict.fromkeys(frame.topics):
                await self._select(topic, merge_selection(self.selections.get(topic, frozenset()), asked))
            await self.hub.nats.flush()  # events published after SUBSCRIBED reach this client
        topics: list[str] = list(dict.fromkeys(frame.topics))
        accounts = subscribed_accounts(self.principal, frame.accounts)
        self.enqueue(Subscribed(request_id=frame.request_id, topics=topics, accounts=accounts))

    async def _unsubscribe(self, frame: Unsubscribe) -> None:
        async with self._subscribe_lock:
            for topic in frame.topics:
                await self._select(topic, frozenset(), keep=False)
        accounts = remaining_accounts(self.principal, self.selections)
        self.enqueue(Subscribed(request_id=frame.request_id, topics=sorted(self.selections), accounts=accounts))

    async def _select(self, topic: str, selection: frozenset[str] | None, *, keep: bool = True) -> None:
        wanted = feed_keys(self.principal, topic, selection) if keep else set()
        held = self.keys.get(topic, set())
        for key in wanted - held:
            await self.hub.feeds.attach(key, self)
        for key in held - wanted:
            await self.hub.feeds.detach(key, self)
        if keep:
            self.selections[topic], self.keys[topic] = selection, wanted
        else:
            self.selections.pop(topic, None)
            self.keys.pop(topic, None)

    async def cleanup(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for keys in list(self.keys.values()):
            for key in keys:
                await self.hub.feeds.detach(key, self)
        self.keys.clear()
        self.selections.clear()
        await cancel_and_wait(self._writer)
