"""Stop loss and take profit on the simulated trade server, checked and triggered as MT5 does (pure code).

- Checked against the price a position closes at (the bid for a BUY, the ask for a SELL): a BUY's stop loss
  below it and its take profit above it, a SELL's the other way round, each at least the symbol's stops level
  (``SYMBOL_TRADE_STOPS_LEVEL``, in points) away; otherwise the trade server answers 10016 INVALID_STOPS.
  0 is no stop and is never checked; a negative price is no price, and 10016 too.
- Triggered when that price reaches a stop: the position is closed by the server, the deal's reason
  ``stop_loss`` or ``take_profit`` (the CLOSED ``reason`` the EA reports).
"""

from __future__ import annotations

from hedgebridge.protocol import retcodes

STOP_LOSS = "stop_loss"
TAKE_PROFIT = "take_profit"


def closing_price(side: str, bid: float, ask: float) -> float:
    return bid if side == "BUY" else ask


def refusal(side: str, sl: float, tp: float, bid: float, ask: float, level: float) -> int | None:
    """10016 when a stop is negative, on the wrong side of the closing price or closer than ``level`` (a price
    distance); None when both may be set."""
    if sl < 0 or tp < 0:
        return retcodes.INVALID_STOPS
    price = closing_price(side, bid, ask)
    direction = 1 if side == "BUY" else -1  # a BUY's stop loss lies below the price, its take profit above
    tolerance = 1e-9 * max(1.0, price)

    def too_close(distance: float) -> bool:  # at or past the price, or nearer than the stops level
        return distance <= tolerance or distance < level - tolerance

    if (sl > 0 and too_close((price - sl) * direction)) or (tp > 0 and too_close((tp - price) * direction)):
        return retcodes.INVALID_STOPS
    return None


def hit(side: str, sl: float, tp: float, bid: float, ask: float) -> str | None:
    """The stop the closing price has reached (``stop_loss``, ``take_profit``), or None."""
    price = closing_price(side, bid, ask)
    direction = 1 if side == "BUY" else -1
    if sl > 0 and (price - sl) * direction <= 0:
        return STOP_LOSS
    if tp > 0 and (tp - price) * direction <= 0:
        return TAKE_PROFIT
    return None
