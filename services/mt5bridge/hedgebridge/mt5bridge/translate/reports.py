"""Package records to the protocol's messages (pure code): outcomes to OPENED / CLOSED / MODIFIED reports, CLOSED for
a position closed without a command, and positions, account figures and ticks to POSITION_UPDATE,
ACCOUNT_UPDATE and PRICE.

The package's times are the trade server's clock; the protocol's are UTC. ``offset_s`` is the server's offset
from UTC (``clock.py``), None while unknown: a position is then sent without its opening time and a tick is not
sent, rather than with a time hours off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

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
    names,
)

from .orders import Outcome
from .package import (
    DEAL_ENTRY_OUT,
    DEAL_ENTRY_OUT_BY,
    DEAL_REASON_CLIENT,
    DEAL_REASON_EXPERT,
    DEAL_REASON_MOBILE,
    DEAL_REASON_SL,
    DEAL_REASON_SO,
    DEAL_REASON_TP,
    DEAL_REASON_WEB,
    POSITION_TYPE_BUY,
    AccountInfoLike,
    TickLike,
    TradeDealLike,
    TradePositionLike,
)

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
        stop_loss=command.stop_loss,
        take_profit=command.take_profit,
    )


def modified_event(account_id: str, command: ModifyCommand, outcome: Outcome, now: datetime) -> ModifiedEvent:
    """MODIFIED: the position's stops after the command (as they are, when it changed nothing)."""
    sl, tp = outcome.stops if outcome.stops is not None else (None, None)
    return ModifiedEvent(
        timestamp=now,
        account_id=account_id,
        position_id=command.position_id,
        action_id=command.action_id,
        mt_ticket=str(outcome.ticket) if outcome.ticket else command.mt_ticket,
        stop_loss=sl,
        take_profit=tp,
        status="SUCCESS" if outcome.success else "FAILED",
        error_code=outcome.retcode,
        error_message=outcome.message or (None if outcome.success else "the stops were not changed"),
        already_executed=outcome.already_executed,
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
    account_id: str,
    identifier: int,
    position_id: str,
    action_id: str | None,
    deals: Iterable[TradeDealLike],
    now: datetime,
) -> ClosedEvent | None:
    """CLOSED for a position of the hedge system (its ``identifier``, the deals' ``position_id``) that closed
    without a command (stop loss, take profit, stop out, by hand), from its closing deals; None while the history
    has none yet."""
    closing = [d for d in deals if d.position_id == identifier and d.entry in (DEAL_ENTRY_OUT, DEAL_ENTRY_OUT_BY)]
    if not closing:
        return None
    volume = sum(d.volume for d in closing)
    last = max(closing, key=lambda d: d.ticket)
    return ClosedEvent(
        timestamp=now,
        account_id=account_id,
        position_id=position_id,
        action_id=action_id,
        mt_ticket=str(identifier),
        price=last.price,
        profit=round(sum(d.profit + d.swap + d.commission for d in closing), 2),
        volume=round(volume, 8) if volume > 0 else None,
        remaining_volume=0.0,
        status="SUCCESS",
        reason=deal_reason(last.reason),
    )


# --- snapshots ----------------------------------------------------------------------------------------------


def server_time(msc: int, offset_s: int | None) -> datetime | None:
    """A terminal time in milliseconds (the trade server's clock) as a UTC timestamp; None while the server's
    offset from UTC is unknown, or for no time (0)."""
    if offset_s is None or msc <= 0:
        return None
    return datetime.fromtimestamp(msc / 1000 - offset_s, UTC)


def is_wire_symbol(symbol: str) -> bool:
    return names.is_symbol(symbol)


def position_of(
    position: TradePositionLike, known: tuple[str, str | None] | None, offset_s: int | None
) -> Position | None:
    """A position for POSITION_UPDATE, named by its identifier; ``known`` is its (positionId, actionId) when the
    system opened it. None for a position the protocol cannot carry (a symbol outside its alphabet, no volume)."""
    if not is_wire_symbol(position.symbol) or not position.volume > 0 or not math.isfinite(position.volume):
        return None
    position_id, action_id = known if known is not None else (None, None)
    return Position(
        mt_ticket=str(position.identifier),
        position_id=position_id,
        action_id=action_id,
        symbol=position.symbol,
        side="BUY" if position.type == POSITION_TYPE_BUY else "SELL",
        volume=position.volume,
        open_price=max(position.price_open, 0.0),
        current_price=max(position.price_current, 0.0),
        profit=position.profit,
        open_time=server_time(position.time_msc, offset_s),
        stop_loss=position.sl or None,
        take_profit=position.tp or None,
    )


def position_update(
    account_id: str,
    positions: Iterable[TradePositionLike],
    book: Mapping[int, tuple[str, str | None]],
    now: datetime,
    offset_s: int | None,
    sync_id: str | None = None,
) -> PositionUpdate:
    """``book``: (positionId, actionId) by identifier."""
    ordered = sorted(positions, key=lambda p: p.identifier)
    listed = [position_of(p, book.get(p.identifier), offset_s) for p in ordered]
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


def price_tick(account_id: str, symbol: str, tick: TickLike, offset_s: int | None) -> PriceTick | None:
    """PRICE for a tick; None for a tick the protocol cannot carry, or while its time cannot be told in UTC."""
    time = server_time(tick.time_msc, offset_s)
    if tick.bid <= 0 or tick.ask <= 0 or not is_wire_symbol(symbol) or time is None:
        return None
    return PriceTick(account_id=account_id, symbol=symbol, bid=tick.bid, ask=tick.ask, time=time)
