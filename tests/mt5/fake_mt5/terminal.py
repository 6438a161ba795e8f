"""``FakeMT5``: the simulated package as a module stand-in, with what tests do to its terminal and broker."""

from __future__ import annotations

from hedgebridge.sim.feed import instrument

from ..fake_records import NAMED_TUPLES
from .package import Package
from .state import RULES


class FakeMT5(Package):
    """A stand-in for the ``MetaTrader5`` module, one terminal and one hedging account per instance."""

    __version__ = "5.0.6231"

    # --- what tests do to the terminal -------------------------------------------------------------------

    def set_symbol(self, symbol: str, **rules: float | str) -> None:
        """The broker changes a symbol's rules: ``volume_min``, ``volume_max``, ``volume_step``, ``trade_mode`` (a
        SYMBOL_TRADE_MODE number, or the protocol's name: DISABLED, LONG_ONLY, SHORT_ONLY, CLOSE_ONLY, FULL)."""
        names = {"DISABLED": 0, "LONG_ONLY": 1, "SHORT_ONLY": 2, "CLOSE_ONLY": 3, "FULL": 4}
        with self._lock:
            changed = dict(self._rules.get(symbol, {}))
            for key, value in rules.items():
                if key not in RULES:
                    raise ValueError(f"{key}: not a rule of the fake terminal")
                changed[key] = float(names[value]) if isinstance(value, str) else float(value)
            self._rules[symbol] = changed

    def lose_terminal(self) -> None:
        with self._lock:
            self._reachable = False

    def restore_terminal(self) -> None:
        with self._lock:
            self._reachable = True

    def step(self) -> None:
        """The market moves: new prices, ticked now (server time)."""
        with self._lock:
            self._feed.step()
            self._tick_msc = dict.fromkeys(self._symbols, self.server_msc())
            self._trigger_stops()

    def age(self, seconds: float) -> None:
        """The positions and deals so far become ``seconds`` older, as if made that long ago."""
        shift = int(seconds * 1000)
        with self._lock:
            for p in self._book.positions.values():
                p.time_msc -= shift
                p.update_msc -= shift
            self._book.deals = [
                d._replace(time=(d.time_msc - shift) // 1000, time_msc=d.time_msc - shift) for d in self._book.deals
            ]

    def sent(self, comment_prefix: str) -> int:
        """How many order_send calls carried a comment starting with ``comment_prefix``."""
        with self._lock:
            return sum(1 for r in self.requests if str(r.get("comment", "")).startswith(comment_prefix))

    def open_positions(self) -> dict[int, float]:
        """The open positions' volumes by identifier."""
        with self._lock:
            return {p.identifier: p.volume for p in self._book.positions.values()}

    def open_stops(self) -> dict[int, tuple[float, float]]:
        """The open positions' (stop loss, take profit) by identifier, 0.0 for none."""
        with self._lock:
            return {p.identifier: (p.sl, p.tp) for p in self._book.positions.values()}

    def move_price(self, symbol: str, bid: float) -> None:
        """The market jumps: ``symbol``'s bid becomes ``bid`` (stops it reaches trigger at once)."""
        with self._lock:
            half = instrument(symbol).spread_points * instrument(symbol).point / 2
            self._feed.mids[symbol] = bid + half
            self._tick_msc[symbol] = self.server_msc()
            self._trigger_stops()

    def reopen(self, ticket: int, swap: float = 0.0) -> int:
        """The trade server charges ``swap`` by re-opening the position of ``ticket``: it gets a new ticket (returned)
        and keeps its identifier, volume and opening price."""
        with self._lock:
            position = self._book.positions.pop(ticket)
            position.ticket = self._next_order
            self._next_order += 1
            position.swap = round(position.swap + swap, 2)
            position.update_msc = self.server_msc()
            self._book.positions[position.ticket] = position
            return position.ticket

    def close_outside(self, ticket: int, reason: int = 4) -> None:
        """Close the position of ``ticket`` without a request from the bridge (default reason: stop loss)."""
        with self._lock:
            position = self._book.positions[ticket]
            bid, ask = self._feed.quote(position.symbol)
            price = bid if position.type == self.POSITION_TYPE_BUY else ask
            self._fill_close(position, position.volume, price, 0, "", reason, self._next_order)
            self._next_order += 1


for _name, _kind in NAMED_TUPLES.items():  # the named tuples, reachable as on the module (mt5.TradePosition…)
    setattr(FakeMT5, _name, _kind)
