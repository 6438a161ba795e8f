"""``HedgebridgeClient``: one WebSocket connection to a gateway's ``/client`` endpoint.

- Many requests may be in flight on one connection; each gets a fresh requestId and resolves with the
  gateway's REPLY, or raises ``ClientError`` built from the ERROR frame whose ``refId`` is that requestId.
- Every order and action gets an actionId (generated when the caller gives none): it is the idempotency key,
  so repeating a call with the same ``action_id`` after a lost answer never executes twice.
- HEARTBEAT is sent every ``heartbeatIntervalMs`` from CLIENT_WELCOME, and the gateway's heartbeats are
  answered, in the background.
- When the connection ends, pending calls raise ``ConnectionLost`` (an order in flight then has an unknown
  outcome — repeat it with the same ``action_id`` to learn it). Without ``reconnect`` the subscriptions end
  with it too. With ``reconnect=True`` the client connects again (jittered backoff, a busy gateway's
  ``Retry-After`` waited out, for at most ``reconnect_for_s`` of failed attempts) after an end that may heal
  (gateway restart, network, heartbeat, slow consumer), and every subscription resumes: its STREAM topics
  from the last (epoch, seq) the client saw, its snapshot topics with a fresh snapshot; they are told
  ``Reconnected``, then ``RESYNC`` for a topic whose history no longer reaches back.
- ``history(...)`` reads one page of the persisted events (HISTORY), ``history_entries(...)`` every page of
  them in turn, oldest first.
- Subscriptions ask the gateway for stream delivery (``recent``, 0 by default): every topic's start ends with
  CAUGHT_UP, which gives the client a cursor even before the first event; snapshot topics start with the
  last state of each account.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from hedgebridge.protocol import (
    ErrorMessage,
    Heartbeat,
    Message,
    ProtocolError,
    encode_frame,
    utcnow,
)
from hedgebridge.protocol.client import (
    TOPIC_DELIVERY,
    CaughtUp,
    ClientReply,
    ClientRequest,
    ClientWelcome,
    Cursor,
    HistoryPage,
    HistoryRequest,
    Push,
    Resync,
    SlowConsumerWarning,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_server_frame,
)

from .calls import Body, Calls, Result
from .connection import (
    Cursors,
    Options,
    attempt_failed_for_good,
    backoff_s,
    open_connection,
    resume_frames,
    wait_after_s,
    worth_reconnecting,
)
from .errors import ClientError, ConnectionLost
from .history import HistoryCalls
from .subscription import Reconnected, Subscription


class HedgebridgeClient(Calls, HistoryCalls):
    """A connection to ``/client``. Use ``await HedgebridgeClient.connect(url, token)``, as an async context
    manager or closed with ``aclose()``. (``close()`` closes a *position*.)"""

    def __init__(
        self,
        ws: ClientConnection,
        welcome: ClientWelcome,
        *,
        subscription_queue_max: int,
        options: Options | None = None,
        reconnect: bool = False,
        reconnect_for_s: float = 60.0,
    ) -> None:
        self.ws = ws
        self.welcome = welcome
        self.subscription_queue_max = subscription_queue_max
        self.errors: list[ClientError] = []  # ERROR frames that answered no request of this client
        self.warnings: list[SlowConsumerWarning] = []  # the gateway's: this client reads too slowly
        self.cursors = Cursors()  # the last (epoch, seq) of every STREAM topic
        self.reconnects = 0
        self._options = options
        self._reconnect = reconnect and options is not None
        self._reconnect_for_s = reconnect_for_s
        self._closing = False
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._subscriptions: set[Subscription] = set()
        self._seq = itertools.count(1)
        self._lost: ConnectionLost | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._reconnector: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read())
        self._beater = asyncio.create_task(self._beat())

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        auth_frame: bool = False,
        open_timeout_s: float = 10.0,
        max_frame_bytes: int | None = 64 * 1024 * 1024,
        subscription_queue_max: int = 10_000,
        reconnect: bool = False,
        reconnect_for_s: float = 60.0,
    ) -> HedgebridgeClient:
        """Connect and authenticate: with the ``Authorization`` header, or with an AUTH frame when
        ``auth_frame`` is true (as a browser must). Raises ``ClientError`` when the gateway refuses. With
        ``reconnect``, a connection that ends is opened again and the subscriptions resume (see the module)."""
        options = Options(url, token, auth_frame, open_timeout_s, max_frame_bytes)
        ws, welcome = await open_connection(options)
        return cls(
            ws,
            welcome,
            subscription_queue_max=subscription_queue_max,
            options=options,
            reconnect=reconnect,
            reconnect_for_s=reconnect_for_s,
        )

    async def __aenter__(self) -> HedgebridgeClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (normal closure); no reconnect follows."""
        self._closing = True
        self._beater.cancel()
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
            self._end_subscriptions(self._lost or ConnectionLost(1000, "closed by the client"))
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(asyncio.CancelledError):
            await self._beater

    @property
    def closed(self) -> bool:
        return self._lost is not None

    # --- requests ----------------------------------------------------------------------------------------

    async def request(self, body: Body) -> Result:
        """Send one REQUEST and wait for its REPLY (``ClientError`` for an ERROR)."""
        if self._lost is not None:
            raise self._lost
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(ClientRequest(request_id=request_id, body=body))
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        assert isinstance(reply, ClientReply)
        return reply.result

    # --- subscriptions -----------------------------------------------------------------------------------

    async def subscribe(
        self,
        topics: Sequence[str],
        accounts: Sequence[str] | None = None,
        *,
        recent: int | None = 0,
        resume: Mapping[str, Cursor] | None = None,
    ) -> Subscription:
        """Subscribe to live events of ``topics`` (prices, positions, balances, trades, terminals, orders,
        actions, consistency, alerts, monitor), limited to ``accounts`` (every account the token may see when
        None). A topic this client does not follow yet starts in stream mode: from ``resume`` (its cursor,
        e.g. saved by an earlier process) or with its last ``recent`` events, snapshot topics with the last
        state of each account, then CAUGHT_UP (``recent=None`` and no ``resume``: live events only).
        Raises ClientError (e.g. FORBIDDEN, field ``accounts[0]``) when the gateway refuses."""
        if self._lost is not None:
            raise self._lost
        followed = {t for s in self._subscriptions for t in s.topics}
        new = [t for t in dict.fromkeys(topics) if t not in followed]
        again = [t for t in dict.fromkeys(topics) if t in followed]
        listed = None if accounts is None else list(accounts)
        subscription = Subscription(self._forget, list(dict.fromkeys(topics)), listed, self.subscription_queue_max)
        self._subscriptions.add(subscription)  # before SUBSCRIBE: the topic's start follows its answer at once
        try:
            frames: list[Subscribe] = []
            if new:
                cursors = {t: c for t, c in (resume or {}).items() if t in new and TOPIC_DELIVERY.get(t) == "STREAM"}
                stream = recent is not None or bool(cursors)
                self.cursors.seed(cursors)
                frames.append(self._subscribe_frame(new, listed, cursors or None, recent if stream else None))
            if again:  # followed already on this connection: its accounts are added, live only
                frames.append(self._subscribe_frame(again, listed, None, None))
            for frame in frames:
                reply = await self._exchange(frame)
                assert isinstance(reply, Subscribed)
                subscription.accounts = reply.accounts
        except BaseException:
            self._subscriptions.discard(subscription)
            raise
        return subscription

    @staticmethod
    def _subscribe_frame(
        topics: list[str], accounts: list[str] | None, resume: dict[str, Cursor] | None, recent: int | None
    ) -> Subscribe:
        return Subscribe(
            request_id=uuid.uuid4().hex,
            topics=topics,  # type: ignore[arg-type]
            accounts=accounts,
            resume=resume,  # type: ignore[arg-type]
            recent=recent,
        )

    async def _exchange(self, frame: Subscribe | HistoryRequest) -> Message:
        """Send a SUBSCRIBE or HISTORY and wait for its answer (ClientError for an ERROR)."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[frame.request_id] = future
        try:
            await self._send(frame)
            return await future
        finally:
            self._pending.pop(frame.request_id, None)

    async def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        still = {t for s in self._subscriptions for t in s.topics}
        unused = [t for t in subscription.topics if t not in still]
        self.cursors.forget(unused)
        if unused and self._lost is None:
            with contextlib.suppress(ConnectionClosed, ClientError):
                await self._send(Unsubscribe(request_id=uuid.uuid4().hex, topics=unused))  # type: ignore[arg-type]

    # --- I/O ---------------------------------------------------------------------------------------------

    async def _send(self, message: Message) -> None:
        if self._lost is not None:
            raise self._lost
        try:
            await self.ws.send(encode_frame(message).decode())
        except ConnectionClosed:
            raise self._connection_lost() from None

    def _connection_lost(self) -> ConnectionLost:
        if self._lost is None:
            self._lost = ConnectionLost(self.ws.close_code, self.ws.close_reason or "")
        return self._lost

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                try:
                    frame = decode_server_frame(data)
                except ProtocolError as exc:
                    self.errors.append(ClientError(exc.code, f"unreadable frame from the gateway: {exc.message}"))
                    continue
                self._dispatch(frame)
        except ConnectionClosed:
            pass
        finally:
            lost = self._connection_lost()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            self._beater.cancel()
            if self._reconnect and not self._closing and worth_reconnecting(lost):
                self._reconnector = asyncio.create_task(self._reconnect_loop(lost))
            else:
                self._end_subscriptions(lost)

    def _end_subscriptions(self, reason: ClientError) -> None:
        for subscription in list(self._subscriptions):
            subscription._end(reason)

    async def _reconnect_loop(self, lost: ConnectionLost) -> None:
        """Connect again until it works (or cannot: the token is refused, or ``reconnect_for_s`` passed),
        then follow again what the subscriptions followed, each topic from its cursor."""
        assert self._options is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_for_s
        attempt, wait = 0, backoff_s(1)
        while True:
            attempt += 1
            await asyncio.sleep(wait)
            try:
                ws, welcome = await open_connection(self._options)
                break
            except Exception as exc:
                if attempt_failed_for_good(exc) or loop.time() > deadline:
                    self._end_subscriptions(lost)
                    return
                wait = wait_after_s(exc, attempt)
        self.ws, self.welcome, self._lost = ws, welcome, None
        self.reconnects += 1
        self._reader = asyncio.create_task(self._read())
        self._beater = asyncio.create_task(self._beat())
        for subscription in list(self._subscriptions):
            subscription._notice(Reconnected(lost.close_code, lost.close_reason, attempt))
        followed = [(s.topics, None if s.accounts is None else list(s.accounts)) for s in self._subscriptions]
        try:
            for frame in resume_frames(followed, self.cursors):
                await self._exchange(frame)
        except ConnectionLost:
            return  # lost again: the reader starts the next reconnect
        except ClientError as exc:  # the gateway refuses to follow them again (the token's scope changed)
            self._end_subscriptions(exc)
            await self.ws.close()

    def _dispatch(self, frame: Message) -> None:
        if isinstance(frame, Push):
            self.cursors.seen(frame)
            for subscription in list(self._subscriptions):
                subscription._offer(frame)
        elif isinstance(frame, CaughtUp | Resync):
            if isinstance(frame, CaughtUp):
                self.cursors.seen(frame)
            for subscription in list(self._subscriptions):
                subscription._notice(frame)
        elif isinstance(frame, ClientReply | Subscribed | HistoryPage):
            future = self._pending.get(frame.request_id)
            if future is not None and not future.done():
                future.set_result(frame)
        elif isinstance(frame, SlowConsumerWarning):
            self.warnings.append(frame)
        elif isinstance(frame, ErrorMessage):
            error = ClientError.from_frame(frame)
            future = self._pending.get(frame.ref_id or "")
            if future is not None and not future.done():
                future.set_exception(error)
            else:
                self.errors.append(error)
        elif isinstance(frame, Heartbeat) and not frame.reply:
            task = asyncio.ensure_future(self._quiet_send(Heartbeat(timestamp=utcnow(), seq=frame.seq, reply=True)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _quiet_send(self, message: Message) -> None:
        with contextlib.suppress(ClientError):
            await self._send(message)

    async def _beat(self) -> None:
        interval_s = max(self.welcome.heartbeat_interval_ms, 10) / 1000
        with contextlib.suppress(ClientError):
            while True:
                await asyncio.sleep(interval_s)
                await self._send(Heartbeat(timestamp=utcnow(), seq=next(self._seq)))

    async def events(self, topics: Sequence[str], accounts: Sequence[str] | None = None) -> AsyncIterator[Push]:
        """``async for push in client.events([...])``: a subscription as a plain async iterator."""
        async with await self.subscribe(topics, accounts) as feed:
            async for push in feed:
                yield push
