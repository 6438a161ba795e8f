"""The client API on ``/client``: systems and admins submit orders and actions and watch live events.

- Authentication: the handshake's ``Authorization: Bearer <JWT>`` (role ``system`` or ``admin``), or, without
  that header, an ``AUTH`` frame within ``client_auth_timeout_ms`` (else closed with 1008 and the reason).
  Then ``CLIENT_WELCOME``.
- ``REQUEST``: every account the body names must be in the token's scope, else an ERROR FORBIDDEN whose
  ``field`` names the offending field and whose ``refId`` is the requestId. Accepted requests go to NATS
  concurrently (up to ``client_max_in_flight`` per connection) and are answered with ``REPLY``.
- ``SUBSCRIBE``: live events, fanned out in-process from ONE NATS subscription per (topic, account) — or
  per topic for an admin's "everything" — shared by every client of this gateway and reference-counted.
- Every frame to a client goes through a queue of at most ``client_queue_max`` frames; a client that lets it
  fill up is closed with 1008 "slow consumer" (the other clients are not slowed down).
- A client silent for longer than the heartbeat timeout is closed with 4001; a bad frame is answered with a
  typed ERROR and the connection stays up.
- A client sending more frames than its rate (``message_rate``/``message_burst``) is closed with 1008
  "rate limit"; one whose token expires or is revoked is closed with 1008 and that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hedgebridge.common import executor_client, logs
from hedgebridge.common.auth import Keys, Principal
from hedgebridge.common.obs import tracing
from hedgebridge.protocol import (
    ActionRequest,
    ActionState,
    BatchResult,
    ErrorMessage,
    Heartbeat,
    Message,
    OrderResult,
    ProtocolError,
    encode_frame,
    errors,
    pack,
    subjects,
    type_name,
    unpack,
    utcnow,
)
from hedgebridge.protocol.client import (
    Auth,
    ClientReply,
    ClientRequest,
    EventData,
    Push,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_client_frame,
)
from hedgebridge.protocol.errors import CloseCode

from . import outgoing, telemetry
from .client_rules import (
    SLOW_CONSUMER,
    FeedKey,
    Refusal,
    RequestBody,
    check_exit_target,
    check_request_scope,
    check_subscribe_scope,
    close_reason,
    complete_body,
    decode_feed,
    exit_target,
    feed_keys,
    feed_subjects,
    merge_selection,
    remaining_accounts,
    request_id_of,
    request_timeout_s,
    subscribed_accounts,
    visible,
    welcome,
)
from .config import GatewayConfig
from .handshake import ClientAccept, Refuse, authenticate_client
from .limits import RATE_LIMIT, TokenBucket

log = logs.get("gateway")

# --- shared feeds ------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Feed:
    """One set of NATS subscriptions (one per subject of the topic) shared by every member."""

    key: FeedKey
    subscriptions: list[Subscription] = field(default_factory=list)
    members: set[ClientSession] = field(default_factory=set)
    delivered: int = 0


class FeedRegistry:
    """Reference-counted shared feeds: a NATS subscription exists while at least one client needs it."""

    def __init__(self, nats: Callable[[], NatsClient]) -> None:
        self._nats = nats
        self.feeds: dict[FeedKey, Feed] = {}
        self._lock = asyncio.Lock()

    async def attach(self, key: FeedKey, member: ClientSession) -> None:
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                feed = Feed(key)
                nc = self._nats()
                for subject in feed_subjects(key):
                    feed.subscriptions.append(await nc.subscribe(subject, cb=self._deliverer(feed)))
                self.feeds[key] = feed
                log.debug("feed opened", topic=key[0], account=key[1])
            feed.members.add(member)

    async def detach(self, key: FeedKey, member: ClientSession) -> None:
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                return
            feed.members.discard(member)
            if not feed.members:
                del self.feeds[key]
                for sub in feed.subscriptions:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                log.debug("feed closed", topic=key[0], account=key[1])

    async def close(self) -> None:
        async with self._lock:
            feeds, self.feeds = list(self.feeds.values()), {}
            for feed in feeds:
                for sub in feed.subscriptions:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    def _deliverer(self, feed: Feed) -> Callable[[Msg], Any]:
        topic = feed.key[0]
        urgent = topic not in outgoing.BULK_TOPICS  # market data waits behind results (latency profile)

        async def deliver(msg: Msg) -> None:
            if not feed.members:
                return
            try:
                data = decode_feed(topic, msg.subject, msg.data)
            except ProtocolError as exc:
                log.warning("undecodable event", subject=msg.subject, error=exc.message)
                return
            text = encode_frame(Push(topic=topic, data=data)).decode()  # encoded once for every member
            feed.delivered += 1
            telemetry.frame_out("client", "PUSH", len(feed.members))
            for member in list(feed.members):
                if member.wants(topic, data):
                    member.enqueue_text(text, urgent)

        return deliver


# --- one client connection ---------------------------------------------------------------------------------


class ClientSession:
    def __init__(self, hub: ClientHub, connection: ServerConnection, principal: Principal, version: int) -> None:
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
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


# --- the hub: every client connection of this gateway ------------------------------------------------------


class ClientHub:
    def __init__(self, config: GatewayConfig, nats: Callable[[], NatsClient]) -> None:
        self.config = config
        self._nats = nats
        self.feeds = FeedRegistry(nats)
        self.sessions: set[ClientSession] = set()
        self.slow_consumers = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.keys: Callable[[], Keys] = lambda: config.jwt_secret  # the gateway sets its key provider
        self.revoked: Container[str] = frozenset()

    @property
    def nats(self) -> NatsClient:
        return self._nats()

    def end_sessions(self, reason_for: Callable[[Principal], str | None]) -> None:
        """Close (1008) every session for which ``reason_for`` gives a reason (token expired or revoked)."""
        for session in list(self.sessions):
            reason = reason_for(session.principal)
            if reason is not None and session.close_code is None:
                log.info("client session ended", session=session.session_id, reason=reason)
                session.retire(CloseCode.POLICY_VIOLATION, reason)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_silent())

    async def stop(self) -> None:
        """Close every client with 1001 (reconnect, possibly to another replica) and drop the shared feeds."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for session in list(self.sessions):
            session.retire(CloseCode.GOING_AWAY, "gateway shutting down")
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.feeds.close()

    async def serve(self, connection: ServerConnection, accept: ClientAccept) -> None:
        principal = accept.principal
        if principal is None:
            principal = await self._authenticate(connection)
            if principal is None:
                return
        session = ClientSession(self, connection, principal, accept.version)
        self.sessions.add(session)
        log.info("client connected", session=session.session_id, subject=principal.subject, role=principal.role)
        session.start_writer()
        session.enqueue(welcome(principal, accept.version, session.session_id, self.config, utcnow()))
        loop = asyncio.get_running_loop()
        try:
            async for data in connection:
                if session.close_code is not None:  # closing: drop what still arrives so the close completes
                    continue
                session.last_seen = loop.time()
                if not session.bucket.take(session.last_seen):
                    log.warning("rate limit exceeded", session=session.session_id, subject=principal.subject)
                    session.retire(CloseCode.POLICY_VIOLATION, RATE_LIMIT)
                    continue
                await session.handle_frame(data)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("client session failed", session=session.session_id)
            session.retire(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.sessions.discard(session)
            await session.cleanup()
            log.info("client disconnected", session=session.session_id, reason=session.close_reason or "closed")

    async def _authenticate(self, connection: ServerConnection) -> Principal | None:
        """Read the AUTH frame of a client that sent no Authorization header; close 1008 when it fails."""
        timeout_ms = self.config.client_auth_timeout_ms
        reason: str
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                data = await connection.recv()
        except TimeoutError:
            reason = f"no AUTH frame within {timeout_ms} ms"
        except ConnectionClosed:
            return None
        else:
            try:
                frame = decode_client_frame(data)
            except ProtocolError as exc:
                frame = None
                reason = f"the first frame must be AUTH: {exc.message}"
            if isinstance(frame, Auth):
                verdict = authenticate_client(frame.token, self.keys(), self.revoked)
                if not isinstance(verdict, Refuse):
                    return verdict
                reason = f"{int(verdict.status)} {verdict.reason}"
            elif frame is not None:
                reason = "the first frame must be AUTH"
        log.info("client refused", reason=reason)
        with contextlib.suppress(Exception):
            await connection.close(CloseCode.POLICY_VIOLATION, close_reason(reason))
        return None

    async def _sweep_silent(self) -> None:
        timeout_s = self.config.heartbeat_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(timeout_s / 4, 0.25))
            now = loop.time()
            for session in list(self.sessions):
                if now - session.last_seen > timeout_s and not session.waiting:
                    session.retire(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")

    # forwarding to the backend

    async def forward(
        self, body: RequestBody, principal: Principal
    ) -> OrderResult | BatchResult | ActionState | Refusal:
        timeout_s = request_timeout_s(body, self.config)
        if isinstance(body, ActionRequest):
            return await self._action(body, principal, timeout_s)
        try:
            answer = await executor_client.ask(self.nats, body, timeout_s, headers=tracing.headers())
        except executor_client.UnreadableAnswer as exc:
            return Refusal(errors.INTERNAL, str(exc))
        return answer.result

    async def _action(self, body: ActionRequest, principal: Principal, timeout_s: float) -> ActionState | Refusal:
        target = exit_target(body, principal)
        if target is not None:
            refusal = check_exit_target(target, await self._recorded_action(target), principal)
            if refusal is not None:
                return refusal
        try:
            reply = await self.nats.request(
                subjects.ACTION_REQUEST, pack(body), timeout=timeout_s, headers=tracing.headers()
            )
        except NoRespondersError:
            return Refusal(
                errors.COORDINATOR_UNAVAILABLE,
                "no coordinator answered; the action was not started (safe to retry with the same actionId)",
            )
        except NatsTimeoutError:
            return Refusal(
                errors.OUTCOME_UNKNOWN,
                f"no answer from the coordinator within {timeout_s:g}s; follow action {body.action_id} "
                "on topic actions, or ask again with the same actionId",
            )
        try:
            return unpack(reply.data, ActionState)
        except ProtocolError as exc:
            return Refusal(errors.INTERNAL, f"unreadable answer from the coordinator: {exc.message}")

    async def _recorded_action(self, action_id: str) -> ActionState | None:
        """The action's last recorded state (None when none is recorded or it does not decode)."""
        try:
            stored = await self.nats.jetstream().get_last_msg(subjects.EVENTS_STREAM, subjects.action(action_id))
            return unpack(stored.data or b"", ActionState)
        except (NotFoundError, ProtocolError, ValueError):
            return None
