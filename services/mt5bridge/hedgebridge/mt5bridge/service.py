"""The bridge's I/O layer: one MetaTrader 5 terminal, driven through the ``MetaTrader5`` package, on NATS.

To the rest of the system the bridge is a gateway holding one EA connection:

- while attached to the terminal it subscribes ``hb.ea.<account>.cmd`` and answers every command with a
  DeliveryAck (not attached: no subscription, so the executor gets "no responders" and nothing is sent);
- it executes OPEN and CLOSE one at a time, in arrival order, as the EA does (same magic number, same order
  comment, same "already executed" search among positions and deals, same retcodes), and answers SYNC (and
  ``hb.gw.sync``) with POSITION_UPDATE (echoing ``syncId``) and ACCOUNT_UPDATE behind the commands before it;
- it publishes OPENED/CLOSED (with the gateway's ``Nats-Msg-Id``), POSITION_UPDATE, ACCOUNT_UPDATE and PRICE
  on ``hb.ea.<account>.evt.<type>``, CLOSED with a ``reason`` for positions closed without a command, and
  TERMINAL_STATUS CONNECTED / DISCONNECTED on ``hb.ea.<account>.status``;
- when the package loses its link to the terminal it publishes DISCONNECTED, drops the commands it had not
  started (the executor reconciles them; nothing runs late), and attaches again with backoff;
- a newer connection for the same account (an EA through a gateway, another bridge) replaces it, as a newer
  EA connection replaces an older one; it attaches again when that one ends.

The package is not thread-safe and blocks: every call runs on one worker thread, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hedgebridge.common import bus, logs
from hedgebridge.common.obs import for_service
from hedgebridge.protocol import (
    PROTOCOL_VERSION,
    CloseCommand,
    ClosedEvent,
    Command,
    DeliveryAck,
    Message,
    OpenCommand,
    OpenedEvent,
    ProtocolError,
    SyncCommand,
    TerminalStatus,
    pack,
    retcodes,
    subjects,
    type_name,
    unpack,
    unpack_command,
    utcnow,
)

from . import translate as tr
from .book import Book
from .config import Mt5BridgeConfig
from .errors import AccountMismatch, Mt5PackageMissing, TerminalLost, TerminalUnavailable
from .translate import Outcome

log = logs.get("mt5bridge")

_DONE_MEMORY = 10_000  # outcomes of this run kept by actionId (positions and history answer for older ones)


def load_package() -> Any:
    """Import the ``MetaTrader5`` package (Windows only), only when a bridge starts with the real terminal."""
    try:
        return importlib.import_module("MetaTrader5")
    except ImportError:
        raise Mt5PackageMissing(
            "the MetaTrader5 package is not installed; it exists for Windows only: "
            "pip install 'hedgebridge[mt5]' on the Windows host that runs the terminal"
        ) from None


class Mt5Bridge:
    def __init__(self, config: Mt5BridgeConfig, mt5: Any | None = None) -> None:
        """``mt5`` is the package's module (imported at start when None) or a stand-in for it."""
        self.config = config
        self.account_id = config.account_id
        self.bridge_id = config.bridge_id
        self._mt5 = mt5
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5")
        self._nats: NatsClient | None = None
        self._book = Book(config.book_path)
        self._done: dict[tuple[str, str], Outcome] = {}
        self._lock = asyncio.Lock()  # commands and snapshot polls: a snapshot never interleaves with a command
        self._queue: asyncio.Queue[Command] | None = None
        self._subs: list[Subscription] = []
        self._cmd_sub: Subscription | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._displaced_by: str | None = None
        self._other_gone = asyncio.Event()
        self._connected_at: datetime = utcnow()
        self._positions_sig: tuple[tuple[int, float], ...] | None = None
        self._positions_sent = 0.0
        self._account_sig: tuple[float, float, float] | None = None
        self._account_sent = 0.0
        self._prices: dict[str, tuple[float, float]] = {}
        self._missing: dict[int, int] = {}  # book tickets gone from the positions, polls without a closing deal
        self.connected = asyncio.Event()  # attached: commands are taken
        self.obs = for_service("mt5bridge", config, lambda: self._nats, jetstream=False)
        self.obs.health.check("terminal", lambda: None if self.connected.is_set() else "terminal not attached")
        self.session_id = ""
        self.received: list[str] = []  # actionIds of every OPEN/CLOSE received, repeats included
        self.attachments = 0

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "bridge not started"
        return self._nats

    @property
    def mt5(self) -> Any:
        assert self._mt5 is not None, "bridge not started"
        return self._mt5

    # --- life -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to NATS and the terminal. A terminal that is not there yet is attached to later; a terminal
        logged in to another account than the configured login stops the start (AccountMismatch)."""
        if self._mt5 is None:
            self._mt5 = load_package()
        await self.obs.start()  # first: liveness answers while NATS is still being reached
        self._nats = await bus.connect(
            self.config.nats_url, name=self.bridge_id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        self._subs = [
            await self.nats.subscribe(subjects.status(self.account_id), cb=self._on_status),
            await self.nats.subscribe(subjects.GATEWAY_SYNC, cb=self._on_sync_all),
        ]
        attached = False
        try:
            await self._attach()
            attached = True
        except AccountMismatch:
            await self._close_nats()
            raise
        except (TerminalUnavailable, TerminalLost) as exc:
            log.warning("terminal not available yet; retrying", account=self.account_id, error=str(exc))
        self._supervisor = asyncio.create_task(self._supervise(attached))
        log.info("ready", account=self.account_id, bridge=self.bridge_id)

    async def stop(self) -> None:
        """Publish DISCONNECTED, stop taking commands, release the terminal and NATS."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._cmd_sub is not None:
            await self._detach("bridge shutting down")
        if self._mt5 is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._call(self.mt5.shutdown)
        await self._close_nats()
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self.obs.stop()

    async def _close_nats(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()
            self._nats = None

    async def _supervise(self, attached: bool) -> None:
        delay = self.config.backoff_initial_ms / 1000
        while True:
            if not attached:
                if self._displaced_by is not None:
                    await self._other_gone.wait()
                try:
                    await self._attach()
                    attached = True
                    delay = self.config.backoff_initial_ms / 1000
                except (TerminalUnavailable, TerminalLost, AccountMismatch) as exc:
                    log.warning("cannot attach to the terminal", account=self.account_id, error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.config.backoff_max_ms / 1000)
                    continue
            try:
                reason = await self._serve()
            except (TerminalLost, TerminalUnavailable) as exc:
                reason = f"terminal lost: {exc}"
            except Exception:  # a fault of the bridge itself (NATS refused a subscription…): start over
                log.exception("session failed", account=self.account_id)
                reason = "internal error"
                await asyncio.sleep(delay)
            await self._detach(reason)
            attached = False

    async def _attach(self) -> None:
        """``initialize`` (and log in when a login is configured), check the account, load the book."""
        mt5 = self.mt5
        args: tuple[Any, ...] = (self.config.terminal_path,) if self.config.terminal_path else ()
        kwargs: dict[str, Any] = {"timeout": self.config.init_timeout_ms}
        if self.config.login:
            kwargs["login"] = self.config.login
            if self.config.password:
                kwargs["password"] = self.config.password
            if self.config.server:
                kwargs["server"] = self.config.server
        if self.attachments:  # attaching again after a loss: release the old link first
            with contextlib.suppress(Exception):
                await self._call(mt5.shutdown)
        if not await self._call(mt5.initialize, *args, **kwargs):
            code, text = await self._call(mt5.last_error)
            raise TerminalUnavailable(f"initialize failed: {text} ({code})")
        info = await self._call(mt5.account_info)
        if info is None:
            code, text = await self._call(mt5.last_error)
            raise TerminalUnavailable(f"account_info failed: {text} ({code})")
        if self.config.login and info.login != self.config.login:
            raise AccountMismatch(f"the terminal is logged in to {info.login}, not to {self.config.login}")
        if info.margin_mode != tr.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
            log.warning(
                "not a hedging account: positions on one symbol are netted into one ticket", account=self.account_id
            )
        positions = await self._query(mt5.positions_get)
        self._book.load(p.ticket for p in positions or ())
        self.attachments += 1
        log.info("terminal attached", account=self.account_id, login=info.login, server=info.server)

    async def _serve(self) -> str:
        """Take commands until the terminal is lost or a newer connection replaces this one; returns why."""
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self.session_id = uuid.uuid4().hex
        self._connected_at = utcnow()
        self._queue = asyncio.Queue()
        self._cmd_sub = await self.nats.subscribe(subjects.command(self.account_id), cb=self._on_command)
        await self._publish_status("CONNECTED")
        await self.nats.flush()
        tasks: list[asyncio.Task[None]] = []
        try:
            async with self._lock:
                await self._guard(self._snapshots())
            self.connected.set()
            log.info("taking commands", account=self.account_id, session=self.session_id)
            tasks = [
                asyncio.create_task(self._guard(self._work())),
                asyncio.create_task(self._guard(self._poll_state())),
            ]
            if self.config.price_symbols:
                tasks.append(asyncio.create_task(self._guard(self._poll_prices())))
            await self._lost.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._lost_reason

    async def _detach(self, reason: str) -> None:
        self.connected.clear()
        sub, self._cmd_sub = self._cmd_sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        queue, self._queue = self._queue, None
        dropped = queue.qsize() if queue is not None else 0
        if dropped:
            log.warning("commands not started are dropped (the executor reconciles them)", count=dropped)
        log.info("terminal detached", account=self.account_id, session=self.session_id, reason=reason)
        with contextlib.suppress(Exception):
            await self._publish_status("DISCONNECTED", reason)

    def _lose(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    async def _guard(self, work: Any) -> None:
        """Run a task of the session: a lost terminal ends the session; other faults are logged."""
        try:
            await work
        except TerminalLost as exc:
            log.warning("terminal lost", account=self.account_id, error=str(exc))
            self._lose(f"terminal lost: {exc}")

    # --- NATS -------------------------------------------------------------------------------------------------

    async def _on_command(self, msg: Msg) -> None:
        try:
            command = unpack_command(msg.data)
        except ProtocolError as exc:
            await self._ack(msg, DeliveryAck(delivered=False, reason=f"invalid command: {exc.message}"))
            return
        if command.account_id != self.account_id:
            await self._ack(msg, DeliveryAck(delivered=False, reason="command names another account"))
            return
        queue = self._queue
        if queue is None or self._lost.is_set():
            await self._ack(msg, DeliveryAck(delivered=False, reason="terminal not attached"))
            return
        queue.put_nowait(command)
        log.debug("command taken", account=self.account_id, type=type_name(command))
        await self._ack(msg, DeliveryAck(delivered=True, session_id=self.session_id))

    async def _ack(self, msg: Msg, ack: DeliveryAck) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(ack))

    async def _on_sync_all(self, msg: Msg) -> None:
        """Every terminal is asked for fresh snapshots (the cache is being rebuilt): queued behind commands."""
        reason = msg.data.decode(errors="replace")[:200] or "sync requested"
        queue = self._queue
        if queue is not None and not self._lost.is_set():
            queue.put_nowait(SyncCommand(timestamp=utcnow(), account_id=self.account_id, reason=reason))

    async def _on_status(self, msg: Msg) -> None:
        try:
            event = unpack(msg.data, TerminalStatus)
        except ProtocolError:
            return
        if event.session_id == self.session_id or event.account_id != self.account_id:
            return
        if event.status == "CONNECTED" and self._cmd_sub is not None and event.timestamp >= self._connected_at:
            log.warning(
                "a newer connection for this account took over",
                account=self.account_id,
                session=event.session_id,
                gateway=event.gateway_id,
            )
            self._displaced_by = event.session_id
            self._other_gone.clear()
            self._lose("replaced by a newer connection for this account")
        elif event.status == "DISCONNECTED" and event.session_id == self._displaced_by:
            self._displaced_by = None
            self._other_gone.set()

    async def _publish_status(self, status: str, reason: str = "") -> None:
        event = TerminalStatus(
            timestamp=utcnow(),
            account_id=self.account_id,
            status="CONNECTED" if status == "CONNECTED" else "DISCONNECTED",
            session_id=self.session_id,
            gateway_id=self.bridge_id,
            reason=reason,
            protocol_version=PROTOCOL_VERSION,
            remote="MetaTrader5 package",
        )
        await self.nats.publish(subjects.status(self.account_id), pack(event))

    async def _publish(self, message: Message) -> None:
        headers = None
        if isinstance(message, OpenedEvent | ClosedEvent):  # kept in HB_EVENTS: a repeat is dropped there
            headers = {"Nats-Msg-Id": tr.report_id(message)}
        try:
            await self.nats.publish(subjects.event(self.account_id, type_name(message)), pack(message), headers=headers)
        except Exception as exc:
            log.warning("publish failed", account=self.account_id, type=type_name(message), error=repr(exc))

    # --- the terminal -----------------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the package on its worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    async def _query(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the package; its answer (None or False for an ordinary failure: not found…), or TerminalLost
        when its link to the terminal is broken."""
        result = await self._call(function, *args, **kwargs)
        if result is None or result is False:
            code, text = await self._call(self.mt5.last_error)
            if tr.RES_E_INTERNAL_FAIL_FIRST <= code <= tr.RES_E_INTERNAL_FAIL_LAST:
                raise TerminalLost(f"{getattr(function, '__name__', 'call')}: {text} ({code})")
        return result

    async def _history(self) -> tuple[Any, ...]:
        now = utcnow()
        start = now - timedelta(days=self.config.history_days)
        deals = await self._query(self.mt5.history_deals_get, start, now + timedelta(days=1))
        return tuple(deals or ())

    async def _deal(self, ticket: int) -> Any:
        """A deal by ticket; just after ``order_send`` it may take a moment to reach the history."""
        if not ticket:
            return None
        for _ in range(25):
            deals = await self._query(self.mt5.history_deals_get, ticket=ticket)
            if deals:
                return deals[0]
            await asyncio.sleep(0.02)
        return None

    async def _positions(self) -> tuple[Any, ...]:
        positions = await self._query(self.mt5.positions_get)
        if positions is None:
            code, text = await self._call(self.mt5.last_error)
            raise TerminalLost(f"positions_get: {text} ({code})")
        return tuple(positions)

    # --- commands ---------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            command = await queue.get()
            async with self._lock:
                try:
                    await self._execute(command)
                except TerminalLost:
                    raise
                except Exception:
                    log.exception("command failed inside the bridge", account=self.account_id)

    async def _execute(self, command: Command) -> None:
        if isinstance(command, SyncCommand):
            await self._snapshots(command.sync_id)
            return
        self.received.append(command.action_id or "")
        if isinstance(command, OpenCommand):
            outcome = await self._open(command)
            report: Message = tr.opened_event(self.account_id, command, outcome, utcnow())
        else:
            outcome = await self._close(command)
            report = tr.closed_event(self.account_id, command, outcome, utcnow())
        if outcome.answered:
            await self._publish(report)
        else:
            log.warning("no result for the order yet; the executor reconciles it", action=command.action_id)
        await self._snapshots()

    def _remember(self, kind: str, action_id: str | None, outcome: Outcome) -> None:
        if not action_id or not outcome.success:
            return  # a refused attempt is not an execution: the same actionId may come again
        if len(self._done) >= _DONE_MEMORY:
            self._done.clear()
        self._done[(kind, action_id)] = outcome

    async def _trading_blocked(self) -> Outcome | None:
        terminal = await self._query(self.mt5.terminal_info)
        if terminal is None or not terminal.trade_allowed or terminal.tradeapi_disabled:
            return tr.failed(retcodes.CLIENT_DISABLES_AT, "algorithmic trading is disabled in the terminal")
        account = await self._query(self.mt5.account_info)
        if account is None or not account.trade_expert:
            return tr.failed(
                retcodes.SERVER_DISABLES_AT, "the trade server does not allow expert trading on this account"
            )
        return None

    async def _open(self, command: OpenCommand) -> Outcome:
        mt5 = self.mt5
        magic = self.config.magic
        action_id = command.action_id or ""
        if action_id:
            known = self._done.get(("OPEN", action_id))
            if known is not None:
                return tr.again(known)
            earlier = tr.find_open(action_id, magic, await self._positions(), ())
            earlier = earlier or tr.find_open(action_id, magic, (), await self._history())
            if earlier is not None:
                if earlier.ticket not in self._book.entries:
                    self._book.remember(earlier.ticket, command.position_id, command.action_id)
                self._remember("OPEN", action_id, earlier)
                return earlier
        symbol = command.symbol
        if not await self._query(mt5.symbol_select, symbol, True):
            return tr.failed(None, f"symbol {symbol} is not available on this account")
        info = await self._query(mt5.symbol_info, symbol)
        if info is None:
            return tr.failed(None, f"symbol {symbol} is not available on this account")
        problem = tr.volume_problem(symbol, command.volume, info.volume_min, info.volume_max, info.volume_step)
        if problem is not None:
            return tr.failed(retcodes.INVALID_VOLUME, problem)
        blocked = await self._trading_blocked()
        if blocked is not None:
            return blocked
        tick = await self._query(mt5.symbol_info_tick, symbol)
        if tick is None or tick.bid <= 0 or tick.ask <= 0:
            return tr.failed(retcodes.PRICE_OFF, f"no current price for {symbol}")
        request = tr.open_request(
            command,
            price=tick.ask if command.side == "BUY" else tick.bid,
            filling=tr.filling_for(info.filling_mode),
            magic=magic,
            deviation=self.config.deviation,
            volume_step=info.volume_step,
        )
        result = await self._call(mt5.order_send, request)
        if result is None:
            outcome = await self._lost_result("OPEN", action_id, command.position_id)
        elif result.retcode == retcodes.PLACED:
            outcome = await self._placed(result.order)
        elif tr.is_fill(result.retcode):
            deal = await self._deal(result.deal)
            outcome = tr.fill_outcome(result, request["volume"], deal, closing=False)
        else:
            return tr.refused_outcome(result)
        if outcome.success:
            self._book.remember(outcome.ticket, command.position_id, command.action_id)
            self._remember("OPEN", action_id, outcome)
        return outcome

    async def _placed(self, order: int) -> Outcome:
        """Exchange execution: the order waits for its deal; its position appears under the order's ticket."""
        for _ in range(100):
            found = await self._query(self.mt5.positions_get, ticket=order)
            if found:
                return Outcome(success=True, ticket=order, price=found[0].price_open, volume=found[0].volume)
            await asyncio.sleep(0.03)
        return Outcome(success=False, answered=False, message="order placed, no deal yet")

    async def _lost_result(self, kind: str, action_id: str, position_id: str) -> Outcome:
        """``order_send`` returned nothing: look for the execution; without one the outcome is unknown, which
        the trade-server code ERROR says (the executor reconciles it from a snapshot, never resends)."""
        code, text = await self._call(self.mt5.last_error)
        log.warning(
            "order_send returned no result", account=self.account_id, action=action_id, error=f"{text} ({code})"
        )
        if action_id:
            if kind == "OPEN":
                found = tr.find_open(action_id, self.config.magic, await self._positions(), await self._history())
            else:
                volumes = {p.ticket: p.volume for p in await self._positions()}
                found = tr.find_close(action_id, self.config.magic, await self._history(), volumes)
            if found is not None:
                return dataclasses.replace(found, already_executed=False)
        return tr.failed(retcodes.ERROR, f"order_send returned no result ({text}, {code}); the order may have executed")

    async def _find_position(self, command: CloseCommand) -> Any:
        """The position a CLOSE names: ``mtTicket`` when given, else ``positionId`` (book, then comments)."""
        mt5 = self.mt5
        if command.mt_ticket is not None:
            if not command.mt_ticket.isdigit():
                return None
            found = await self._query(mt5.positions_get, ticket=int(command.mt_ticket))
            return found[0] if found else None
        known = self._book.ticket_of(command.position_id)
        if known is not None:
            found = await self._query(mt5.positions_get, ticket=known)
            if found:
                return found[0]
        wanted = tr.tag(command.position_id)
        return next((p for p in await self._positions() if tr.position_tag(p.comment) == wanted), None)

    async def _close(self, command: CloseCommand) -> Outcome:
        mt5 = self.mt5
        magic = self.config.magic
        action_id = command.action_id or ""
        if action_id:
            known = self._done.get(("CLOSE", action_id))
            if known is not None:
                return tr.again(known)
            volumes = {p.ticket: p.volume for p in await self._positions()}
            earlier = tr.find_close(action_id, magic, await self._history(), volumes)
            if earlier is not None:
                self._remember("CLOSE", action_id, earlier)
                return earlier
        position = await self._find_position(command)
        if position is None:
            return tr.failed(retcodes.POSITION_CLOSED, "position not found or already closed")
        volume = tr.close_volume(command.volume, position.volume)
        info = await self._query(mt5.symbol_info, position.symbol)
        if info is None:
            return tr.failed(None, f"symbol {position.symbol} is not available on this account")
        if volume < position.volume:
            problem = tr.volume_problem(position.symbol, volume, info.volume_min, info.volume_max, info.volume_step)
            if problem is not None:
                return tr.failed(retcodes.INVALID_VOLUME, problem)
        blocked = await self._trading_blocked()
        if blocked is not None:
            return blocked
        tick = await self._query(mt5.symbol_info_tick, position.symbol)
        if tick is None or tick.bid <= 0 or tick.ask <= 0:
            return tr.failed(retcodes.PRICE_OFF, f"no current price for {position.symbol}")
        request = tr.close_request(
            command,
            position,
            volume=volume,
            bid=tick.bid,
            ask=tick.ask,
            filling=tr.filling_for(info.filling_mode),
            magic=magic,
            deviation=self.config.deviation,
            volume_step=info.volume_step,
        )
        result = await self._call(mt5.order_send, request)
        if result is None:
            outcome = await self._lost_result("CLOSE", action_id, command.position_id)
        elif tr.is_fill(result.retcode):
            deal = await self._deal(result.deal)
            after = await self._query(mt5.positions_get, ticket=position.ticket)
            share = request["volume"] / position.volume if position.volume > 0 else 0.0
            outcome = tr.fill_outcome(
                result,
                request["volume"],
                deal,
                closing=True,
                position_ticket=position.ticket,
                remaining=after[0].volume if after else 0.0,
                profit_estimate=position.profit * share,
            )
        else:
            return tr.refused_outcome(result)
        if outcome.success:
            if outcome.remaining <= 0:
                self._book.forget(outcome.ticket)
            self._remember("CLOSE", action_id, outcome)
        return outcome

    # --- reports ----------------------------------------------------------------------------------------------

    async def _snapshots(self, sync_id: str | None = None) -> None:
        """POSITION_UPDATE (echoing ``sync_id``) and ACCOUNT_UPDATE, now."""
        loop = asyncio.get_running_loop()
        positions = await self._positions()
        now = utcnow()
        await self._publish(tr.position_update(self.account_id, positions, self._book.entries, now, sync_id))
        self._positions_sig = _signature(positions)
        self._positions_sent = loop.time()
        info = await self._query(self.mt5.account_info)
        if info is not None:
            await self._publish(tr.account_update(self.account_id, info, now))
            self._account_sig = (info.balance, info.equity, info.margin)
            self._account_sent = loop.time()

    async def _poll_state(self) -> None:
        """Positions and account figures: sent when they change (and at least every interval); positions of
        the system that closed without a command are reported as CLOSED with their reason."""
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            async with self._lock:
                positions = await self._positions()
                await self._outside_closes({p.ticket for p in positions})
                now = utcnow()
                signature = _signature(positions)
                due = loop.time() - self._positions_sent >= self.config.positions_interval_ms / 1000
                if signature != self._positions_sig or due:
                    update = tr.position_update(self.account_id, positions, self._book.entries, now)
                    await self._publish(update)
                    self._positions_sig = signature
                    self._positions_sent = loop.time()
                info = await self._query(self.mt5.account_info)
                if info is None:
                    continue
                figures = (info.balance, info.equity, info.margin)
                changed = self._account_sig is None or any(
                    abs(a - b) >= 0.01 for a, b in zip(figures, self._account_sig, strict=True)
                )
                due = loop.time() - self._account_sent >= self.config.account_interval_ms / 1000
                if changed or due:
                    await self._publish(tr.account_update(self.account_id, info, now))
                    self._account_sig = figures
                    self._account_sent = loop.time()

    async def _outside_closes(self, open_tickets: set[int]) -> None:
        for ticket in [t for t in self._book.entries if t not in open_tickets]:
            position_id, action_id = self._book.entries[ticket]
            deals = await self._query(self.mt5.history_deals_get, position=ticket)
            event = tr.outside_close(self.account_id, ticket, position_id, action_id, deals or (), utcnow())
            if event is None:
                self._missing[ticket] = self._missing.get(ticket, 0) + 1
                if self._missing[ticket] < 40:
                    continue
                log.warning("a position closed without a closing deal in the history", ticket=ticket)
            else:
                log.info("position closed outside the system", ticket=ticket, reason=event.reason)
                await self._publish(event)
            self._missing.pop(ticket, None)
            self._book.forget(ticket)

    async def _poll_prices(self) -> None:
        symbols = self.config.price_symbols
        for symbol in symbols:
            if not await self._query(self.mt5.symbol_select, symbol, True):
                log.warning("no PRICE for a symbol the terminal does not know", symbol=symbol)
        interval = self.config.price_interval_ms / 1000
        while True:
            for symbol in symbols:
                tick = await self._query(self.mt5.symbol_info_tick, symbol)
                if tick is None or self._prices.get(symbol) == (tick.bid, tick.ask):
                    continue
                message = tr.price_tick(self.account_id, symbol, tick)
                if message is not None:
                    self._prices[symbol] = (tick.bid, tick.ask)
                    await self._publish(message)
            await asyncio.sleep(interval)


def _signature(positions: tuple[Any, ...]) -> tuple[tuple[int, float], ...]:
    return tuple(sorted((int(p.ticket), float(p.volume)) for p in positions))
