"""One client connection on ``/client``: its frames in, its queue of frames out, its subscriptions.

A session reads a frame, checks it with the pure rules (``client_rules``), and either answers at once (an
ERROR, a heartbeat, SUBSCRIBED) or hands a request to its hub (``SessionHub.forward``), at most
``client_max_in_flight`` at a time. Everything it sends goes through one bounded queue; a client that lets
the queue fill up is closed as a slow consumer. The hub's ``Flusher`` writes the queue right after frames were
queued, while the socket takes them (``flush``); once the socket's buffer is full, the session's writer task
writes and waits for the socket to drain, and the frames queued meanwhile wait in the queue. Its
subscriptions are memberships of the hub's shared feeds (``client_feeds``).

When the queue reaches its high-water mark (``client_queue_high_water_pct`` of the limit) the client gets a
SLOW_CONSUMER frame, in front of the queue, and the warning is counted; only a full queue closes it. A
SUBSCRIBE with ``resume`` or ``recent`` starts its topics from history or a snapshot (``client_streams``):
each such topic has a ``Handover`` that keeps its live events until the start is sent.
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
    SymbolMaps,
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
    HistoryRequest,
    SlowConsumerWarning,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_client_frame,
)
from hedgebridge.protocol.errors import CloseCode

from . import client_history, outgoing, telemetry
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
    sees,
    subscribed_accounts,
)
from .client_streams import start_topics
from .config import GatewayConfig
from .handover import BufferFull, Handover
from .limits import TokenBucket
from .stream_rules import check_stream_request

log = logs.get("gateway")


class SessionHub(Protocol):
    """What a session needs of the hub that holds it."""

    config: GatewayConfig
    feeds: FeedRegistry
    flusher: outgoing.Flusher
    slow_consumers: int
    slow_warnings: int

    @property
    def nats(self) -> NatsClient: ...

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None: ...

    async def forward(
        self, body: RequestBody, principal: Principal
    ) -> OrderResult | BatchResult | ActionState | SymbolMaps | Refusal: ...


class ClientSession:
    """One authenticated client connection."""

    def __init__(self, hub: SessionHub, connection: ServerConnection, principal: Principal, version: int) -> None:
        self.hub = hub
        self.connection = connection
        self.principal = principal
        self.version = version
        self.session_id = uuid.uuid4().hex
        self.config = hub.config
        limit = hub.config.client_queue_max
        high_water = max(1, limit * hub.config.client_queue_high_water_pct // 100)
        self.queue = outgoing.OutgoingQueue(limit, priority=hub.config.client_priority, high_water=high_water)
        self.selections: dict[str, frozenset[str] | None] = {}  # topic -> accounts subscribed (None: all)
        self.keys: dict[str, set[FeedKey]] = {}
        self.handovers: dict[str, Handover[str]] = {}  # topics started in stream mode
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_seen = asyncio.get_running_loop().time()
        self.in_flight = asyncio.Semaphore(hub.config.client_max_in_flight)
        self.bucket = TokenBucket(hub.config.message_rate, hub.config.message_burst)
        self.waiting = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.Task[None] | None = None
        self._stalled = asyncio.Event()  # the socket's buffer was full: the writer task writes until it drains
        self._subscribe_lock = asyncio.Lock()

    # outgoing

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write())

    def flush(self) -> None:
        """Write the frames waiting while the socket takes them (``outgoing.writable``); when it does not, the
        writer task takes over until it drains."""
        if self._stalled.is_set():
            return
        batch_max = self.config.client_batch_max
        while self.queue.qsize():
            if not outgoing.writable(self.connection):
                self._stalled.set()
                return
            outgoing.write_now(self.connection, self.queue.take(batch_max))

    async def _write(self) -> None:
        """Once ``flush`` found the socket full: the next batch written by ``send``, which returns when the
        socket's buffer is low again (never, for a client that does not read: its queue fills up)."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._stalled.wait()
                batch = self.queue.take(self.config.client_batch_max)
                if batch:
                    await outgoing.send(self.connection, batch)
                self._stalled.clear()
                self.flush()

    @property
    def nats(self) -> NatsClient:
        return self.hub.nats

    def enqueue(self, message: Message, urgent: bool = True) -> None:
        telemetry.frame_out("client", type_name(message))
        self.enqueue_frame(outgoing.wire(encode_frame(message)), urgent)

    def enqueue_text(self, text: str, urgent: bool = True) -> None:
        self.enqueue_frame(outgoing.wire(text.encode()), urgent)

    def enqueue_frame(self, frame: bytes, urgent: bool = True) -> None:
        """Queue a frame's wire bytes (``outgoing.wire``) and have the hub's flusher write it."""
        if self.close_code is not None:
            return
        try:
            crossed = self.queue.put_nowait(frame, urgent)
        except asyncio.QueueFull:
            self._slow()
            return
        self.hub.flusher.mark(self)
        if crossed:
            self.hub.slow_warnings += 1
            queued, limit = self.queue.qsize(), self.queue.maxsize
            log.warning("slow consumer warned", session=self.session_id, subject=self.principal.subject, queued=queued)
            warning = SlowConsumerWarning(
                timestamp=utcnow(), queued=queued, high_water=self.queue.high_water, limit=limit
            )
            telemetry.frame_out("client", type_name(warning))
            self.queue.put_front(outgoing.wire(encode_frame(warning)))

    def _slow(self) -> None:
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

    def offer(
        self, topic: str, account: str | None, data: EventData, seq: int | None, frame: bytes, urgent: bool
    ) -> None:
        """A live event of a feed this session joined (``frame``: its wire bytes, the same for every member):
        queued when the client may see it (through the topic's hand-over while its start is being sent)."""
        if topic not in self.selections or not sees(self.principal, self.selections[topic], topic, account, data):
            return
        handover = self.handovers.get(topic)
        if handover is None:
            self.enqueue_frame(frame, urgent)
            return
        try:
            texts = handover.live(seq, bytes(outgoing.payload(frame)).decode())
        except BufferFull:
            self._slow()
            return
        for kept in texts:
            self.enqueue_text(kept, urgent)

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
            await self._run(self._request(frame))
        elif isinstance(frame, HistoryRequest):
            await self._run(self._history(frame))
        elif isinstance(frame, Subscribe):
            await self._subscribe(frame)
        elif isinstance(frame, Unsubscribe):
            await self._unsubscribe(frame)
        elif isinstance(frame, Auth):
            self.error(Refusal(errors.UNEXPECTED_TYPE, "already authenticated"), ref_type="AUTH")

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a request in the background once fewer than ``client_max_in_flight`` run (``work`` releases)."""
        self.waiting = True  # a client with too many requests running is read no further (not silence)
        try:
            await self.in_flight.acquire()
        except BaseException:
            work.close()
            raise
        finally:
            self.waiting = False
            self.last_seen = asyncio.get_running_loop().time()
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _history(self, frame: HistoryRequest) -> None:
        try:
            await client_history.answer(self, frame)  # answers every failure itself
        finally:
            self.in_flight.release()

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
        refusal = check_subscribe_scope(self.principal, frame.accounts) or check_stream_request(frame, self.selections)
        if refusal is not None:
            self.error(refusal, ref_type="SUBSCRIBE", ref_id=frame.request_id)
            return
        asked = None if frame.accounts is None else frozenset(frame.accounts)
        topics: list[str] = list(dict.fromkeys(frame.topics))
        async with self._subscribe_lock:
            if frame.stream_mode:  # before joining the feeds: their live events wait for the topic's start
                for topic in topics:
                    self.handovers[topic] = Handover(limit=self.queue.maxsize)
            before = set(self.selections)
            try:
                for topic in topics:
                    await self._select(topic, merge_selection(self.selections.get(topic, frozenset()), asked))
            except Exception as exc:  # a stream feed that JetStream could not open: undo this SUBSCRIBE's topics
                log.warning("subscribe failed", session=self.session_id, error=repr(exc))
                for topic in topics:
                    if topic not in before:
                        self.handovers.pop(topic, None)
                        with contextlib.suppress(Exception):
                            await self._select(topic, frozenset(), keep=False)
                refused = Refusal(errors.NATS_UNREACHABLE, f"could not subscribe ({type(exc).__name__}); try again")
                self.error(refused, ref_type="SUBSCRIBE", ref_id=frame.request_id)
                return
            await self.hub.nats.flush()  # events published after SUBSCRIBED reach this client
        accounts = subscribed_accounts(self.principal, frame.accounts)
        self.enqueue(Subscribed(request_id=frame.request_id, topics=topics, accounts=accounts))
        if frame.stream_mode:
            task = asyncio.create_task(start_topics(self, frame, topics))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, frame: Unsubscribe) -> None:
        async with self._subscribe_lock:
            for topic in frame.topics:
                self.handovers.pop(topic, None)
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
        self.handovers.clear()
        await cancel_and_wait(self._writer)
