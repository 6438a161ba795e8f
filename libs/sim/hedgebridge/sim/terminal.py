"""The simulated terminal's I/O: one WebSocket connection per account, exactly as the EA speaks.

Connects with ``Authorization: Bearer <token>`` and the ``hedgebridge.v1`` subprotocol, waits for WELCOME,
then sends ACCOUNT_UPDATE and POSITION_UPDATE snapshots and SYMBOL_SPECS (the rules of every symbol it quotes,
trades or holds; again for a symbol first traded, and when a rule changes: ``change_symbol``), HEARTBEAT every
interval the gateway asked for, PRICE ticks, and answers OPEN/CLOSE/MODIFY after the configured fill latency
and SYNC at once (one command at a time, in arrival order, as an EA's single thread does); a frame it cannot
read gets an ERROR, as the EA answers it. A stop the price reaches closes its position (CLOSED with the
reason). A report that cannot be sent because the connection went away is kept and sent after the next
connect, behind the fresh snapshots.
Reconnects with full-jitter backoff when the connection drops (``hedgebridge.common.backoff``), so that a
fleet that lost its gateway together does not come back in lockstep; a 503 with ``Retry-After`` (the gateway
is busy) is waited out, with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from hedgebridge.common import logs, profiles
from hedgebridge.common.backoff import Backoff, after_retry_after, retry_after_of
from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ErrorMessage,
    Heartbeat,
    Message,
    ModifyCommand,
    OpenCommand,
    PositionUpdate,
    ProtocolError,
    SymbolSpecs,
    SyncCommand,
    Welcome,
    decode_frame,
    encode_frame,
    subprotocol,
    utcnow,
)

from .account import SimAccount, SimConfig
from .feed import PriceFeed

log = logs.get("sim")


class SimTerminal:
    def __init__(
        self,
        url: str,
        account: SimAccount,
        token: Callable[[], str],
        *,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 2.0,
        immediate_reconnect: bool = False,
    ) -> None:
        self.url = url
        self.account = account
        self.token = token
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.immediate_reconnect = immediate_reconnect  # latency profile: the first retry after a drop at once
        self.connected = asyncio.Event()
        self.welcome: Welcome | None = None
        self.errors: list[ErrorMessage] = []
        self.connections = 0
        self.drops = 0
        self.heartbeats_paused = False  # a test can make the terminal go silent
        self.last_refusal: str | None = None
        self.refusals = 0  # handshakes the gateway refused (HTTP status instead of 101)
        self._ws: ClientConnection | None = None
        self._lock = asyncio.Lock()
        self.outbox: list[Message] = []  # reports not yet sent (connection lost)
        self._reported: set[str] = set()  # symbols whose rules this session reported

    @property
    def account_id(self) -> str:
        return self.account.account_id

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff until cancelled (at once after a drop when
        ``immediate_reconnect``; with backoff when that attempt fails too)."""
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            wait = backoff.next()
            try:
                await self._session()
                backoff.reset()
                wait = 0.0 if self.immediate_reconnect else backoff.next()
            except InvalidStatus as exc:
                self.last_refusal = f"HTTP {exc.response.status_code}: {exc.response.body.decode(errors='replace')}"
                self.refusals += 1
                log.warning("handshake refused", account=self.account_id, detail=self.last_refusal.strip())
                retry_after = retry_after_of(exc.response.headers.get("Retry-After"))
                if retry_after is not None:
                    wait = max(wait, after_retry_after(retry_after))
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                log.info("connection lost", account=self.account_id, error=type(exc).__name__)
            finally:
                self.connected.clear()
                self._ws = None
            await asyncio.sleep(wait)

    async def drop(self) -> None:
        """Close the current connection (the terminal reconnects by itself)."""
        if self._ws is not None:
            await self._ws.close()

    async def send(self, message: Message) -> None:
        if self._ws is not None:
            await self._ws.send(encode_frame(message).decode())

    async def _session(self) -> None:
        async with connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token()}"},
            subprotocols=[subprotocol()],  # type: ignore[list-item]
            ping_interval=None,
            compression=None,
            open_timeout=5,
            max_size=4 * 1024 * 1024,
        ) as ws:
            first = decode_frame(await asyncio.wait_for(ws.recv(), 5))
            if not isinstance(first, Welcome):
                raise ConnectionError(f"expected WELCOME, got {type(first).__name__}")
            self._ws = ws
            self.welcome = first
            self.connections += 1
            now = utcnow()
            await self.send(self.account.account_update(now))
            await self.send(self.account.position_update(now))
            specs = self.account.symbol_specs(now)
            await self.send(specs)
            self._reported = {s.symbol for s in specs.symbols}
            while self.outbox:
                await self.send(self.outbox[0])
                self.outbox.pop(0)
            self.connected.set()
            log.info("connected", account=self.account_id, session=first.session_id)
            tasks = [
                asyncio.create_task(self._heartbeats(first.heartbeat_interval_ms / 1000)),
                asyncio.create_task(self._account_updates()),
            ]
            if self.account.config.tick_interval_ms > 0:
                tasks.append(asyncio.create_task(self._ticks()))
            if self.account.config.disconnect_rate > 0:
                tasks.append(asyncio.create_task(self._random_drops(ws)))
            try:
                async for frame in ws:
                    await self._on_frame(frame)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            message = decode_frame(frame)
        except ProtocolError as exc:  # answered as the EA does: an ERROR naming the frame's type
            log.warning("bad frame from gateway", account=self.account_id, error=exc.message)
            await self._refuse(exc.code, exc.message, exc.field, exc.ref_type, exc.ref_id)
            return
        if isinstance(message, ModifyCommand) and not self.account.config.modify:
            # an older EA: MODIFY is a type it does not know, and it names only the type (no actionId)
            await self._refuse("UNKNOWN_TYPE", "unknown message type MODIFY", "type", "MODIFY", None)
            return
        if isinstance(message, OpenCommand | CloseCommand | ModifyCommand | SyncCommand):
            await self._execute(message)
        elif isinstance(message, ErrorMessage):
            self.errors.append(message)
        elif isinstance(message, Heartbeat) and not message.reply:
            await self.send(Heartbeat(timestamp=utcnow(), seq=message.seq, reply=True))

    async def _refuse(
        self, code: str, message: str, field: str | None, ref_type: str | None, ref_id: str | None
    ) -> None:
        error = ErrorMessage(
            code=code,
            message=message,
            field=field,
            ref_type=ref_type,
            ref_id=ref_id,
            account_id=self.account_id,
            timestamp=utcnow(),
        )
        with contextlib.suppress(ConnectionClosed, ConnectionError):
            await self.send(error)

    async def _execute(self, command: OpenCommand | CloseCommand | ModifyCommand | SyncCommand) -> None:
        async with self._lock:
            if isinstance(command, SyncCommand):
                now = utcnow()
                await self.send(self.account.position_update(now, command.sync_id))
                await self.send(self.account.account_update(now))
                return
            fault = self.account.next_fault()
            latency = self.account.config.fill_latency_ms
            if latency > 0:
                await asyncio.sleep(latency / 1000)
            if fault is not None and not fault.execute:
                self.account.received.append(command.action_id or "")
                return
            now = utcnow()
            if isinstance(command, OpenCommand):
                report: Message = self.account.open(command, now, fault)
                if command.symbol not in self._reported:  # a symbol first traded: its rules
                    await self._report(self.account.symbol_specs(now, [command.symbol]))
                    self._reported.add(command.symbol)
            elif isinstance(command, ModifyCommand):
                report = self.account.modify(command, now, fault)
            else:
                report = self.account.close(command, now, fault)
            if command.traceparent is not None:  # echoed, as the EA does, so the report joins the trace
                report = msgspec.structs.replace(report, traceparent=command.traceparent)
            if fault is None or fault.report:
                await self._report(report)
            await self._report(self.account.position_update(now))
            await self._report(self.account.account_update(now))

    async def _report(self, message: Message) -> None:
        """Send a report; keep it for the next connection when this one is gone."""
        try:
            if self._ws is None:
                raise ConnectionError("not connected")
            await self.send(message)
        except (ConnectionClosed, ConnectionError):
            if not isinstance(message, PositionUpdate | AccountUpdate | SymbolSpecs):  # sent fresh on connect
                self.outbox.append(message)

    async def change_symbol(self, symbol: str, **rules: object) -> None:
        """The broker changes a symbol's rules (``volume_step=0.1``, ``trade_mode="CLOSE_ONLY"``…): the terminal
        reports them at once (or at its next connect)."""
        async with self._lock:
            self.account.set_spec(symbol, **rules)
            await self._report(self.account.symbol_specs(utcnow(), [symbol]))
            self._reported.add(symbol)

    async def _heartbeats(self, interval_s: float) -> None:
        seq = 0
        while True:
            await asyncio.sleep(interval_s)
            if not self.heartbeats_paused:
                seq += 1
                await self.send(Heartbeat(timestamp=utcnow(), seq=seq, account_id=self.account_id))

    async def _ticks(self) -> None:
        interval = self.account.config.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if self.heartbeats_paused:
                continue
            self.account.feed.step()
            for tick in self.account.ticks(utcnow()):
                await self.send(tick)
            await self._stops()

    async def _stops(self) -> None:
        """Positions whose stop loss or take profit the price reached are closed by the trade server."""
        async with self._lock:
            now = utcnow()
            closed = self.account.triggered(now)
            for event in closed:
                await self._report(event)
            if closed:
                await self._report(self.account.position_update(now))
                await self._report(self.account.account_update(now))

    async def _random_drops(self, ws: ClientConnection) -> None:
        """Drop the connection at random (a flaky network or a terminal restart); ``run`` reconnects."""
        rate = self.account.config.disconnect_rate
        while True:
            await asyncio.sleep(self.account.rng.expovariate(rate))
            self.drops += 1
            log.info("dropping the connection", account=self.account_id)
            ws.transport.abort()  # no closing handshake, as when the network goes away
            return

    async def _account_updates(self) -> None:
        interval = self.account.config.account_update_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if not self.heartbeats_paused:
                await self.send(self.account.account_update(utcnow()))


def make_terminals(
    url: str,
    accounts: list[str],
    token_for: Callable[[str], str],
    config: SimConfig,
    seed: int | None = None,
    profile: profiles.Profile | None = None,
) -> list[SimTerminal]:
    """Terminals for ``accounts`` sharing one market (one price feed); ``profile`` (default: the one
    HEDGEBRIDGE_PROFILE names) chooses the reconnect policy."""
    rng = random.Random(seed)
    feed = PriceFeed(config.symbols, rng)
    immediate = (profile or profiles.current()).immediate_reconnect
    return [
        SimTerminal(
            url,
            SimAccount(account, config, feed, random.Random(rng.random())),
            functools.partial(token_for, account),
            immediate_reconnect=immediate,
        )
        for account in accounts
    ]


async def run_terminals(terminals: list[SimTerminal], stop: asyncio.Event) -> None:
    tasks = [asyncio.create_task(t.run()) for t in terminals]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for terminal in terminals:
            with contextlib.suppress(Exception):
                await terminal.drop()
        await asyncio.gather(*tasks, return_exceptions=True)
