"""The simulated trade server's checks of a request, with the retcodes MT5's trade server answers (pure code: the
symbol's rules, the prices, the account's figures and whether the market is open come as arguments).

Each check answers the ``TRADE_RETCODE_*`` a request is refused with, or None when it may go. The values and
their meaning are MQL5's (Constants, "Trade Server Return Codes"):

- ``market``: the symbol's session is closed: 10018 MARKET_CLOSED, for every request on it (a deal, a close, a
  change of stops).
- ``trade_mode``: the symbol's ``SYMBOL_TRADE_MODE``: DISABLED refuses everything with 10017 TRADE_DISABLED;
  an opening deal is refused with 10044 CLOSE_ONLY under CLOSE_ONLY, a SELL with 10042 LONG_ONLY under
  LONG_ONLY, a BUY with 10043 SHORT_ONLY under SHORT_ONLY (closing stays allowed).
- ``volume``: off ``SYMBOL_VOLUME_MIN``/``MAX``/``STEP``: 10014 INVALID_VOLUME; a close of more than the
  position holds: 10038 INVALID_CLOSE_VOLUME (``close_volume``).
- ``stops``: a stop loss or take profit on the wrong side of the price a position closes at, or nearer to it
  than ``SYMBOL_TRADE_STOPS_LEVEL``, or negative: 10016 INVALID_STOPS (``stops.refusal``).
- ``frozen``: a position whose stop loss or take profit is nearer to the closing price than
  ``SYMBOL_TRADE_FREEZE_LEVEL`` may not have its stops changed: 10029 FROZEN ("order or position frozen").
- ``margin``: an opening deal whose margin is more than the account's free margin: 10019 NO_MONEY.
- ``no_changes``: a change of stops to the ones the position has: 10025 NO_CHANGES.

``open_refusal``, ``close_refusal`` and ``modify_refusal`` apply them in the trade server's order for a
market deal that opens, one that closes, and TRADE_ACTION_SLTP.
"""

from __future__ import annotations

from hedgebridge.protocol import SymbolSpec, retcodes

from .stops import closing_price
from .stops import refusal as stops_refusal

TOLERANCE = 1e-9  # of a volume or a price: float noise, not a difference
STEP_TOLERANCE = 1e-7  # of a volume's count of steps

# The trade server's descriptions of its codes (MQL5, "Trade Server Return Codes"; the long ones shortened)
TEXT = {
    retcodes.REQUOTE: "Requote",
    retcodes.REJECT: "Request rejected",
    retcodes.CANCEL: "Request canceled by trader",
    retcodes.PLACED: "Order placed",
    retcodes.DONE: "Request completed",
    retcodes.DONE_PARTIAL: "Only part of the request was completed",
    retcodes.ERROR: "Request processing error",
    retcodes.TIMEOUT: "Request canceled by timeout",
    retcodes.INVALID: "Invalid request",
    retcodes.INVALID_VOLUME: "Invalid volume in the request",
    retcodes.INVALID_PRICE: "Invalid price in the request",
    retcodes.INVALID_STOPS: "Invalid stops in the request",
    retcodes.TRADE_DISABLED: "Trade is disabled",
    retcodes.MARKET_CLOSED: "Market is closed",
    retcodes.NO_MONEY: "There is not enough money to complete the request",
    retcodes.PRICE_CHANGED: "Prices changed",
    retcodes.PRICE_OFF: "There are no quotes to process the request",
    retcodes.INVALID_EXPIRATION: "Invalid order expiration date in the request",
    retcodes.ORDER_CHANGED: "Order state changed",
    retcodes.TOO_MANY_REQUESTS: "Too frequent requests",
    retcodes.NO_CHANGES: "No changes in request",
    retcodes.SERVER_DISABLES_AT: "Autotrading disabled by server",
    retcodes.CLIENT_DISABLES_AT: "Autotrading disabled by client terminal",
    retcodes.LOCKED: "Request locked for processing",
    retcodes.FROZEN: "Order or position frozen",
    retcodes.INVALID_FILL: "Invalid order filling type",
    retcodes.CONNECTION: "No connection with the trade server",
    retcodes.ONLY_REAL: "Operation is allowed only for live accounts",
    retcodes.LIMIT_ORDERS: "The number of pending orders has reached the limit",
    retcodes.LIMIT_VOLUME: "The volume of orders and positions for the symbol has reached the limit",
    retcodes.INVALID_ORDER: "Incorrect or prohibited order type",
    retcodes.POSITION_CLOSED: "Position with the specified POSITION_IDENTIFIER has already been closed",
    retcodes.INVALID_CLOSE_VOLUME: "A close volume exceeds the current position volume",
    retcodes.CLOSE_ORDER_EXIST: "A close order already exists for a specified position",
    retcodes.LIMIT_POSITIONS: "The number of open positions has reached the limit",
    retcodes.REJECT_CANCEL: "The pending order activation request is rejected, the order is canceled",
    retcodes.LONG_ONLY: "The request is rejected, because only long positions are allowed",
    retcodes.SHORT_ONLY: "The request is rejected, because only short positions are allowed",
    retcodes.CLOSE_ONLY: "The request is rejected, because only position closing is allowed",
    retcodes.FIFO_CLOSE: "The request is rejected, because position closing is allowed only by FIFO rule",
    retcodes.HEDGE_PROHIBITED: "The request is rejected, because opposite positions on a single symbol are disabled",
}


def text(retcode: int) -> str:
    return TEXT.get(retcode, "Request failed")


def market(is_open: bool) -> int | None:
    return None if is_open else retcodes.MARKET_CLOSED


def trade_mode(mode: str, opening: str | None) -> int | None:
    """``mode``: the symbol's trade mode (``SymbolSpec.trade_mode``); ``opening``: the side of a deal that opens
    a position, None for one that closes or a change of stops."""
    if mode == "DISABLED":
        return retcodes.TRADE_DISABLED
    if opening is None:
        return None
    if mode == "CLOSE_ONLY":
        return retcodes.CLOSE_ONLY
    if mode == "LONG_ONLY" and opening == "SELL":
        return retcodes.LONG_ONLY
    if mode == "SHORT_ONLY" and opening == "BUY":
        return retcodes.SHORT_ONLY
    return None


def volume(lots: float, low: float, high: float, step: float) -> int | None:
    steps = lots / step
    if lots < low - TOLERANCE or lots > high + TOLERANCE or abs(steps - round(steps)) > STEP_TOLERANCE:
        return retcodes.INVALID_VOLUME
    return None


def close_volume(lots: float | None, held: float) -> int | None:
    """``lots`` of a position of ``held`` lots (None: all of it)."""
    return retcodes.INVALID_CLOSE_VOLUME if lots is not None and lots > held + TOLERANCE else None


def frozen(side: str, sl: float, tp: float, bid: float, ask: float, level: float) -> int | None:
    """10029 when a stop the position has (0: none) is nearer than ``level`` (a price distance) to its closing
    price; a level of 0 freezes nothing."""
    if level <= 0:
        return None
    price = closing_price(side, bid, ask)
    near = [abs(price - stop) < level - TOLERANCE for stop in (sl, tp) if stop > 0]
    return retcodes.FROZEN if any(near) else None


def margin(required: float, free: float) -> int | None:
    return retcodes.NO_MONEY if required > free + TOLERANCE else None


def no_changes(asked: tuple[float, float], held: tuple[float, float]) -> int | None:
    return retcodes.NO_CHANGES if asked == held else None


def first(*refusals: int | None) -> int | None:
    """The first refusal of checks made in order (None: every one passed)."""
    return next((r for r in refusals if r is not None), None)


def open_refusal(
    spec: SymbolSpec,
    side: str,
    lots: float,
    *,
    market_open: bool = True,
    quote: tuple[float, float],
    sl: float = 0.0,
    tp: float = 0.0,
    stops_level: float = 0.0,
    required_margin: float = 0.0,
    free_margin: float | None = None,
) -> int | None:
    """A market deal opening ``lots`` on ``side`` at ``quote`` (bid, ask) with stops ``sl``/``tp`` (0: none);
    ``free_margin`` None: the margin is not checked."""
    bid, ask = quote
    return first(
        market(market_open),
        trade_mode(spec.trade_mode, side),
        volume(lots, spec.volume_min, spec.volume_max, spec.volume_step),
        stops_refusal(side, sl, tp, bid, ask, stops_level),
        None if free_margin is None else margin(required_margin, free_margin),
    )


def close_refusal(spec: SymbolSpec, lots: float | None, held: float, *, market_open: bool = True) -> int | None:
    """A market deal closing ``lots`` (None: all) of a position of ``held`` lots."""
    return first(
        market(market_open),
        trade_mode(spec.trade_mode, None),
        None if lots is None else volume(lots, spec.volume_min, spec.volume_max, spec.volume_step),
        close_volume(lots, held),
    )


def modify_refusal(
    spec: SymbolSpec,
    side: str,
    asked: tuple[float, float],
    held: tuple[float, float],
    *,
    market_open: bool = True,
    quote: tuple[float, float],
    stops_level: float = 0.0,
    freeze_level: float = 0.0,
) -> int | None:
    """TRADE_ACTION_SLTP: the stops ``asked`` (sl, tp; 0: none) for a position of ``side`` that has ``held``."""
    bid, ask = quote
    return first(
        market(market_open),
        trade_mode(spec.trade_mode, None),
        no_changes(asked, held),
        frozen(side, *held, bid, ask, freeze_level),
        stops_refusal(side, *asked, bid, ask, stops_level),
    )
