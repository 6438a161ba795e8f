"""One simulated MT5 account (pure code): positions, fills, rejects, slippage, profit and balances.

It behaves as the MQL5 EA does on a real terminal: commands carry an actionId, a command whose actionId was
already executed is answered with the first result again (``alreadyExecuted``) and never runs twice; a
refused attempt is not an execution, so the same actionId may be sent again after a requote.

Faults are injected per command through ``faults`` (a queue of ``SimFault``): a trade server retcode, a
partial fill, an execution whose report is lost, or a command that is never answered.

Each symbol has its trading rules (``SymbolSpec``: volume min/max/step, contract size, digits, trade mode,
filling modes; by default 0.01 to ``max_volume`` in steps of 0.01, trading allowed), which the account reports
(``symbol_specs``). Its trade server checks every command as MT5's does, with MT5's retcodes (``checks``: the
market's session, trade mode, volume, stops and freeze levels, margin); by default every market is open
(``set_market``), the freeze level is 0 and the margin is not checked (``SimConfig.freeze_level_points``,
``check_margin``). A stop the price reaches closes the position (``triggered``, ``stops``). What the account
reports (profit, margin, ACCOUNT_UPDATE, POSITION_UPDATE, PRICE) is ``book``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import msgspec

from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ClosedEvent,
    ModifiedEvent,
    ModifyCommand,
    OpenCommand,
    OpenedEvent,
    PositionUpdate,
    PriceTick,
    SymbolSpec,
    SymbolSpecs,
    retcodes,
)

from . import book, checks, stops
from .book import SimPosition
from .feed import PriceFeed, instrument

__all__ = ["SimAccount", "SimConfig", "SimFault", "SimPosition"]

_Report = TypeVar("_Report", OpenedEvent, ClosedEvent, ModifiedEvent)


@dataclass(frozen=True, slots=True)
class SimFault:
    """What happens to the next command instead of a clean fill.

    - ``retcode``: the trade server answers with this code (the command does not execute).
    - ``fill_ratio``: an OPEN fills only this share of its volume (retcode 10010, DONE_PARTIAL).
    - ``report`` false: the command executes but its OPENED/CLOSED never leaves the terminal.
    - ``execute`` false (with ``report`` false): the command is received and never answered.
    """

    retcode: int | None = None
    fill_ratio: float | None = None
    report: bool = True
    execute: bool = True


@dataclass(frozen=True, slots=True)
class SimConfig:
    symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
    fill_latency_ms: float = 20.0  # time from command to fill
    slippage_points: int = 0  # fills move against the trader by up to this many points
    reject_rate: float = 0.0  # probability that an OPEN is rejected (retcode 10006)
    tick_interval_ms: int = 250  # PRICE ticks per symbol; 0 turns the feed off
    account_update_interval_ms: int = 2000
    balance: float = 10_000.0
    leverage: int = 100
    max_volume: float = 100.0
    first_ticket: int = 50_000_000
    disconnect_rate: float = 0.0  # chance per second that the terminal drops its connection (then reconnects)
    stops_level_points: int = 20  # SYMBOL_TRADE_STOPS_LEVEL: the nearest a stop may be to the price, in points
    freeze_level_points: int = 0  # SYMBOL_TRADE_FREEZE_LEVEL: stops this near the price may not change (10029)
    check_margin: bool = False  # True: an OPEN needing more margin than is free is refused (10019 NO_MONEY)
    modify: bool = True  # False: an older EA that does not know MODIFY (answers it with ERROR UNKNOWN_TYPE)


@dataclass
class SimAccount:
    account_id: str
    config: SimConfig
    feed: PriceFeed
    rng: random.Random
    balance: float = 0.0
    positions: dict[int, SimPosition] = field(default_factory=dict)
    executed: dict[str, OpenedEvent | ClosedEvent | ModifiedEvent] = field(default_factory=dict)
    next_ticket: int = 0
    faults: deque[SimFault] = field(default_factory=deque)
    received: list[str] = field(default_factory=list)  # actionIds of every command received, repeats included
    specs: dict[str, SymbolSpec] = field(default_factory=dict)  # rules changed from the defaults, or traded
    closed_markets: set[str] = field(default_factory=set)  # symbols whose trading session is closed now

    def __post_init__(self) -> None:
        self.balance = self.balance or self.config.balance
        self.next_ticket = self.next_ticket or self.config.first_ticket

    # --- commands ---------------------------------------------------------------------------------------------

    def next_fault(self) -> SimFault | None:
        return self.faults.popleft() if self.faults else None

    def _once(self, action_id: str | None, kind: type[_Report], run: Callable[[], _Report]) -> _Report:
        """A command whose actionId was already executed is answered with the first result again (never a
        second execution); a refused one may be sent again."""
        self.received.append(action_id or "")
        previous = self.executed.get(action_id or "")
        if isinstance(previous, kind):
            return msgspec.structs.replace(previous, already_executed=True)
        event = run()
        if action_id is not None and event.status == "SUCCESS":
            self.executed[action_id] = event
        return event

    def open(self, cmd: OpenCommand, now: datetime, fault: SimFault | None = None) -> OpenedEvent:
        self.specs.setdefault(cmd.symbol, self.spec(cmd.symbol))  # a symbol traded is one the account reports
        return self._once(cmd.action_id, OpenedEvent, lambda: self._open(cmd, now, fault))

    def _open(self, cmd: OpenCommand, now: datetime, fault: SimFault | None) -> OpenedEvent:
        def failed(code: int, message: str) -> OpenedEvent:
            return OpenedEvent(
                timestamp=now,
                account_id=self.account_id,
                position_id=cmd.position_id,
                action_id=cmd.action_id,
                status="FAILED",
                error_code=code,
                error_message=message,
            )

        if fault is not None and fault.retcode is not None:
            return failed(fault.retcode, checks.text(fault.retcode))
        refusal = self._open_refusal(cmd)
        if refusal is not None:
            return failed(refusal, checks.text(refusal))
        if self.rng.random() < self.config.reject_rate:
            return failed(retcodes.REJECT, checks.text(retcodes.REJECT))
        sl, tp = cmd.stop_loss or 0.0, cmd.take_profit or 0.0
        volume = cmd.volume
        partial = fault is not None and fault.fill_ratio is not None
        if fault is not None and fault.fill_ratio is not None:
            volume = round(cmd.volume * fault.fill_ratio, 2)
        bid, ask = self.feed.quote(cmd.symbol)
        slip = self._slip(cmd.symbol)
        price = ask + slip if cmd.side == "BUY" else bid - slip
        ticket = self.next_ticket
        self.next_ticket += 1
        self.positions[ticket] = SimPosition(
            ticket, cmd.position_id, cmd.action_id, cmd.symbol, cmd.side, volume, price, now, sl, tp
        )
        return OpenedEvent(
            timestamp=now,
            account_id=self.account_id,
            position_id=cmd.position_id,
            action_id=cmd.action_id,
            mt_ticket=str(ticket),
            price=price,
            volume=volume,
            status="SUCCESS",
            error_code=retcodes.DONE_PARTIAL if partial else None,
            symbol=cmd.symbol,
            side=cmd.side,
            stop_loss=sl or None,
            take_profit=tp or None,
        )

    def open_outside(self, symbol: str, side: str, volume: float, now: datetime) -> int:
        """A position opened on the terminal by hand (no actionId): what reconciliation calls an orphan."""
        bid, ask = self.feed.quote(symbol)
        ticket = self.next_ticket
        self.next_ticket += 1
        price = ask if side == "BUY" else bid
        self.positions[ticket] = SimPosition(ticket, f"mt-{ticket}", None, symbol, side, volume, price, now)
        return ticket

    def close(self, cmd: CloseCommand, now: datetime, fault: SimFault | None = None) -> ClosedEvent:
        return self._once(cmd.action_id, ClosedEvent, lambda: self._close(cmd, now, fault))

    def _find(self, cmd: CloseCommand | ModifyCommand) -> SimPosition | None:
        if cmd.mt_ticket is not None:
            return self.positions.get(int(cmd.mt_ticket)) if cmd.mt_ticket.isdigit() else None
        return next((p for p in self.positions.values() if p.position_id == cmd.position_id), None)

    def _close(self, cmd: CloseCommand, now: datetime, fault: SimFault | None) -> ClosedEvent:
        def failed(code: int) -> ClosedEvent:
            return ClosedEvent(
                timestamp=now,
                account_id=self.account_id,
                position_id=cmd.position_id,
                action_id=cmd.action_id,
                mt_ticket=cmd.mt_ticket,
                status="FAILED",
                error_code=code,
                error_message=checks.text(code),
            )

        if fault is not None and fault.retcode is not None:
            return failed(fault.retcode)
        position = self._find(cmd)
        if position is None:
            return failed(retcodes.POSITION_CLOSED)
        open_now = position.symbol not in self.closed_markets
        refusal = checks.close_refusal(self.spec(position.symbol), cmd.volume, position.volume, market_open=open_now)
        if refusal is not None:
            return failed(refusal)
        bid, ask = self.feed.quote(position.symbol)
        slip = self._slip(position.symbol)
        price = bid - slip if position.side == "BUY" else ask + slip
        volume = position.volume if cmd.volume is None else cmd.volume
        remaining = round(position.volume - volume, 8)
        closed = SimPosition(
            position.ticket,
            position.position_id,
            position.action_id,
            position.symbol,
            position.side,
            volume,
            position.open_price,
            position.open_time,
        )
        profit = book.profit(closed, price)
        self.balance = round(self.balance + profit, 2)
        if remaining > 1e-9:
            position.volume = remaining
        else:
            del self.positions[position.ticket]
        return ClosedEvent(
            timestamp=now,
            account_id=self.account_id,
            position_id=cmd.position_id,
            action_id=cmd.action_id,
            mt_ticket=str(position.ticket),
            price=price,
            profit=profit,
            volume=volume,
            remaining_volume=remaining if remaining > 1e-9 else 0.0,
            status="SUCCESS",
        )

    def modify(self, cmd: ModifyCommand, now: datetime, fault: SimFault | None = None) -> ModifiedEvent:
        """TRADE_ACTION_SLTP: set the position's stops (absent: kept, 0: removed)."""
        return self._once(cmd.action_id, ModifiedEvent, lambda: self._modify(cmd, now, fault))

    def _modify(self, cmd: ModifyCommand, now: datetime, fault: SimFault | None) -> ModifiedEvent:
        position = self._find(cmd)

        def answer(code: int | None) -> ModifiedEvent:
            return ModifiedEvent(
                timestamp=now,
                account_id=self.account_id,
                position_id=cmd.position_id,
                action_id=cmd.action_id,
                mt_ticket=str(position.ticket) if position is not None else cmd.mt_ticket,
                stop_loss=position.sl if position is not None else None,
                take_profit=position.tp if position is not None else None,
                status="SUCCESS" if code is None else "FAILED",
                error_code=code,
                error_message=None if code is None else checks.text(code),
            )

        if fault is not None and fault.retcode is not None:
            return answer(fault.retcode)
        if position is None:
            return answer(retcodes.POSITION_CLOSED)
        sl = position.sl if cmd.stop_loss is None else cmd.stop_loss
        tp = position.tp if cmd.take_profit is None else cmd.take_profit
        refusal = checks.modify_refusal(
            self.spec(position.symbol),
            position.side,
            (sl, tp),
            (position.sl, position.tp),
            market_open=position.symbol not in self.closed_markets,
            quote=self.feed.quote(position.symbol),
            stops_level=self._points(position.symbol, self.config.stops_level_points),
            freeze_level=self._points(position.symbol, self.config.freeze_level_points),
        )
        if refusal is not None:
            return answer(refusal)
        position.sl, position.tp = sl, tp
        return answer(None)

    def triggered(self, now: datetime) -> list[ClosedEvent]:
        """Close the positions whose stop the price has reached, as the trade server does (CLOSED with the
        reason ``stop_loss`` or ``take_profit``)."""
        events = []
        for position in sorted(self.positions.values(), key=lambda p: p.ticket):
            reason = stops.hit(position.side, position.sl, position.tp, *self.feed.quote(position.symbol))
            if reason is None:
                continue
            price = stops.closing_price(position.side, *self.feed.quote(position.symbol))
            profit = book.profit(position, price)
            self.balance = round(self.balance + profit, 2)
            del self.positions[position.ticket]
            events.append(
                ClosedEvent(
                    timestamp=now,
                    account_id=self.account_id,
                    position_id=position.position_id,
                    action_id=position.action_id,
                    mt_ticket=str(position.ticket),
                    price=price,
                    profit=profit,
                    volume=position.volume,
                    remaining_volume=0.0,
                    status="SUCCESS",
                    reason=reason,
                )
            )
        return events

    def _slip(self, symbol: str) -> float:
        """How far a fill moves against the trader: up to ``slippage_points``."""
        slippage = self.config.slippage_points
        return self.rng.randint(0, slippage) * instrument(symbol).point if slippage else 0.0

    def _points(self, symbol: str, points: int) -> float:
        return points * instrument(symbol).point

    def _open_refusal(self, cmd: OpenCommand) -> int | None:
        """The retcode the trade server's checks refuse ``cmd`` with (None: it may go)."""
        quote = self.feed.quote(cmd.symbol)
        free = None
        if self.config.check_margin:
            free = book.equity(self.balance, self.positions.values(), self.feed) - self.margin()
        price = quote[1] if cmd.side == "BUY" else quote[0]
        return checks.open_refusal(
            self.spec(cmd.symbol),
            cmd.side,
            cmd.volume,
            market_open=cmd.symbol not in self.closed_markets,
            quote=quote,
            sl=cmd.stop_loss or 0.0,
            tp=cmd.take_profit or 0.0,
            stops_level=self._points(cmd.symbol, self.config.stops_level_points),
            required_margin=book.margin_of(cmd.symbol, cmd.volume, price, self.config.leverage),
            free_margin=free,
        )

    def set_market(self, symbol: str, is_open: bool) -> None:
        """Open or close the trading session of ``symbol``: while it is closed every request on it is 10018."""
        (self.closed_markets.discard if is_open else self.closed_markets.add)(symbol)

    # --- symbols' rules ----------------------------------------------------------------------------------------

    def spec(self, symbol: str) -> SymbolSpec:
        """The rules of ``symbol`` on this account's trade server."""
        known = self.specs.get(symbol)
        if known is not None:
            return known
        inst = instrument(symbol)
        return SymbolSpec(
            symbol=symbol,
            volume_min=0.01,
            volume_max=self.config.max_volume,
            volume_step=0.01,
            contract_size=inst.contract_size,
            digits=len(f"{inst.point:.10f}".rstrip("0").split(".")[1]),
            trade_mode="FULL",
            filling_modes=["FOK", "IOC"],
        )

    def set_spec(self, symbol: str, **rules: object) -> SymbolSpec:
        """Change the rules of ``symbol`` (``volume_step=0.1``, ``trade_mode="CLOSE_ONLY"``…), as a broker does."""
        self.specs[symbol] = msgspec.structs.replace(self.spec(symbol), **rules)
        return self.specs[symbol]

    def symbols(self) -> list[str]:
        """The symbols the account reports rules for: the ones it quotes, trades and holds."""
        held = {p.symbol for p in self.positions.values()}
        return sorted(set(self.config.symbols) | set(self.specs) | held)

    def symbol_specs(self, now: datetime, symbols: list[str] | None = None) -> SymbolSpecs:
        """SYMBOL_SPECS for ``symbols`` (default: every symbol the account quotes, trades or holds)."""
        names = self.symbols() if symbols is None else symbols
        return SymbolSpecs(timestamp=now, account_id=self.account_id, symbols=[self.spec(s) for s in names])

    # --- reports ----------------------------------------------------------------------------------------------

    def margin(self) -> float:
        return book.margin(self.positions.values(), self.config.leverage)

    def account_update(self, now: datetime) -> AccountUpdate:
        positions = list(self.positions.values())
        return book.account_update(self.account_id, self.balance, positions, self.feed, self.config.leverage, now)

    def position_update(self, now: datetime, sync_id: str | None = None) -> PositionUpdate:
        return book.position_update(self.account_id, self.positions.values(), self.feed, now, sync_id)

    def ticks(self, now: datetime) -> list[PriceTick]:
        return book.ticks(self.account_id, self.config.symbols, self.feed, now)
