"""A simulated account's open positions and what it reports of them (pure code): a position's profit at a price,
the margin the positions hold, and the ACCOUNT_UPDATE, POSITION_UPDATE and PRICE messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hedgebridge.protocol import AccountUpdate, Position, PositionUpdate, PriceTick

from .feed import PriceFeed, instrument


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


def profit(position: SimPosition, price: float) -> float:
    """The profit of ``position`` closed at ``price``, in the account's currency."""
    inst = instrument(position.symbol)
    direction = 1 if position.side == "BUY" else -1
    raw = (price - position.open_price) * direction * position.volume * inst.contract_size
    if not inst.quote_in_account_currency:
        raw /= price
    return round(raw, 2)


def mark(position: SimPosition, feed: PriceFeed) -> float:
    """The price ``position`` would close at now."""
    bid, ask = feed.quote(position.symbol)
    return bid if position.side == "BUY" else ask


def margin_of(symbol: str, volume: float, price: float, leverage: int) -> float:
    """The margin ``volume`` lots of ``symbol`` opened at ``price`` hold (the notional over the leverage)."""
    inst = instrument(symbol)
    return volume * inst.contract_size * (price if inst.quote_in_account_currency else 1.0) / leverage


def margin(positions: Iterable[SimPosition], leverage: int) -> float:
    return round(sum(margin_of(p.symbol, p.volume, p.open_price, leverage) for p in positions), 2)


def equity(balance: float, positions: Iterable[SimPosition], feed: PriceFeed) -> float:
    return round(balance + sum(profit(p, mark(p, feed)) for p in positions), 2)


def account_update(
    account_id: str, balance: float, positions: list[SimPosition], feed: PriceFeed, leverage: int, now: datetime
) -> AccountUpdate:
    worth = equity(balance, positions, feed)
    held = margin(positions, leverage)
    return AccountUpdate(
        timestamp=now,
        account_id=account_id,
        balance=balance,
        equity=worth,
        margin=held,
        free_margin=round(worth - held, 2),
        margin_level=round(worth / held * 100, 2) if held > 0 else None,
        currency="USD",
    )


def position_update(
    account_id: str, positions: Iterable[SimPosition], feed: PriceFeed, now: datetime, sync_id: str | None = None
) -> PositionUpdate:
    return PositionUpdate(
        timestamp=now,
        account_id=account_id,
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
                current_price=mark(p, feed),
                profit=profit(p, mark(p, feed)),
                open_time=p.open_time,
                stop_loss=p.sl or None,
                take_profit=p.tp or None,
            )
            for p in sorted(positions, key=lambda p: p.ticket)
        ],
    )


def ticks(account_id: str, symbols: Iterable[str], feed: PriceFeed, now: datetime) -> list[PriceTick]:
    found = []
    for symbol in symbols:
        bid, ask = feed.quote(symbol)
        found.append(PriceTick(account_id=account_id, symbol=symbol, bid=bid, ask=ask, time=now))
    return found
