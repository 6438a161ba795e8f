"""A hedge entry's legs as the SDK and the CLI take them (``ACCOUNT:SYMBOL:SIDE:VOLUME[:SL[:TP]]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hedgebridge.protocol import ActionLeg

Side = Literal["BUY", "SELL"]
Policy = Literal["COMPENSATE", "KEEP"]


@dataclass(frozen=True, slots=True)
class Leg:
    """One leg of a hedge entry."""

    account: str
    symbol: str
    side: Side
    volume: float
    user_id: str = ""
    stop_loss: float | None = None  # set on the leg's position as it opens
    take_profit: float | None = None

    def to_message(self) -> ActionLeg:
        return ActionLeg(
            account_id=self.account,
            symbol=self.symbol,
            side=self.side,
            volume=self.volume,
            user_id=self.user_id,
            stop_loss=self.stop_loss,
            take_profit=self.take_profit,
        )


def _price(text: str, what: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a leg's {what} is a price, got {text!r}") from None
    if not value >= 0:
        raise ValueError(f"a leg's {what} must not be negative, got {text!r}")
    return value


def parse_leg(text: str) -> Leg:
    """``ACCOUNT:SYMBOL:SIDE:VOLUME[:SL[:TP]]`` (e.g. ``SIM-001:EURUSD:BUY:1.0``, ``SIM-001:EURUSD:BUY:1.0:1.08``,
    ``SIM-001:EURUSD:BUY:1.0::1.09`` for a take profit alone) as a Leg; raises ValueError."""
    parts = text.split(":")
    if not 4 <= len(parts) <= 6:
        raise ValueError(f"a leg is ACCOUNT:SYMBOL:SIDE:VOLUME[:SL[:TP]], got {text!r}")
    parts += [""] * (6 - len(parts))
    account, symbol, side, volume, sl, tp = (p.strip() for p in parts)
    side = side.upper()
    if side not in ("BUY", "SELL"):
        raise ValueError(f"a leg's side is BUY or SELL, got {side!r}")
    try:
        lots = float(volume)
    except ValueError:
        raise ValueError(f"a leg's volume is a number, got {volume!r}") from None
    if not lots > 0:
        raise ValueError(f"a leg's volume must be positive, got {volume!r}")
    if not account or not symbol:
        raise ValueError(f"a leg names an account and a symbol, got {text!r}")
    stop_loss, take_profit = _price(sl, "stop loss"), _price(tp, "take profit")
    return Leg(account, symbol, "BUY" if side == "BUY" else "SELL", lots, stop_loss=stop_loss, take_profit=take_profit)
