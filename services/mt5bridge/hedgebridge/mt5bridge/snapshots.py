"""The terminal's state on the bus: POSITION_UPDATE and ACCOUNT_UPDATE now (a snapshot, echoing a SYNC's
``syncId``) and polled (sent when they change, and at least every interval), PRICE for the configured
symbols, CLOSED with its reason for a position of the system that closed without a command, and SYMBOL_SPECS:
the rules of the symbols quoted, traded and held, at each session's start, for a symbol first traded, and
when a poll (every ``SPECS_INTERVAL_S``) finds one changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hedgebridge.common import logs
from hedgebridge.protocol import Message, SymbolSpec, utcnow

from . import translate as tr
from .book import Book
from .config import Mt5BridgeConfig
from .terminal import Terminal

log = logs.get("mt5bridge")

_CLOCK_INTERVAL_S = 10.0
SPECS_INTERVAL_S = 1.0  # how often the symbols' rules are read again (a change is reported within it)
_PATIENCE = 40  # polls a closed position's closing deal is looked for at each poll


class Snapshots:
    """``lock`` is held by a command while it runs: a poll never interleaves with a command."""

    def __init__(
        self,
        terminal: Terminal,
        book: Book,
        config: Mt5BridgeConfig,
        publish: Callable[[Message], Awaitable[None]],
        lock: asyncio.Lock,
    ) -> None:
        self._terminal = terminal
        self._book = book
        self.config = config
        self._account_id = config.account_id
        self._publish = publish
        self.lock = lock
        self._positions_sig: tuple[tuple[int, int, float], ...] | None = None
        self._positions_sent = 0.0
        self._account_sig: tuple[float, float, float] | None = None
        self._account_sent = 0.0
        self._prices: dict[str, tuple[float, float]] = {}
        self._clock_due = 0.0  # loop time of the next read of the positions' ticks for the clock
        self._missing: dict[int, int] = {}  # book identifiers gone from the positions, polls without a closing deal
        self._traded: set[str] = set()  # symbols traded in this run: their rules are reported
        self._specs_sent: dict[str, SymbolSpec] = {}  # the rules last reported, by symbol
        self._specs_due = 0.0  # loop time of the next read of the rules

    def track(self, symbol: str) -> bool:
        """Report the rules of ``symbol`` from now on; True when it was not reported yet."""
        known = symbol in self._traded or symbol in self._specs_sent
        self._traded.add(symbol)
        return not known

    async def send_specs(self, held: set[str] | None = None, *, force: bool = False) -> None:
        """SYMBOL_SPECS of the symbols quoted, traded and held (``held``: the open positions' symbols; None:
        read them) when a rule differs from the last report (``force``: in any case, a new session)."""
        self._specs_due = asyncio.get_running_loop().time() + SPECS_INTERVAL_S
        if held is None:
            held = {p.symbol for p in await self._terminal.positions()}
        specs: dict[str, SymbolSpec] = {}
        for symbol in sorted(set(self.config.price_symbols) | self._traded | held):
            info = await self._terminal.query(self._terminal.mt5.symbol_info, symbol)
            spec = tr.symbol_spec(symbol, info) if info is not None else None
            if spec is not None:
                specs[symbol] = spec
        changed = specs if force else {k: v for k, v in specs.items() if self._specs_sent.get(k) != v}
        message = tr.symbol_specs(self._account_id, changed.values(), utcnow())
        if message is not None:
            await self._publish(message)
            self._specs_sent.update(changed)

    async def send(self, sync_id: str | None = None) -> None:
        """POSITION_UPDATE (echoing ``sync_id``) and ACCOUNT_UPDATE, now."""
        loop = asyncio.get_running_loop()
        positions = await self._terminal.positions()
        now = utcnow()
        offset = self._terminal.clock.offset_s
        await self._publish(tr.position_update(self._account_id, positions, self._book.entries, now, offset, sync_id))
        self._positions_sig = _signature(positions)
        self._positions_sent = loop.time()
        info = await self._terminal.query(self._terminal.mt5.account_info)
        if info is not None:
            await self._publish(tr.account_update(self._account_id, info, now))
            self._account_sig = (info.balance, info.equity, info.margin)
            self._account_sent = loop.time()

    async def poll_state(self) -> None:
        """Positions and account figures: sent when they change (and at least every interval); positions of
        the system that closed without a command are reported as CLOSED with their reason."""
        loop = asyncio.get_running_loop()
        interval = self.config.poll_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            async with self.lock:
                positions = await self._terminal.positions()
                await self._outside_closes({p.identifier for p in positions})
                await self._watch_clock({p.symbol for p in positions}, loop.time())
                if loop.time() >= self._specs_due:
                    await self.send_specs({p.symbol for p in positions})
                now = utcnow()
                signature = _signature(positions)
                due = loop.time() - self._positions_sent >= self.config.positions_interval_ms / 1000
                if signature != self._positions_sig or due:
                    offset = self._terminal.clock.offset_s
                    update = tr.position_update(self._account_id, positions, self._book.entries, now, offset)
                    await self._publish(update)
                    self._positions_sig = signature
                    self._positions_sent = loop.time()
                info = await self._terminal.query(self._terminal.mt5.account_info)
                if info is None:
                    continue
                figures = (info.balance, info.equity, info.margin)
                changed = self._account_sig is None or any(
                    abs(a - b) >= 0.01 for a, b in zip(figures, self._account_sig, strict=True)
                )
                due = loop.time() - self._account_sent >= self.config.account_interval_ms / 1000
                if changed or due:
                    await self._publish(tr.account_update(self._account_id, info, now))
                    self._account_sig = figures
                    self._account_sent = loop.time()

    async def _watch_clock(self, symbols: set[str], now: float) -> None:
        """The ticks of the open positions' symbols (PRICE reads its own) tell the server's clock: at every poll
        while its offset is not known, then every ``_CLOCK_INTERVAL_S`` (a daylight saving change)."""
        clock = self._terminal.clock
        if clock.configured_s is not None or (clock.offset_s is not None and now < self._clock_due):
            return
        self._clock_due = now + _CLOCK_INTERVAL_S
        for symbol in sorted(symbols - set(self.config.price_symbols)):
            await self._terminal.tick(symbol)

    async def _outside_closes(self, open_identifiers: set[int]) -> None:
        """The book's positions that are no longer open (closed while the bridge ran, or while it was stopped: the
        book keeps them across restarts) are reported as CLOSED from their closing deals, then forgotten. While
        the history has no closing deal (a terminal whose history lags) the position stays in the book: asked at
        every poll, then, past ``_PATIENCE`` polls, at every ``_PATIENCE``-th."""
        for identifier in [i for i in self._book.entries if i not in open_identifiers]:
            polls = self._missing.get(identifier, 0)
            if polls >= _PATIENCE and polls % _PATIENCE:
                self._missing[identifier] = polls + 1
                continue
            position_id, action_id = self._book.entries[identifier]
            deals = await self._terminal.query(self._terminal.mt5.history_deals_get, position=identifier)
            event = tr.outside_close(self._account_id, identifier, position_id, action_id, deals or (), utcnow())
            if event is None:
                self._missing[identifier] = polls + 1
                if polls + 1 == _PATIENCE:
                    log.warning(
                        "a position of the book is closed and its closing deal is not in the history yet; "
                        "it is looked for less often",
                        ticket=identifier,
                    )
                continue
            log.info("position closed outside the system", ticket=identifier, reason=event.reason)
            await self._publish(event)
            self._missing.pop(identifier, None)
            self._book.forget(identifier)

    async def poll_prices(self) -> None:
        symbols = self.config.price_symbols
        for symbol in symbols:
            if not await self._terminal.query(self._terminal.mt5.symbol_select, symbol, True):
                log.warning("no PRICE for a symbol the terminal does not know", symbol=symbol)
        interval = self.config.price_interval_ms / 1000
        while True:
            for symbol in symbols:
                tick = await self._terminal.tick(symbol)
                if tick is None or self._prices.get(symbol) == (tick.bid, tick.ask):
                    continue
                message = tr.price_tick(self._account_id, symbol, tick, self._terminal.clock.offset_s)
                if message is not None:
                    self._prices[symbol] = (tick.bid, tick.ask)
                    await self._publish(message)
            await asyncio.sleep(interval)


def _signature(positions: tuple[Any, ...]) -> tuple[tuple[int, int, float], ...]:
    """What a change of sends a POSITION_UPDATE: the positions, their volumes and current tickets."""
    return tuple(sorted((int(p.identifier), int(p.ticket), float(p.volume)) for p in positions))
