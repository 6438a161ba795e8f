"""``HedgebridgeClient``: one WebSocket connection to a gateway's ``/client`` endpoint.

- Many requests may be in flight on one connection; each gets a fresh requestId and resolves with the
  gateway's REPLY, or raises ``ClientError`` built from the ERROR frame whose ``refId`` is that requestId.
- Every order and action gets an actionId (generated when the caller gives none): it is the idempotency key,
  so repeating a call with the same ``action_id`` after a lost answer never executes twice.
- HEARTBEAT is sent every ``heartbeatIntervalMs`` from CLIENT_WELCOME, and the gateway's heartbeats are
  answered, in the background.
- No automatic reconnect: when the connection ends, pending calls raise ``ConnectionLost`` (an order in
  flight then has an unknown outcome — repeat it with the same ``action_id`` on a new client to learn it)
  and subscriptions end with ``ConnectionLost``. Connect again to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hedgebridge.protocol import (
    FINAL_ACTION_STATES,
    ActionLeg,
    ActionRequest,
    ActionState,
    BatchItem,
    BatchResult,
    CloseBatch,
    CloseOrder,
    ErrorMessage,
    Heartbeat,
    Message,
    OpenOrder,
    OrderResult,
    ProtocolError,
    encode_frame,
    subprotocol,
    utcnow,
)
from hedgebridge.protocol.client import (
    Auth,
    ClientReply,
    ClientRequest,
    ClientWelcome,
    Push,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_server_frame,
)

from .errors import UNEXPECTED_REPLY, ClientError, ConnectionLost
from .legs import Leg, Policy, Side
from .subscription import Subscription

Result = OrderResult | BatchResult | ActionState
R = TypeVar("R", OrderResult, BatchResult, ActionState)


class HedgebridgeClient:
    """A connection to ``/client``. Use ``await HedgebridgeClient.connect(url, token)``, as an async context
    manager or closed with ``aclose()``. (``close()`` closes a *position*.)"""

    def __init__(self, ws: ClientConnection, welcome: ClientWelcome, *, subscription_queue_max: int) -> None:
        self.ws = ws
        self.welcome = welcome
        self.subscription_queue_max = subscription_queue_max
        self.errors: list[ClientError] = []  # ERROR frames that answered no request of this client
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._subscriptions: set[Subscription] = set()
        self._seq = itertools.count(1)
        self._lost: ConnectionLost | None = None
        self._tasks: set[asyncio.Future[None]] = set()
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
    ) -> HedgebridgeClient:
        """Connect and authenticate: with the ``Authorization`` header, or with an AUTH frame when
        ``auth_frame`` is true (as a browser must). Raises ``ClientError`` when the gateway refuses."""
        headers = {} if auth_frame else {"Authorization": f"Bearer {token}"}
        ws = await connect(
            url,
            additional_headers=headers,
            subprotocols=[subprotocol()],  # type: ignore[list-item]
            open_timeout=open_timeout_s,
            ping_interval=None,  # liveness is the protocol's HEARTBEAT
            max_size=max_frame_bytes,
            compression=None,
        )
        try:
            if auth_frame:
                await ws.send(encode_frame(Auth(token=token)).decode())
            async with asyncio.timeout(open_timeout_s):
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
        return cls(ws, first, subscription_queue_max=subscription_queue_max)

    async def __aenter__(self) -> HedgebridgeClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (normal closure)."""
        self._beater.cancel()
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(asyncio.CancelledError):
            await self._beater

    @property
    def closed(self) -> bool:
        return self._lost is not None

    # --- requests ----------------------------------------------------------------------------------------

    async def request(self, body: OpenOrder | CloseOrder | CloseBatch | ActionRequest) -> Result:
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

    async def _typed(self, body: OpenOrder | CloseOrder | CloseBatch | ActionRequest, kind: type[R]) -> R:
        result = await self.request(body)
        if not isinstance(result, kind):
            raise ClientError(UNEXPECTED_REPLY, f"expected {kind.__name__}, got {type(result).__name__}")
        return result

    async def open(
        self,
        account: str,
        symbol: str,
        side: Side,
        volume: float,
        *,
        action_id: str | None = None,
        user_id: str = "",
        timeout_ms: int | None = None,
        round_volume: bool = False,
    ) -> OrderResult:
        """Open a market position; returns the executor's definite OrderResult (FILLED, REJECTED, EXPIRED…).
        ``round_volume``: a volume off the symbol's step is rounded down to it (``rounded_from`` says from what)
        instead of being INVALID."""
        body = OpenOrder(
            account_id=account,
            symbol=symbol,
            side=side,
            volume=volume,
            action_id=action_id or uuid.uuid4().hex,
            user_id=user_id,
            timeout_ms=timeout_ms,
            round_volume=round_volume,
        )
        return await self._typed(body, OrderResult)

    async def close(
        self,
        account: str,
        *,
        position_id: str | None = None,
        mt_ticket: str | None = None,
        volume: float | None = None,
        action_id: str | None = None,
        user_id: str = "",
        exit_reason: str = "",
        timeout_ms: int | None = None,
        round_volume: bool = False,
    ) -> OrderResult:
        """Close a position by ``position_id`` or ``mt_ticket`` (``volume`` closes part of it; ``round_volume``
        as for ``open``)."""
        if position_id is None and mt_ticket is None:
            raise ValueError("close needs position_id or mt_ticket")
        body = CloseOrder(
            account_id=account,
            position_id=position_id,
            mt_ticket=mt_ticket,
            volume=volume,
            action_id=action_id or uuid.uuid4().hex,
            user_id=user_id,
            exit_reason=exit_reason,
            timeout_ms=timeout_ms,
            round_volume=round_volume,
        )
        return await self._typed(body, OrderResult)

    async def close_batch(
        self,
        items: Iterable[BatchItem],
        *,
        action_id: str | None = None,
        exit_reason: str = "",
        timeout_ms: int | None = None,
    ) -> BatchResult:
        """Close many positions at once; one OrderResult per item."""
        body = CloseBatch(
            items=list(items), action_id=action_id or uuid.uuid4().hex, exit_reason=exit_reason, timeout_ms=timeout_ms
        )
        return await self._typed(body, BatchResult)

    async def action(self, body: ActionRequest, *, follow: bool = False, timeout_s: float = 60.0) -> ActionState:
        """Submit an action. With ``follow``, wait (at most ``timeout_s``) for its final state, read from the
        ``actions`` topic (subscribed before the request is sent, so no state is missed)."""
        if not follow:
            return await self._typed(body, ActionState)
        if body.action_id is None:
            raise ValueError("follow needs an action_id")
        async with await self.subscribe(["actions"]) as feed:
            state = await self._typed(body, ActionState)
            async with asyncio.timeout(timeout_s):
                while state.state not in FINAL_ACTION_STATES:
                    push = await feed.next()
                    data = push.data
                    if isinstance(data, ActionState) and data.action_id == body.action_id and data.seq > state.seq:
                        state = data
            return state

    async def hedge(
        self,
        legs: Sequence[Leg | ActionLeg],
        *,
        policy: Policy = "COMPENSATE",
        action_id: str | None = None,
        user_id: str = "",
        timeout_ms: int | None = None,
        follow: bool = False,
    ) -> ActionState:
        """Open every leg concurrently (a hedge entry); ``policy`` says what happens when some legs fail."""
        body = ActionRequest(
            kind="HEDGE_ENTRY",
            legs=[leg.to_message() if isinstance(leg, Leg) else leg for leg in legs],
            policy=policy,
            action_id=action_id or uuid.uuid4().hex,
            user_id=user_id,
            timeout_ms=timeout_ms,
        )
        return await self.action(body, follow=follow)

    async def exit(
        self, target_action_id: str, *, action_id: str | None = None, user_id: str = "", follow: bool = False
    ) -> ActionState:
        """Close every open leg of the earlier action ``target_action_id``."""
        body = ActionRequest(
            kind="EXIT", target_action_id=target_action_id, action_id=action_id or uuid.uuid4().hex, user_id=user_id
        )
        return await self.action(body, follow=follow)

    async def close_all(
        self, accounts: Sequence[str], *, action_id: str | None = None, user_id: str = "", follow: bool = False
    ) -> ActionState:
        """Close every open position on ``accounts``."""
        body = ActionRequest(
            kind="CLOSE_ALL", account_ids=list(accounts), action_id=action_id or uuid.uuid4().hex, user_id=user_id
        )
        return await self.action(body, follow=follow)

    # --- subscriptions -----------------------------------------------------------------------------------

    async def subscribe(self, topics: Sequence[str], accounts: Sequence[str] | None = None) -> Subscription:
        """Subscribe to live events of ``topics`` (prices, positions, balances, trades, terminals, orders,
        actions, consistency), limited to ``accounts`` (every account the token may see when None).
        Raises ClientError (e.g. FORBIDDEN, field ``accounts[0]``) when the gateway refuses."""
        if self._lost is not None:
            raise self._lost
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(
                Subscribe(
                    request_id=request_id,
                    topics=list(topics),  # type: ignore[arg-type]
                    accounts=None if accounts is None else list(accounts),
                )
            )
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        assert isinstance(reply, Subscribed)
        subscription = Subscription(self._forget, list(reply.topics), reply.accounts, self.subscription_queue_max)
        self._subscriptions.add(subscription)
        return subscription

    async def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        still = {t for s in self._subscriptions for t in s.topics}
        unused = [t for t in subscription.topics if t not in still]
        if unused and self._lost is None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(Unsubscribe(request_id=uuid.uuid4().hex, topics=unused))  # type: ignore[arg-type]

    # --- I/O ---------------------------------------------------------------------------------------------

    async def _send(self, message: Message) -> None:
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
            for subscription in list(self._subscriptions):
                subscription._end(lost)
            self._beater.cancel()

    def _dispatch(self, frame: Message) -> None:
        if isinstance(frame, Push):
            for subscription in list(self._subscriptions):
                subscription._offer(frame)
        elif isinstance(frame, ClientReply | Subscribed):
            future = self._pending.get(frame.request_id)
            if future is not None and not future.done():
                future.set_result(frame)
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
