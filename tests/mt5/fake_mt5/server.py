"""The trade server behind ``order_send``: market deals (opening, adding to and closing positions, with their
deals in the history) and TRADE_ACTION_SLTP (a position's stops), with MT5's checks and retcodes."""

from __future__ import annotations

import time
from typing import Any

from hedgebridge.sim import checks, stops
from hedgebridge.sim.feed import instrument

from ..fake_records import OrderSendResult, TradeDeal
from .constants import STOPS_LEVEL_POINTS
from .state import FakeFault, OpenPosition, State, deal_ticket

TRADE_MODES = {0: "DISABLED", 1: "LONG_ONLY", 2: "SHORT_ONLY", 3: "CLOSE_ONLY", 4: "FULL"}  # SYMBOL_TRADE_MODE_*


class TradeServer(State):
    def _execute(self, request: dict[str, Any], fault: FakeFault | None) -> OrderSendResult:
        if fault is not None and fault.retcode is not None:
            return self._answer(request, fault.retcode)
        if request.get("action") == self.TRADE_ACTION_SLTP:
            return self._sltp(request)
        if request.get("action") != self.TRADE_ACTION_DEAL:
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        symbol = str(request.get("symbol", ""))
        if symbol not in self._symbols:
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        if not self.trade_allowed:
            return self._answer(request, self.TRADE_RETCODE_CLIENT_DISABLES_AT)
        volume = float(request.get("volume", 0.0))
        low, high, step = (self._rule(symbol, n) for n in ("volume_min", "volume_max", "volume_step"))
        refused = checks.volume(volume, low, high, step)
        if refused:
            return self._answer(request, refused)
        filling = int(request.get("type_filling", self.ORDER_FILLING_FOK))
        allowed = {self.ORDER_FILLING_FOK: 1, self.ORDER_FILLING_IOC: 2}
        if filling in allowed and not self._filling_mode & allowed[filling]:
            return self._answer(request, self.TRADE_RETCODE_INVALID_FILL)
        side = int(request.get("type", -1))
        if side not in (self.ORDER_TYPE_BUY, self.ORDER_TYPE_SELL):
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        refused = self._trade_mode(symbol, side, opening=not request.get("position"))
        if refused:
            return self._answer(request, refused)
        bid, ask = self._feed.quote(symbol)
        market = ask if side == self.ORDER_TYPE_BUY else bid
        asked = float(request.get("price", 0.0))
        point = instrument(symbol).point
        if asked > 0 and abs(asked - market) > int(request.get("deviation", 0)) * point + 1e-12:
            return self._answer(request, self.TRADE_RETCODE_REQUOTE)
        sl, tp = float(request.get("sl", 0.0)), float(request.get("tp", 0.0))
        if not request.get("position") and self._stops_refused(symbol, side, sl, tp):
            return self._answer(request, self.TRADE_RETCODE_INVALID_STOPS)
        partial = fault is not None and fault.fill_ratio is not None
        if fault is not None and fault.fill_ratio is not None:
            volume = round(volume * fault.fill_ratio, 2)
        order = self._next_order
        self._next_order += 1
        magic = int(request.get("magic", 0))
        comment = str(request.get("comment", ""))
        retcode = self.TRADE_RETCODE_DONE_PARTIAL if partial else self.TRADE_RETCODE_DONE
        ticket = int(request.get("position", 0))
        if ticket:
            position = self._book.positions.get(ticket)
            if position is None:
                return self._answer(request, self.TRADE_RETCODE_POSITION_CLOSED)
            if side == position.type or position.symbol != symbol:
                return self._answer(request, self.TRADE_RETCODE_INVALID)
            if volume > position.volume + 1e-9:
                return self._answer(request, self.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
            deal = self._fill_close(position, volume, market, magic, comment, self.DEAL_REASON_EXPERT, order)
            return self._answer(request, retcode, deal_ticket(deal, fault), order, volume, market)
        now_ms = self.server_msc()
        self._book.positions[order] = OpenPosition(order, order, side, magic, volume, market, symbol, comment, now_ms,
                                                   now_ms, sl=sl, tp=tp)  # fmt: skip
        deal = self._deal(order, symbol, side, self.DEAL_ENTRY_IN, magic, order, self.DEAL_REASON_EXPERT, volume,
                          market, 0.0, comment)  # fmt: skip
        return self._answer(request, retcode, deal_ticket(deal, fault), order, volume, market)

    def _sltp(self, request: dict[str, Any]) -> OrderSendResult:
        """TRADE_ACTION_SLTP: ``position`` names the position by its current ticket; ``sl``/``tp`` left out are
        0.0, and 0.0 is no stop."""
        ticket = int(request.get("position", 0))
        if not ticket:
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        position = self._book.positions.get(ticket)
        if position is None:
            return self._answer(request, self.TRADE_RETCODE_POSITION_CLOSED)
        symbol = str(request.get("symbol", position.symbol))
        if symbol != position.symbol:
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        refused = self._trade_mode(symbol, self.ORDER_TYPE_BUY, opening=False)
        if refused:
            return self._answer(request, refused)
        sl, tp = float(request.get("sl", 0.0)), float(request.get("tp", 0.0))
        if (sl, tp) == (position.sl, position.tp):
            return self._answer(request, self.TRADE_RETCODE_NO_CHANGES)
        side = self.ORDER_TYPE_BUY if position.type == self.POSITION_TYPE_BUY else self.ORDER_TYPE_SELL
        if self._stops_refused(symbol, side, sl, tp):
            return self._answer(request, self.TRADE_RETCODE_INVALID_STOPS)
        position.sl, position.tp = sl, tp
        position.update_msc = self.server_msc()
        return self._answer(request, self.TRADE_RETCODE_DONE)

    def _stops_refused(self, symbol: str, side: int, sl: float, tp: float) -> bool:
        """Whether stops of a position of ``side`` are on the wrong side of its closing price or too near it."""
        bid, ask = self._feed.quote(symbol)
        level = STOPS_LEVEL_POINTS * instrument(symbol).point
        name = "BUY" if side == self.ORDER_TYPE_BUY else "SELL"
        return stops.refusal(name, sl, tp, bid, ask, level) is not None

    def _trigger_stops(self) -> None:
        """Close the positions whose stop loss or take profit the price reached (deal reason SL or TP)."""
        for position in list(self._book.positions.values()):
            name = "BUY" if position.type == self.POSITION_TYPE_BUY else "SELL"
            bid, ask = self._feed.quote(position.symbol)
            reached = stops.hit(name, position.sl, position.tp, bid, ask)
            if reached is not None:
                reason = self.DEAL_REASON_SL if reached == stops.STOP_LOSS else self.DEAL_REASON_TP
                price = stops.closing_price(name, bid, ask)
                self._fill_close(position, position.volume, price, 0, "", reason, self._next_order)
                self._next_order += 1

    def _trade_mode(self, symbol: str, side: int, *, opening: bool) -> int:
        """The retcode a symbol's trade mode (SYMBOL_TRADE_MODE_*: 0 disabled, 1 long only, 2 short only, 3 close
        only, 4 full) refuses the order with, 0 when it allows it."""
        mode = TRADE_MODES[int(self._rule(symbol, "trade_mode"))]
        name = "BUY" if side == self.ORDER_TYPE_BUY else "SELL"
        return checks.trade_mode(mode, name if opening else None) or 0

    def _fill_close(
        self, position: OpenPosition, volume: float, price: float, magic: int, comment: str, reason: int, order: int
    ) -> TradeDeal:
        profit = self._profit(position, volume, price)
        commission = -round(2 * self._commission_per_lot * volume, 2)
        swap = round(position.swap * volume / position.volume, 2) if position.volume > 0 else 0.0
        self._balance = round(self._balance + profit + commission + swap, 2)
        remaining = round(position.volume - volume, 8)
        if remaining > 1e-9:
            position.volume = remaining
            position.swap = round(position.swap - swap, 2)
            position.update_msc = self.server_msc()
        else:
            del self._book.positions[position.ticket]
        side = self.DEAL_TYPE_SELL if position.type == self.POSITION_TYPE_BUY else self.DEAL_TYPE_BUY
        return self._deal(order, position.symbol, side, self.DEAL_ENTRY_OUT, magic, position.identifier, reason,
                          volume, price, profit, comment, commission, swap)  # fmt: skip

    def _deal(self, order: int, symbol: str, side: int, entry: int, magic: int, position: int, reason: int,
              volume: float, price: float, profit: float, comment: str, commission: float = 0.0,
              swap: float = 0.0) -> TradeDeal:  # fmt: skip
        now_ms = self.server_msc()
        deal = TradeDeal(self._next_deal, order, now_ms // 1000, now_ms, side, entry, magic, position, reason, volume,
                         price, commission, swap, profit, 0.0, symbol, comment, "")  # fmt: skip
        self._next_deal += 1
        self._book.deals.append(deal)
        delay = self.deal_delay_s if self._order_deal_delay_s is None else self._order_deal_delay_s
        self._book.visible_at[deal.ticket] = time.monotonic() + delay
        return deal
