"""The bridge's I/O layer: one MetaTrader 5 terminal, driven through the ``MetaTrader5`` package, on NATS.

To the rest of the system the bridge is a gateway holding one EA connection:

- while attached to the terminal it subscribes ``hb.ea.<account>.cmd`` and answers every command with a
  DeliveryAck (not attached: no subscription, so the executor gets "no responders" and nothing is sent);
- it executes OPEN and CLOSE one at a time, in arrival order, as the EA does (same magic number, same order
  comment, same "already executed" search among positions and deals, same retcodes), and answers SYNC (and
  ``hb.gw.sync``) with POSITION_UPDATE (echoing ``syncId``) and ACCOUNT_UPDATE behind the commands before it;
- it publishes OPENED/CLOSED (with the gateway's ``Nats-Msg-Id``), POSITION_UPDATE, ACCOUNT_UPDATE, PRICE and
  SYMBOL_SPECS (the rules of the symbols it quotes, trades and holds, from ``symbol_info``) on
  ``hb.ea.<account>.evt.<type>``, CLOSED with a ``reason`` for positions closed without a command, and
  TERMINAL_STATUS CONNECTED / DISCONNECTED on ``hb.ea.<account>.status``;
- when the package loses its link to the terminal it publishes DISCONNECTED, drops the commands it had not
  started (the executor reconciles them; nothing runs late), and attaches again with full-jitter backoff
  (``hedgebridge.common.backoff``);
- a newer connection for the same account (an EA through a gateway, another bridge) replaces it, as a newer
  EA connection replaces an older one; it attaches again when that one ends.

This module is the session supervisor (attach, take commands, detach, attach again) and the worker that runs
the commands; the bus side is the terminal link's (``terminal_link_mt5.py`` is the bridge's link), OPEN and
CLOSE are ``trading.py``'s, snapshots and polls ``snapshots.py``'s, the package's calls ``terminal.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import uuid
from typing import Any

from nats.aio.client import Client as NatsClient

from hedgebridge.common import bus, logs
from hedgebridge.common.backoff import Backoff
from hedgebridge.common.obs import for_service
from hedgebridge.common.symbol_maps import MapMirror
from hedgebridge.common.tasks import cancel_and_wait
from hedgebridge.common.terminal_link import TerminalBus, rules
from hedgebridge.protocol import Command, Message, ModifyCommand, OpenCommand, SyncCommand, subjects, type_name, utcnow

from . import translate as tr
from .book import Book
from .clock import ServerClock
from .config import Mt5BridgeConfig
from .errors import AccountMismatch, Mt5PackageMissing, TerminalLost, TerminalUnavailable
from .snapshots import Snapshots
from .terminal import Terminal
from .terminal_link_mt5 import Mt5Link
from .trading import Trader

log = logs.get("mt5bridge")


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
        self._terminal = Terminal(mt5, config.history_days, ServerClock(config.server_offset_s))
        self._nats: NatsClient | None = None
        self.symbol_maps = MapMirror()  # the account's symbol map: its events are published in canonical symbols
        self._bus: TerminalBus[Mt5Link] = TerminalBus(
            self.bridge_id,
            lambda: self.nats,
            log,
            status_subject=subjects.status(self.account_id),
            maps=self.symbol_maps,
        )
        self._book = Book(config.book_path)
        self._lock = asyncio.Lock()  # commands and snapshot polls: a snapshot never interleaves with a command
        self._trader = Trader(self._terminal, self._book, config)
        self._snapshots = Snapshots(self._terminal, self._book, config, self._publish, self._lock)
        self._link: Mt5Link | None = None  # the session attached last
        self._supervisor: asyncio.Task[None] | None = None
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
        return self._terminal.mt5

    # --- life -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to NATS and the terminal. A terminal that is not there yet is attached to later; a terminal
        logged in to another account than the configured login stops the start (AccountMismatch)."""
        if self._terminal.module is None:
            self._terminal.module = load_package()
        await self.obs.start()  # first: liveness answers while NATS is still being reached
        self._nats = await bus.connect(
            self.config.nats_url, name=self.bridge_id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        await self.symbol_maps.start(self.nats, create=False)
        await self._bus.start()  # this account's statuses (hand-overs), then sync requests
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
        await cancel_and_wait(self._supervisor)
        self._supervisor = None
        if self._link is not None and self._link.subscription is not None:
            await self._detach(self._link, "bridge shutting down")
        if self._terminal.module is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._terminal.call(self.mt5.shutdown)
        await self._close_nats()
        self._terminal.shutdown()
        await self.obs.stop()

    async def _close_nats(self) -> None:
        await self._bus.stop()
        await self.symbol_maps.stop()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()
            self._nats = None

    async def _supervise(self, attached: bool) -> None:
        backoff = Backoff(self.config.backoff_initial_ms / 1000, self.config.backoff_max_ms / 1000)
        while True:
            if not attached:
                await self._bus.successor_gone(self.account_id)  # replaced: attach again when that one ends
                try:
                    await self._attach()
                    attached = True
                    backoff.reset()
                except (TerminalUnavailable, TerminalLost, AccountMismatch) as exc:
                    log.warning("cannot attach to the terminal", account=self.account_id, error=str(exc))
                    await asyncio.sleep(backoff.next())
                    continue
            link = self._link = Mt5Link(self.account_id, uuid.uuid4().hex)
            try:
                reason = await self._serve(link)
            except (TerminalLost, TerminalUnavailable) as exc:
                reason = f"terminal lost: {exc}"
            except Exception:  # a fault of the bridge itself (NATS refused a subscription…): start over
                log.exception("session failed", account=self.account_id)
                reason = "internal error"
                await asyncio.sleep(backoff.next())
            await self._detach(link, reason)
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
                await self._terminal.call(mt5.shutdown)
        if not await self._terminal.call(mt5.initialize, *args, **kwargs):
            code, text = await self._terminal.call(mt5.last_error)
            raise TerminalUnavailable(f"initialize failed: {text} ({code})")
        info = await self._terminal.call(mt5.account_info)
        if info is None:
            code, text = await self._terminal.call(mt5.last_error)
            raise TerminalUnavailable(f"account_info failed: {text} ({code})")
        if self.config.login and info.login != self.config.login:
            raise AccountMismatch(f"the terminal is logged in to {info.login}, not to {self.config.login}")
        if info.margin_mode != tr.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING:
            log.warning(
                "not a hedging account: positions on one symbol are netted into one ticket", account=self.account_id
            )
        self._book.load()  # positions closed while the bridge was stopped too: the first poll reports them
        self.attachments += 1
        log.info("terminal attached", account=self.account_id, login=info.login, server=info.server)

    async def _serve(self, link: Mt5Link) -> str:
        """Take commands until the terminal is lost or a newer connection replaces this one; returns why."""
        self.session_id = link.session_id
        link.subscription = await self._bus.subscribe_commands(link)
        self._bus.hold(link)
        await self._bus.announce(link)  # CONNECTED, flushed
        tasks: list[asyncio.Task[None]] = []
        try:
            async with self._lock:
                await self._guard(link, self._snapshots.send())
                await self._guard(link, self._snapshots.send_specs(force=True))  # a new session: every symbol
            self.connected.set()
            log.info("taking commands", account=self.account_id, session=link.session_id)
            tasks = [
                asyncio.create_task(self._guard(link, self._work(link))),
                asyncio.create_task(self._guard(link, self._snapshots.poll_state())),
            ]
            if self.config.price_symbols:
                tasks.append(asyncio.create_task(self._guard(link, self._snapshots.poll_prices())))
            await link.lost.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return link.lost_reason

    async def _detach(self, link: Mt5Link, reason: str) -> None:
        self.connected.clear()
        self._bus.drop(link)
        sub, link.subscription = link.subscription, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        queue, link.queue = link.queue, None
        dropped = queue.qsize() if queue is not None else 0
        if dropped:
            log.warning("commands not started are dropped (the executor reconciles them)", count=dropped)
        log.info("terminal detached", account=self.account_id, session=link.session_id, reason=reason)
        with contextlib.suppress(Exception):
            await self._bus.publish_status(link, "DISCONNECTED", reason)

    async def _guard(self, link: Mt5Link, work: Any) -> None:
        """Run a task of the session: a lost terminal ends the session; other faults are logged."""
        try:
            await work
        except TerminalLost as exc:
            log.warning("terminal lost", account=self.account_id, error=str(exc))
            link.lose(f"terminal lost: {exc}")

    async def _publish(self, message: Message) -> None:
        """An event of the terminal; OPENED/CLOSED/MODIFIED with their ``Nats-Msg-Id`` (HB_EVENTS keeps each once)."""
        try:
            await self._bus.publish_event(self.account_id, message, rules.report_headers(message))
        except Exception as exc:
            log.warning("publish failed", account=self.account_id, type=type_name(message), error=repr(exc))

    # --- commands ---------------------------------------------------------------------------------------------

    async def _work(self, link: Mt5Link) -> None:
        queue = link.queue
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
            await self._snapshots.send(command.sync_id)
            return
        self.received.append(command.action_id or "")
        if isinstance(command, OpenCommand):
            outcome = await self._trader.open(command)
            report: Message = tr.opened_event(self.account_id, command, outcome, utcnow())
        elif isinstance(command, ModifyCommand):
            outcome = await self._trader.modify(command)
            report = tr.modified_event(self.account_id, command, outcome, utcnow())
        else:
            outcome = await self._trader.close(command)
            report = tr.closed_event(self.account_id, command, outcome, utcnow())
        if outcome.answered:
            await self._publish(report)
        else:
            log.warning("no result for the order yet; the executor reconciles it", action=command.action_id)
        await self._snapshots.send()
        if isinstance(command, OpenCommand) and self._snapshots.track(command.symbol):  # a symbol first traded
            await self._snapshots.send_specs()
