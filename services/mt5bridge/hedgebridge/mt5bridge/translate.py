"""The EA protocol to and from the ``MetaTrader5`` package's data (pure code, no I/O).

- the order comment that carries an actionId, exactly as the EA writes it (``mql5/README.md``)::

      "hb" + tag(actionId) + tag(positionId)        26 characters (MT5 keeps 31)
      tag(s) = first 12 characters of base64url(SHA-256(UTF-8 of s)); "------------" when s is empty

  so the EA and the bridge recognise each other's orders on one account;
- OPEN / CLOSE commands to ``order_send`` request dicts (MqlTradeRequest fields);
- ``order_send`` results and deals to OPENED / CLOSED reports, with the EA's retcode rules;
- earlier executions of an actionId found among positions and deals (the "already executed" check);
- positions, account figures and ticks to POSITION_UPDATE, ACCOUNT_UPDATE and PRICE.

The package's objects are named tuples; this module reads them through the read-only protocols below, so
the package's own types and the test double both fit. The constant values are the package's own
(``MetaTrader5`` 5.0.6231, ``__init__.py``); ``tests/mt5`` checks them against the wheel.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ClosedEvent,
    OpenCommand,
    OpenedEvent,
    Position,
    PositionUpdate,
    PriceTick,
    retcodes,
    type_name,
)

# --- the package's constants (MetaTrader5 5.0.6231) ---------------------------------------------------------

TRADE_ACTION_DEAL = 1
ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
ORDER_TIME_GTC = 0
POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1
DEAL_ENTRY_IN = 0
DEAL_ENTRY_OUT = 1
DEAL_ENTRY_INOUT = 2
DEAL_ENTRY_OUT_BY = 3
DEAL_REASON_CLIENT = 0
DEAL_REASON_MOBILE = 1
DEAL_REASON_WEB = 2
DEAL_REASON_EXPERT = 3
DEAL_REASON_SL = 4
DEAL_REASON_TP = 5
DEAL_REASON_SO = 6
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
# SymbolInfo.filling_mode is a bit set of MQL5's SYMBOL_FILLING_* flags, which the package does not define
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2
# last_error() codes of the package's inter-process link to the terminal: the terminal is gone
RES_E_INTERNAL_FAIL_FIRST = -10005
RES_E_INTERNAL_FAIL_LAST = -10000

COMMENT_PREFIX = "hb"
TAG_LENGTH = 12
NO_TAG = "-" * TAG_LENGTH
COMMENT_LENGTH = len(COMMENT_PREFIX) + 2 * TAG_LENGTH
_WIRE_SYMBOL = re.compile(r"^[A-Za-z0-9._#+-]{1,32}$")

# --- what the package returns, as read here ------------------------------------------------------------------


class TradePositionLike(Protocol):
    @property
    def ticket(self) -> int: ...
    @property
    def time_msc(self) -> int: ...
    @property
    def type(self) -> int: ...
    @property
    def magic(self) -> int: ...
    @property
    def volume(self) -> float: ...
    @property
    def price_open(self) -> float: ...
    @property
    def price_current(self) -> float: ...
    @property
    def profit(self) -> float: ...
    @property
    def symbol(self) -> str: ...
    @property
    def comment(self) -> str: ...


class TradeDealLike(Protocol):
    @property
    def ticket(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def entry(self) -> int: ...
    @property
    def magic(self) -> int: ...
    @property
    def position_id(self) -> int: ...
    @property
    def reason(self) -> int: ...
    @property
    def volume(self) -> float: ...
    @property
    def price(self) -> float: ...
    @property
    def commission(self) -> float: ...
    @property
    def swap(self) -> float: ...
    @property
    def profit(self) -> float: ...
    @property
    def symbol(self) -> str: ...
    @property
    def comment(self) -> str: ...


class OrderSendResultLike(Protocol):
    @property
    def retcode(self) -> int: ...
    @property
    def deal(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def volume(self) -> float: ...
    @property
    def price(self) -> float: ...
    @property
    def comment(self) -> str: ...


class AccountInfoLike(Protocol):
    @property
    def balance(self) -> float: ...
    @property
    def equity(self) -> float: ...
    @property
    def margin(self) -> float: ...
    @property
    def margin_free(self) -> float: ...
    @property
    def margin_level(self) -> float: ...
    @property
    def currency(self) -> str: ...


class TickLike(Protocol):
    @property
    def time_msc(self) -> int: ...
    @property
    def bid(self) -> float: ...
    @property
    def ask(self) -> float: ...


# --- the order comment --------------------------------------------------------------------------------------


def tag(text: str) -> str:
    """The first 12 characters of base64url(SHA-256(UTF-8 of ``text``)); ``NO_TAG`` for an empty text."""
    if not text:
        return NO_TAG
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())[:TAG_LENGTH].decode()


def order_comment(action_id: str | None, position_id: str) -> str:
    """The comment of every order the bridge sends (the EA's format)."""
    return COMMENT_PREFIX + tag(action_id or "") + tag(position_id)


def is_own_comment(comment: str) -> bool:
    """Whether ``comment`` was written by ``order_comment`` (by the bridge or by the EA)."""
    return len(comment) >= COMMENT_LENGTH and comment.startswith(COMMENT_PREFIX)


def position_tag(comment: str) -> str | None:
    """The positionId tag inside an own comment, None for any other comment."""
    if not is_own_comment(comment):
        return None
    start = len(COMMENT_PREFIX) + TAG_LENGTH
    return comment[start : start + TAG_LENGTH]


def carries_action(comment: str, action_id: str) -> bool:
    """Whether ``comment`` belongs to an order sent for ``action_id``."""
    return bool(action_id) and comment.startswith(COMMENT_PREFIX + tag(action_id))


# --- outcomes -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an OPEN or CLOSE came to (the EA's SHbOrderResult).

    ``answered`` false: the trade server placed the order and no deal is known yet; nothing is reported
    (the executor reconciles). ``retcode`` is the trade server's code on failure, 10010 for a partial fill,
    None for a clean fill."""

    success: bool
    answered: bool = True
    already_executed: bool = False
    ticket: int = 0
    price: float = 0.0
    volume: float = 0.0
    remaining: float = 0.0
    profit: float = 0.0
    retcode: int | None = None
    message: str = ""


def failed(retcode: int | None, message: str) -> Outcome:
    return Outcome(success=False, retcode=retcode, message=message)


def describe(result: OrderSendResultLike) -> str:
    """The trade server's answer as the EA words it: its comment and the retcode."""
    text = result.comment or retcodes.name(result.retcode).replace("_", " ").lower()
    return f"{text} (retcode {result.retcode})"


def is_fill(retcode: int) -> bool:
    return retcode in (retcodes.DONE, retcodes.DONE_PARTIAL)


def fill_outcome(
    result: OrderSendResultLike,
    requested_volume: float,
    deal: TradeDealLike | None,
    *,
    closing: bool,
    position_ticket: int = 0,
    remaining: float = 0.0,
    profit_estimate: float = 0.0,
) -> Outcome:
    """A filled ``order_send`` result (DONE or DONE_PARTIAL), completed from its deal when the history has it:
    the position ticket, the price, the volume and, for a close, the profit (profit + swap + commission; the
    share of the position's floating profit while the deal is not in the history yet)."""
    # a position's ticket is the ticket of the order that opened it
    ticket = deal.position_id if deal is not None and deal.position_id else position_ticket or result.order
    price = result.price if result.price > 0 else (deal.price if deal is not None else 0.0)
    volume = result.volume if result.volume > 0 else (deal.volume if deal is not None else requested_volume)
    profit = deal.profit + deal.swap + deal.commission if deal is not None else profit_estimate
    partial = result.retcode == retcodes.DONE_PARTIAL
    message = ""
    if partial:
        verb = "closed" if closing else "filled"
        message = f"partially {verb}: {volume:g} of {requested_volume:g} lots"
    return Outcome(
        success=True,
        ticket=ticket,
        price=price,
        volume=volume,
        remaining=remaining,
        profit=round(profit, 2),
        retcode=retcodes.DONE_PARTIAL if partial else None,
        message=message,
    )


def refused_outcome(result: OrderSendResultLike) -> Outcome:
    return failed(result.retcode, describe(result))


def find_open(
    action_id: str, magic: int, positions: Iterable[TradePositionLike], deals: Iterable[TradeDealLike]
) -> Outcome | None:
    """An earlier execution of the OPEN ``action_id``: an open position with its comment, else its opening
    deal in the history. Refused attempts leave neither, so they are not executions."""
    if not action_id:
        return None
    for position in positions:
        if position.magic == magic and carries_action(position.comment, action_id):
            return Outcome(
                success=True,
                already_executed=True,
                ticket=position.ticket,
                price=position.price_open,
                volume=position.volume,
            )
    for deal in deals:
        if deal.entry == DEAL_ENTRY_IN and deal.magic == magic and carries_action(deal.comment, action_id):
            return Outcome(
                success=True, already_executed=True, ticket=deal.position_id, price=deal.price, volume=deal.volume
            )
    return None


def find_close(
    action_id: str, magic: int, deals: Iterable[TradeDealLike], open_volume: Mapping[int, float]
) -> Outcome | None:
    """An earlier execution of the CLOSE ``action_id``: its closing deals in the history (volume-weighted
    price, summed profit). ``open_volume`` is what is left open of each position (absent: closed)."""
    if not action_id:
        return None
    volume = notional = profit = 0.0
    position = 0
    for deal in deals:
        if deal.entry not in (DEAL_ENTRY_OUT, DEAL_ENTRY_OUT_BY) or deal.magic != magic:
            continue
        if not carries_action(deal.comment, action_id):
            continue
        volume += deal.volume
        notional += deal.volume * deal.price
        profit += deal.profit + deal.swap + deal.commission
        position = deal.position_id
    if volume <= 0:
        return None
    return Outcome(
        success=True,
        already_executed=True,
        ticket=position,
        price=notional / volume,
        volume=round(volume, 8),
        remaining=open_volume.get(position, 0.0),
        profit=round(profit, 2),
    )


# --- requests -----------------------------------------------------------------------------------------------


def filling_for(symbol_filling_mode: int) -> int:
    """The order filling the symbol allows: FOK, else IOC, else RETURN (as the EA chooses)."""
    if symbol_filling_mode & SYMBOL_FILLING_FOK:
        return ORDER_FILLING_FOK
    if symbol_filling_mode & SYMBOL_FILLING_IOC:
        return ORDER_FILLING_IOC
    return ORDER_FILLING_RETURN


def volume_digits(step: float) -> int:
    digits = 0
    value = step
    while digits < 8 and abs(value - round(value)) > 1e-9:
        value *= 10
        digits += 1
    return digits


def volume_problem(symbol: str, volume: float, low: float, high: float, step: float) -> str | None:
    """Why ``volume`` cannot be traded on ``symbol`` (off its min/max/step), None when it can."""
    ok = volume >= low - 1e-9 and (high <= 0 or volume <= high + 1e-9)
    if ok and step > 0:
        ok = abs(volume / step - round(volume / step)) < 1e-6
    if ok:
        return None
    return f"volume {volume:g} is not tradable on {symbol} (min {low:g}, max {high:g}, step {step:g})"


def open_request(
    command: OpenCommand, *, price: float, filling: int, magic: int, deviation: int, volume_step: float
) -> dict[str, Any]:
    """The ``order_send`` request of an OPEN: a market deal carrying the magic number and the comment."""
    return {
        "action": TRADE_ACTION_DEAL,
        "symbol": command.symbol,
        "volume": round(command.volume, volume_digits(volume_step)),
        "type": ORDER_TYPE_BUY if command.side == "BUY" else ORDER_TYPE_SELL,
        "price": price,
        "deviation": deviation,
        "magic": magic,
        "comment": order_comment(command.action_id, command.position_id),
        "type_time": ORDER_TIME_GTC,
        "type_filling": filling,
    }


def close_request(
    command: CloseCommand,
    position: TradePositionLike,
    *,
    volume: float,
    bid: float,
    ask: float,
    filling: int,
    magic: int,
    deviation: int,
    volume_step: float,
) -> dict[str, Any]:
    """The ``order_send`` request of a CLOSE: the opposite deal on the position's ticket."""
    buy = position.type == POSITION_TYPE_BUY
    return {
        "action": TRADE_ACTION_DEAL,
        "position": position.ticket,
        "symbol": position.symbol,
        "volume": round(volume, volume_digits(volume_step)),
        "type": ORDER_TYPE_SELL if buy else ORDER_TYPE_BUY,
        "price": bid if buy else ask,
        "deviation": deviation,
        "magic": magic,
        "comment": order_comment(command.action_id, command.position_id),
        "type_time": ORDER_TIME_GTC,
        "type_filling": filling,
    }


def close_volume(requested: float | None, open_volume: float) -> float:
    """The volume a CLOSE closes: all of the position unless a smaller volume is asked."""
    if requested is None or requested >= open_volume - 1e-9:
        return open_volume
    return requested


# --- reports ------------------------------------------------------------------------------------------------


def opened_event(account_id: str, command: OpenCommand, outcome: Outcome, now: datetime) -> OpenedEvent:
    if not outcome.success:
        return OpenedEvent(
            timestamp=now,
            account_id=account_id,
            position_id=command.position_id,
            action_id=command.action_id,
            status="FAILED",
            error_code=outcome.retcode,
            error_message=outcome.message or "the order was not executed",
        )
    return OpenedEvent(
        timestamp=now,
        account_id=account_id,
        position_id=command.position_id,
        action_id=command.action_id,
        mt_ticket=str(outcome.ticket),
        price=outcome.price,
        volume=outcome.volume if outcome.volume > 0 else command.volume,
        status="SUCCESS",
        error_code=outcome.retcode,
        error_message=outcome.message or None,
        already_executed=outcome.already_executed,
        symbol=command.symbol,
        side=command.side,
    )


def closed_event(account_id: str, command: CloseCommand, outcome: Outcome, now: datetime) -> ClosedEvent:
    if not outcome.success:
        return ClosedEvent(
            timestamp=now,
            account_id=account_id,
            position_id=command.position_id,
            action_id=command.action_id,
            mt_ticket=command.mt_ticket or (str(outcome.ticket) if outcome.ticket else None),
            status="FAILED",
            error_code=outcome.retcode,
            error_message=outcome.message or "the order was not executed",
        )
    return ClosedEvent(
        timestamp=now,
        account_id=account_id,
        position_id=command.position_id,
        action_id=command.action_id,
        mt_ticket=str(outcome.ticket),
        price=outcome.price,
        profit=outcome.profit,
        volume=outcome.volume if outcome.volume > 0 else None,
        remaining_volume=round(max(outcome.remaining, 0.0), 8),
        status="SUCCESS",
        error_code=outcome.retcode,
        error_message=outcome.message or None,
        already_executed=outcome.already_executed,
    )


def again(outcome: Outcome) -> Outcome:
    """A remembered outcome answered to a repeated actionId."""
    return replace(outcome, already_executed=True)


def report_id(event: OpenedEvent | ClosedEvent) -> str:
    """The de-duplication id (``Nats-Msg-Id``) of a trade report, the same one a gateway gives an EA's."""
    key = event.action_id or event.position_id
    outcome = f"{event.status}:{event.error_code or ''}"
    return f"{event.account_id}:{type_name(event)}:{key}:{event.mt_ticket or ''}:{outcome}"


_REASONS = {
    DEAL_REASON_SL: "stop_loss",
    DEAL_REASON_TP: "take_profit",
    DEAL_REASON_SO: "stop_out",
    DEAL_REASON_CLIENT: "manual",
    DEAL_REASON_MOBILE: "manual",
    DEAL_REASON_WEB: "manual",
    DEAL_REASON_EXPERT: "expert",
}


def deal_reason(reason: int) -> str:
    """The CLOSED ``reason`` of a closing deal (the EA's words)."""
    return _REASONS.get(reason, "other")


def outside_close(
    account_id: str, ticket: int, position_id: str, action_id: str | None, deals: Iterable[TradeDealLike], now: datetime
) -> ClosedEvent | None:
    """CLOSED for a position of the hedge system that closed without a command (stop loss, take profit,
    stop out, by hand), from its closing deals; None while the history has none yet."""
    closing = [d for d in deals if d.position_id == ticket and d.entry in (DEAL_ENTRY_OUT, DEAL_ENTRY_OUT_BY)]
    if not closing:
        return None
    volume = sum(d.volume for d in closing)
    last = max(closing, key=lambda d: d.ticket)
    return ClosedEvent(
        timestamp=now,
        account_id=account_id,
        position_id=position_id,
        action_id=action_id,
        mt_ticket=str(ticket),
        price=last.price,
        profit=round(sum(d.profit + d.swap + d.commission for d in closing), 2),
        volume=round(volume, 8) if volume > 0 else None,
        remaining_volume=0.0,
        status="SUCCESS",
        reason=deal_reason(last.reason),
    )


# --- snapshots ----------------------------------------------------------------------------------------------


def server_time(msc: int) -> datetime:
    """A terminal time in milliseconds (the trade server's clock) as a timestamp."""
    return datetime.fromtimestamp(msc / 1000, UTC)


def is_wire_symbol(symbol: str) -> bool:
    return bool(_WIRE_SYMBOL.match(symbol))


def position_of(position: TradePositionLike, known: tuple[str, str | None] | None) -> Position | None:
    """A position for POSITION_UPDATE; ``known`` is its (positionId, actionId) when the system opened it.
    None for a position the protocol cannot carry (a symbol outside its alphabet, no volume)."""
    if not is_wire_symbol(position.symbol) or not position.volume > 0 or not math.isfinite(position.volume):
        return None
    position_id, action_id = known if known is not None else (None, None)
    return Position(
        mt_ticket=str(position.ticket),
        position_id=position_id,
        action_id=action_id,
        symbol=position.symbol,
        side="BUY" if position.type == POSITION_TYPE_BUY else "SELL",
        volume=position.volume,
        open_price=max(position.price_open, 0.0),
        current_price=max(position.price_current, 0.0),
        profit=position.profit,
        open_time=server_time(position.time_msc) if position.time_msc > 0 else None,
    )


def position_update(
    account_id: str,
    positions: Iterable[TradePositionLike],
    book: Mapping[int, tuple[str, str | None]],
    now: datetime,
    sync_id: str | None = None,
) -> PositionUpdate:
    listed = [position_of(p, book.get(p.ticket)) for p in sorted(positions, key=lambda p: p.ticket)]
    return PositionUpdate(
        timestamp=now, account_id=account_id, positions=[p for p in listed if p is not None], sync_id=sync_id
    )


def account_update(account_id: str, info: AccountInfoLike, now: datetime) -> AccountUpdate:
    margin = max(info.margin, 0.0)
    return AccountUpdate(
        timestamp=now,
        account_id=account_id,
        balance=info.balance,
        equity=info.equity,
        margin=margin,
        free_margin=info.margin_free,
        margin_level=info.margin_level if margin > 0 else None,
        currency=info.currency[:8] or None,
    )


def price_tick(account_id: str, symbol: str, tick: TickLike) -> PriceTick | None:
    if tick.bid <= 0 or tick.ask <= 0 or not is_wire_symbol(symbol):
        return None
    return PriceTick(account_id=account_id, symbol=symbol, bid=tick.bid, ask=tick.ask, time=server_time(tick.time_msc))
