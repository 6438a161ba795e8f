"""OPEN, CLOSE and MODIFY on the package (pure code): commands to ``order_send`` request dicts (MqlTradeRequest
fields), ``order_send`` results and deals to outcomes with the EA's retcode rules, and the earlier executions
of an actionId found among positions and deals (the "already executed" check).

A MODIFY is TRADE_ACTION_SLTP on the position's current ticket, with both stops always given: the package
takes a stop left out of the request as 0.0, which removes it, so the one the command keeps is sent as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hedgebridge.protocol import CloseCommand, ModifyCommand, OpenCommand, retcodes

from .comment import carries_action, order_comment
from .package import (
    DEAL_ENTRY_IN,
    DEAL_ENTRY_OUT,
    DEAL_ENTRY_OUT_BY,
    ORDER_FILLING_FOK,
    ORDER_FILLING_IOC,
    ORDER_FILLING_RETURN,
    ORDER_TIME_GTC,
    ORDER_TYPE_BUY,
    ORDER_TYPE_SELL,
    POSITION_TYPE_BUY,
    SYMBOL_FILLING_FOK,
    SYMBOL_FILLING_IOC,
    TRADE_ACTION_DEAL,
    TRADE_ACTION_SLTP,
    OrderSendResultLike,
    TradeDealLike,
    TradePositionLike,
)

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
    ticket: int = 0  # the position's identifier (POSITION_IDENTIFIER): mtTicket
    price: float = 0.0
    volume: float = 0.0
    remaining: float = 0.0
    profit: float = 0.0
    retcode: int | None = None
    message: str = ""
    stops: tuple[float, float] | None = None  # a MODIFY's: the position's (stop loss, take profit), 0 for none


def failed(retcode: int | None, message: str) -> Outcome:
    return Outcome(success=False, retcode=retcode, message=message)


def describe(result: OrderSendResultLike) -> str:
    """The trade server's answer as the EA words it: its comment and the retcode."""
    text = result.comment or retcodes.name(result.retcode).replace("_", " ").lower()
    return f"{text} (retcode {result.retcode})"


def is_fill(retcode: int) -> bool:
    return retcode in (retcodes.DONE, retcodes.DONE_PARTIAL)


ESTIMATED_PROFIT = "profit estimated from the position's floating profit: its closing deal was not in the history yet"


def fill_outcome(
    result: OrderSendResultLike,
    requested_volume: float,
    deals: Sequence[TradeDealLike],
    *,
    closing: bool,
    position_identifier: int = 0,
    remaining: float = 0.0,
    profit_estimate: float = 0.0,
) -> Outcome:
    """A filled ``order_send`` result (DONE or DONE_PARTIAL), completed from its deals when the history has them
    (all of them, or none): the position's identifier, the price, the volume and, for a close, the profit (profit
    + swap + commission + fee). Without its deals a close's profit is the share of the position's floating
    profit, and the message says it is an estimate."""
    volume_in_deals = sum(d.volume for d in deals)
    # a position's identifier is the ticket of the order that opened it, and its deals' position_id
    ticket = next((d.position_id for d in deals if d.position_id), 0) or position_identifier or result.order
    price = result.price
    if price <= 0 and volume_in_deals > 0:
        price = sum(d.price * d.volume for d in deals) / volume_in_deals
    volume = result.volume if result.volume > 0 else (round(volume_in_deals, 8) or requested_volume)
    profit = sum(d.profit + d.swap + d.commission + d.fee for d in deals) if deals else profit_estimate
    partial = result.retcode == retcodes.DONE_PARTIAL
    notes = []
    if partial:
        verb = "closed" if closing else "filled"
        notes.append(f"partially {verb}: {volume:g} of {requested_volume:g} lots")
    if closing and not deals:
        notes.append(ESTIMATED_PROFIT)
    message = "; ".join(notes)
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
                ticket=position.identifier,
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
    price, summed profit). ``open_volume`` is what is left open of each position, by identifier (absent:
    closed)."""
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
        profit += deal.profit + deal.swap + deal.commission + deal.fee
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


def again(outcome: Outcome) -> Outcome:
    """A remembered outcome answered to a repeated actionId."""
    return replace(outcome, already_executed=True)


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
    command: OpenCommand,
    *,
    price: float,
    filling: int,
    magic: int,
    deviation: int,
    volume_step: float,
    digits: int = 8,
) -> dict[str, Any]:
    """The ``order_send`` request of an OPEN: a market deal carrying the magic number and the comment (and the
    stops it sets, in the symbol's digits)."""
    stops = {"sl": command.stop_loss, "tp": command.take_profit}
    return {
        **{name: round(price, digits) for name, price in stops.items() if price},
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
    """The ``order_send`` request of a CLOSE: the opposite deal on the position's current ticket (``position``
    is POSITION_TICKET, the one thing that names a position by ticket rather than by identifier)."""
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


def stops_after(command: ModifyCommand, position: TradePositionLike) -> tuple[float, float]:
    """The (stop loss, take profit) a MODIFY leaves the position with: a stop it does not name is kept."""
    sl = position.sl if command.stop_loss is None else command.stop_loss
    tp = position.tp if command.take_profit is None else command.take_profit
    return sl, tp


def sltp_request(position: TradePositionLike, stops: tuple[float, float], *, digits: int, magic: int) -> dict[str, Any]:
    """The ``order_send`` request of a MODIFY: TRADE_ACTION_SLTP on the position's current ticket, both stops
    given (one left out would be 0.0: removed)."""
    sl, tp = stops
    return {
        "action": TRADE_ACTION_SLTP,
        "position": position.ticket,
        "symbol": position.symbol,
        "sl": round(sl, digits),
        "tp": round(tp, digits),
        "magic": magic,
    }


def close_volume(requested: float | None, open_volume: float) -> float:
    """The volume a CLOSE closes: all of the position unless a smaller volume is asked."""
    if requested is None or requested >= open_volume - 1e-9:
        return open_volume
    return requested
