"""One simulated MT5 account (pure code): positions, fills, rejects, slippage, profit and balances.

It behaves as the MQL5 EA does on a real terminal: commands carry an actionId, a command whose actionId was
already executed is answered with the first result again ("already executed") and never runs twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ClosedEvent,
    OpenCommand,
    OpenedEvent,
    Position,
    PositionUpdate,
    PriceTick,
)

from .feed import PriceFeed, instrument

# MT5 trade server return codes used by the simulator.
TRADE_RETCODE_REJECT = 10006
TRADE_RETCODE_POSITION_CLOSED = 10036
TRADE_RETCODE_INVALID_VOLUME = 10014


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


@dataclass(slots=True)
class SimPosition:
    ticket: int
    position_id: str
    action_id: str | None
    symbol: str
    side: str
    volume: float
    open_price: float
    open_time: datetime


@dataclass
class SimAccount:
    account_id: str
    config: SimConfig
    feed: PriceFeed
    rng: random.Random
    balance: float = 0.0
    positions: dict[int, SimPosition] = field(default_factory=dict)
    executed: dict[str, OpenedEvent | ClosedEvent] = field(default_factory=dict)
    next_ticket: int = 0

    def __post_init__(self) -> None:
        self.balance = self.balance or self.config.balance
        self.next_ticket = self.next_ticket or self.config.first_ticket

    # --- commands ---------------------------------------------------------------------------------------------

    def open(self, cmd: OpenCommand, now: datetime) -> OpenedEvent:
        if cmd.action_id is not None and cmd.action_id in self.executed:
            previous = self.executed[cmd.action_id]
            if isinstance(previous, OpenedEvent):
                return previous  # already executed: report the first result, never execute twice
        event = self._open(cmd, now)
        if cmd.action_id is not None:
            self.executed[cmd.action_id] = event
        return event

    def _open(self, cmd: OpenCommand, now: datetime) -> OpenedEvent:
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

        if cmd.volume > self.config.max_volume:
            return failed(TRADE_RETCODE_INVALID_VOLUME, "Invalid volume in the request")
        if self.rng.random() < self.config.reject_rate:
            return failed(TRADE_RETCODE_REJECT, "Request rejected")
        bid, ask = self.feed.quote(cmd.symbol)
        inst = instrument(cmd.symbol)
        slip = self.rng.randint(0, self.config.slippage_points) * inst.point if self.config.slippage_points else 0.0
        price = ask + slip if cmd.side == "BUY" else bid - slip
        ticket = self.next_ticket
        self.next_ticket += 1
        self.positions[ticket] = SimPosition(
            ticket, cmd.position_id, cmd.action_id, cmd.symbol, cmd.side, cmd.volume, price, now
        )
        return OpenedEvent(
            timestamp=now,
            account_id=self.account_id,
            position_id=cmd.position_id,
            action_id=cmd.action_id,
            mt_ticket=str(ticket),
            price=price,
            volume=cmd.volume,
            status="SUCCESS",
        )

    def close(self, cmd: CloseCommand, now: datetime) -> ClosedEvent:
        if cmd.action_id is not None and cmd.action_id in self.executed:
            previous = self.executed[cmd.action_id]
            if isinstance(previous, ClosedEvent):
                return previous
        event = self._close(cmd, now)
        if cmd.action_id is not None:
            self.executed[cmd.action_id] = event
        return event

    def _find(self, cmd: CloseCommand) -> SimPosition | None:
        if cmd.mt_ticket is not None:
            return self.positions.get(int(cmd.mt_ticket)) if cmd.mt_ticket.isdigit() else None
        return next((p for p in self.positions.values() if p.position_id == cmd.position_id), None)

    def _close(self, cmd: CloseCommand, now: datetime) -> ClosedEvent:
        position = self._find(cmd)
        if position is None:
            return ClosedEvent(
                timestamp=now,
                account_id=self.account_id,
                position_id=cmd.position_id,
                action_id=cmd.action_id,
                mt_ticket=cmd.mt_ticket,
                status="FAILED",
                error_code=TRADE_RETCODE_POSITION_CLOSED,
                error_message="Position not found or already closed",
            )
        bid, ask = self.feed.quote(position.symbol)
        inst = instrument(position.symbol)
        slip = self.rng.randint(0, self.config.slippage_points) * inst.point if self.config.slippage_points else 0.0
        price = bid - slip if position.side == "BUY" else ask + slip
        profit = self._profit(position, price)
        self.balance = round(self.balance + profit, 2)
        del self.positions[position.ticket]
        return ClosedEvent(
            timestamp=now,
            account_id=self.account_id,
            position_id=cmd.position_id,
            action_id=cmd.action_id,
            mt_ticket=str(position.ticket),
            price=price,
            profit=profit,
            status="SUCCESS",
        )

    # --- reports ----------------------------------------------------------------------------------------------

    def _profit(self, position: SimPosition, price: float) -> float:
        inst = instrument(position.symbol)
        direction = 1 if position.side == "BUY" else -1
        raw = (price - position.open_price) * direction * position.volume * inst.contract_size
        if not inst.quote_in_account_currency:
            raw /= price
        return round(raw, 2)

    def _mark(self, position: SimPosition) -> float:
        bid, ask = self.feed.quote(position.symbol)
        return bid if position.side == "BUY" else ask

    def margin(self) -> float:
        total = 0.0
        for p in self.positions.values():
            inst = instrument(p.symbol)
            notional = p.volume * inst.contract_size * (p.open_price if inst.quote_in_account_currency else 1.0)
            total += notional / self.config.leverage
        return round(total, 2)

    def account_update(self, now: datetime) -> AccountUpdate:
        floating = sum(self._profit(p, self._mark(p)) for p in self.positions.values())
        equity = round(self.balance + floating, 2)
        margin = self.margin()
        return AccountUpdate(
            timestamp=now,
            account_id=self.account_id,
            balance=self.balance,
            equity=equity,
            margin=margin,
            free_margin=round(equity - margin, 2),
            margin_level=round(equity / margin * 100, 2) if margin > 0 else None,
            currency="USD",
        )

    def position_update(self, now: datetime) -> PositionUpdate:
        return PositionUpdate(
            timestamp=now,
            account_id=self.account_id,
            positions=[
                Position(
                    mt_ticket=str(p.ticket),
                    position_id=p.position_id,
                    action_id=p.action_id,
                    symbol=p.symbol,
                    side="BUY" if p.side == "BUY" else "SELL",
                    volume=p.volume,
                    open_price=p.open_price,
                    current_price=self._mark(p),
                    profit=self._profit(p, self._mark(p)),
                    open_time=p.open_time,
                )
                for p in sorted(self.positions.values(), key=lambda p: p.ticket)
            ],
        )

    def ticks(self, now: datetime) -> list[PriceTick]:
        ticks = []
        for symbol in self.config.symbols:
            bid, ask = self.feed.quote(symbol)
            ticks.append(PriceTick(account_id=self.account_id, symbol=symbol, bid=bid, ask=ask, time=now))
        return ticks
