"""A hedge entry's legs as the SDK and the CLI take them (``ACCOUNT:SYMBOL:SIDE:VOLUME``)."""

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

    def to_message(self) -> ActionLeg:
        return ActionLeg(
            account_id=self.account, symbol=self.symbol, side=self.side, volume=self.volume, user_id=self.user_id
        )


def parse_leg(text: str) -> Leg:
    """``ACCOUNT:SYMBOL:SIDE:VOLUME`` (e.g. ``SIM-001:EURUSD:BUY:1.0``) as a Leg; raises ValueError."""
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"a leg is ACCOUNT:SYMBOL:SIDE:VOLUME, got {text!r}")
    account, symbol, side, volume = (p.strip() for p in parts)
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
    return Leg(account, symbol, "BUY" if side == "BUY" else "SELL", lots)
