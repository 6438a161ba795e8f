"""A random-walk price feed (pure code)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    mid: float
    point: float  # the smallest price step
    spread_points: int
    contract_size: float
    quote_in_account_currency: bool  # False for e.g. USDJPY: profit in JPY, divided by the price for USD


INSTRUMENTS: dict[str, Instrument] = {
    i.symbol: i
    for i in (
        Instrument("EURUSD", 1.08500, 0.00001, 12, 100_000, True),
        Instrument("GBPUSD", 1.26500, 0.00001, 15, 100_000, True),
        Instrument("USDJPY", 151.500, 0.001, 14, 100_000, False),
        Instrument("XAUUSD", 2350.00, 0.01, 25, 100, True),
    )
}


def instrument(symbol: str) -> Instrument:
    """Known instruments, or a generic FX-like one for any other symbol."""
    return INSTRUMENTS.get(symbol) or Instrument(symbol, 1.0, 0.00001, 10, 100_000, True)


class PriceFeed:
    """Bid/ask per symbol; ``step`` moves every mid by a few points at random."""

    def __init__(self, symbols: tuple[str, ...], rng: random.Random) -> None:
        self.rng = rng
        self.instruments = {s: instrument(s) for s in symbols}
        self.mids = {s: i.mid for s, i in self.instruments.items()}

    def quote(self, symbol: str) -> tuple[float, float]:
        inst = self.instruments.get(symbol) or instrument(symbol)
        mid = self.mids.setdefault(symbol, inst.mid)
        half = inst.spread_points * inst.point / 2
        digits = max(0, len(f"{inst.point:.10f}".rstrip("0").split(".")[1]))
        return round(mid - half, digits), round(mid + half, digits)

    def step(self) -> None:
        for symbol, inst in self.instruments.items():
            move = self.rng.gauss(0.0, 3.0) * inst.point
            self.mids[symbol] = max(inst.point * 10, self.mids[symbol] + move)
