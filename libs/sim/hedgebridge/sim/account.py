"""One simulated MT5 account (pure code): positions, fills, rejects, slippage, profit and balances.

It behaves as the MQL5 EA does on a real terminal: commands carry an actionId, a command whose actionId was
already executed is answered with the first result again (``alreadyExecuted``) and never runs twice; a
refused attempt is not an execution, so the same actionId may be sent again after a requote.

Faults are injected per command through ``faults`` (a queue of ``SimFault``): a trade server retcode, a
partial fill, an execution whose report is lost, or a command that is never answered.

Each symbol has its trading rules (``SymbolSpec``: volume min/max/step, contract size, digits, trade mode,
filling modes; by default 0.01 to ``max_volume`` in steps of 0.01, trading allowed). The account reports them
(``symbol_specs``) and its trade server keeps to them as MT5's does: a volume off them is 10014, a trade mode
that forbids the order 10017 (disabled), 10042 (long only), 10043 (short only) or 10044 (close only).

Stop loss and take profit (an OPEN's, a MODIFY's) are checked and triggered as MT5 does (``stops``): a stop on
the wrong side of the price or nearer than ``stops_level_points`` is 10016, a MODIFY that changes nothing 10025,
a MODIFY of a position that is gone 10036; a stop the price reaches closes the position (``triggered``).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ClosedEvent,
    ModifiedEvent,
    ModifyCommand,
    OpenCommand,
    OpenedEvent,
    Position,
    PositionUpdate,
    PriceTick,
    SymbolSpec,
    SymbolSpecs,
    retcodes,
)

from . import stops
from .feed import PriceFeed, instrument

_RETCODE_TEXT = {
    retcodes.REQUOTE: "Requote",
    retcodes.REJECT: "Request rejected",
    retcodes.TIMEOUT: "Request canceled by timeout",
    retcodes.ERROR: "Request processing error",
    retcodes.INVALID_VOLUME: "Invalid volume in the request",
    retcodes.MARKET_CLOSED: "Market is closed",
    retcodes.NO_MONEY: "There is not enough money to complete the request",
    retcodes.PRICE_CHANGED: "Prices changed",
    retcodes.PRICE_OFF: "There are no quotes to process the request",
    retcodes.TOO_MANY_REQUESTS: "Too frequent requests",
    retcodes.CONNECTION: "No connection with the trade server",
    retcodes.POSITION_CLOSED: "Position with the specified identifier has already been closed",
    retcodes.TRADE_DISABLED: "Trade is disabled",
    retcodes.LONG_ONLY: "The request is rejected, because only long positions are allowed",
    retcodes.SHORT_ONLY: "The request is rejected, because only short positions are allowed",
    retcodes.CLOSE_ONLY: "The request is rejected, because only position closing is allowed",
    retcodes.INVALID_STOPS: "Invalid stops in the request",
    retcodes.NO_CHANGES: "No changes in request",
}


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
    modify: bool = True  # False: an older EA that does not know MODIFY (answers it with ERROR UNKNOWN_TYPE)


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
    sl: float = 0.0  # 0: none
    tp: float = 0.0


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

    def __post_init__(self) -> None:
        self.balance = self.balance or self.config.balance
        self.next_ticket = self.next_ticket or self.config.first_ticket

    # --- commands ---------------------------------------------------------------------------------------------

    def next_fault(self) -> SimFault | None:
        return self.faults.popleft() if self.faults else None

    def open(self, cmd: OpenCommand, now: datetime, fault: SimFault | None = None) -> OpenedEvent:
        self.received.append(cmd.action_id or "")
        self.specs.setdefault(cmd.symbol, self.spec(cmd.symbol))  # a symbol traded is one the account reports
        if cmd.action_id is not None and cmd.action_id in self.executed:
            previous = self.executed[cmd.action_id]
            if isinstance(previous, OpenedEvent):  # already executed: the first result, never a second fill
                return msgspec.structs.replace(previous, already_executed=True)
        event = self._open(cmd, now, fault)
        if cmd.action_id is not None and event.status == "SUCCESS":
            self.executed[cmd.action_id] = event
        return event

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
            return failed(fault.retcode, _RETCODE_TEXT.get(fault.retcode, "Request failed"))
        refusal = self._refusal(cmd.symbol, cmd.volume, cmd.side)
        if refusal is not None:
            return failed(refusal, _RETCODE_TEXT[refusal])
        if self.rng.random() < self.config.reject_rate:
            return failed(retcodes.REJECT, _RETCODE_TEXT[retcodes.REJECT])
        sl, tp = cmd.stop_loss or 0.0, cmd.take_profit or 0.0
        if stops.refusal(cmd.side, sl, tp, *self.feed.quote(cmd.symbol), self._stops_level(cmd.symbol)):
            return failed(retcodes.INVALID_STOPS, _RETCODE_TEXT[retcodes.INVALID_STOPS])
        volume = cmd.volume
        partial = fault is not None and fault.fill_ratio is not None
        if fault is not None and fault.fill_ratio is not None:
            volume = round(cmd.volume * fault.fill_ratio, 2)
        bid, ask = self.feed.quote(cmd.symbol)
        inst = instrument(cmd.symbol)
        slip = self.rng.randint(0, self.config.slippage_points) * inst.point if self.config.slippage_points else 0.0
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
        self.received.append(cmd.action_id or "")
        if cmd.action_id is not None and cmd.action_id in self.executed:
            previous = self.executed[cmd.action_id]
            if isinstance(previous, ClosedEvent):
                return msgspec.structs.replace(previous, already_executed=True)
        event = self._close(cmd, now, fault)
        if cmd.action_id is not None and event.status == "SUCCESS":
            self.executed[cmd.action_id] = event
        return event

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
                error_message=_RETCODE_TEXT.get(code, "Request failed"),
            )

        if fault is not None and fault.retcode is not None:
            return failed(fault.retcode)
        position = self._find(cmd)
        if position is None:
            return failed(retcodes.POSITION_CLOSED)
        refusal = self._refusal(position.symbol, cmd.volume, None)
        if refusal is not None:
            return failed(refusal)
        if cmd.volume is not None and cmd.volume > position.volume + 1e-9:
            return failed(retcodes.INVALID_CLOSE_VOLUME)
        bid, ask = self.feed.quote(position.symbol)
        inst = instrument(position.symbol)
        slip = self.rng.randint(0, self.config.slippage_points) * inst.point if self.config.slippage_points else 0.0
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
        profit = self._profit(closed, price)
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
        self.received.append(cmd.action_id or "")
        previous = self.executed.get(cmd.action_id or "")
        if isinstance(previous, ModifiedEvent):
            return msgspec.structs.replace(previous, already_executed=True)
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
                error_message=None if code is None else _RETCODE_TEXT.get(code, "Request failed"),
            )

        if fault is not None and fault.retcode is not None:
            return answer(fault.retcode)
        if position is None:
            return answer(retcodes.POSITION_CLOSED)
        if self.spec(position.symbol).trade_mode == "DISABLED":
            return answer(retcodes.TRADE_DISABLED)
        sl = position.sl if cmd.stop_loss is None else cmd.stop_loss
        tp = position.tp if cmd.take_profit is None else cmd.take_profit
        if (sl, tp) == (position.sl, position.tp):
            return answer(retcodes.NO_CHANGES)
        if stops.refusal(position.side, sl, tp, *self.feed.quote(position.symbol), self._stops_level(position.symbol)):
            return answer(retcodes.INVALID_STOPS)
        position.sl, position.tp = sl, tp
        event = answer(None)
        if cmd.action_id is not None:
            self.executed[cmd.action_id] = event
        return event

    def triggered(self, now: datetime) -> list[ClosedEvent]:
        """Close the positions whose stop the price has reached, as the trade server does (CLOSED with the
        reason ``stop_loss`` or ``take_profit``)."""
        events = []
        for position in sorted(self.positions.values(), key=lambda p: p.ticket):
            reason = stops.hit(position.side, position.sl, position.tp, *self.feed.quote(position.symbol))
            if reason is None:
                continue
            price = stops.closing_price(position.side, *self.feed.quote(position.symbol))
            profit = self._profit(position, price)
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

    def _stops_level(self, symbol: str) -> float:
        return self.config.stops_level_points * instrument(symbol).point

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

    def _refusal(self, symbol: str, volume: float | None, opening: str | None) -> int | None:
        """The retcode the trade server refuses an order with under the symbol's rules (None: it may go)."""
        rules = self.spec(symbol)
        mode = rules.trade_mode
        if mode == "DISABLED":
            return retcodes.TRADE_DISABLED
        if opening is not None and mode == "CLOSE_ONLY":
            return retcodes.CLOSE_ONLY
        if (opening, mode) in (("SELL", "LONG_ONLY"), ("BUY", "SHORT_ONLY")):
            return retcodes.LONG_ONLY if mode == "LONG_ONLY" else retcodes.SHORT_ONLY
        if volume is None:
            return None
        steps = volume / rules.volume_step
        if volume < rules.volume_min - 1e-9 or volume > rules.volume_max + 1e-9 or abs(steps - round(steps)) > 1e-7:
            return retcodes.INVALID_VOLUME
        return None

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

    def position_update(self, now: datetime, sync_id: str | None = None) -> PositionUpdate:
        return PositionUpdate(
            timestamp=now,
            account_id=self.account_id,
            sync_id=sync_id,
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
                    stop_loss=p.sl or None,
                    take_profit=p.tp or None,
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
