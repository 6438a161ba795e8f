"""The ``MetaTrader5`` package's functions, with its signatures, named tuples and ``last_error`` codes."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, get_type_hints

from hedgebridge.sim.feed import instrument

from ..fake_records import (
    REQUEST_TYPES,
    AccountInfo,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradePosition,
)
from .server import TradeServer
from .state import epoch


class Package(TradeServer):
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
        portable: bool = False,
    ) -> bool:
        with self._lock:
            self.initialize_calls += 1
            if not self._reachable:
                return self._fail(self.RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed, terminal not found")
            if login is not None and not self._credentials_ok(login, password, server):
                return self._fail(self.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
            self._initialized = True
            self._error = (self.RES_S_OK, "Success")
            return True

    def login(self, login: int, password: str | None = None, server: str | None = None, timeout: int = 60_000) -> bool:
        with self._lock:
            if not self._linked():
                return False
            if not self._credentials_ok(login, password, server):
                return self._fail(self.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
            return True

    def shutdown(self) -> None:
        with self._lock:
            self._initialized = False

    def last_error(self) -> tuple[int, str]:
        with self._lock:
            return self._error

    def version(self) -> tuple[int, int, str] | None:
        with self._lock:
            return (500, 4620, "20 Nov 2026") if self._linked() else None

    def terminal_info(self) -> TerminalInfo | None:
        with self._lock:
            if not self._linked():
                return None
            return TerminalInfo(False, False, True, False, self.trade_allowed, False, False, False, False, False,
                                4620, 100_000, 1252, 2000, 0.0, 0.0, "Fake Ltd.", "MetaTrader 5", "English",
                                "C:\\fake", "C:\\fake\\data", "C:\\fake\\common")  # fmt: skip

    def account_info(self) -> AccountInfo | None:
        with self._lock:
            if not self._linked():
                return None
            floating = sum(self._floating(p) + p.swap for p in self._book.positions.values())
            equity = round(self._balance + floating, 2)
            margin = self._margin()
            return AccountInfo(
                login=self._login, trade_mode=self.ACCOUNT_TRADE_MODE_DEMO, leverage=self._leverage,
                limit_orders=200, margin_so_mode=0, trade_allowed=True, trade_expert=self.expert_allowed,
                margin_mode=self.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, currency_digits=2, fifo_close=False,
                balance=self._balance, credit=0.0, profit=round(floating, 2), equity=equity, margin=margin,
                margin_free=round(equity - margin, 2), margin_level=round(equity / margin * 100, 2) if margin else 0.0,
                margin_so_call=50.0, margin_so_so=30.0, margin_initial=0.0, margin_maintenance=0.0, assets=0.0,
                liabilities=0.0, commission_blocked=0.0, name="Fake Trader", server=self._server, currency="USD",
                company="Fake Ltd.",
            )  # fmt: skip

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        with self._lock:
            if not self._linked():
                return False
            if symbol not in self._symbols:
                return self._fail(self.RES_E_NOT_FOUND, "Terminal: Not found")
            if enable:
                self._selected.add(symbol)
            else:
                self._selected.discard(symbol)
            return True

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        with self._lock:
            if not self._linked():
                return None
            if symbol not in self._symbols:
                self._fail(self.RES_E_NOT_FOUND, "Terminal: Not found")
                return None
            inst = instrument(symbol)
            bid, ask = self._feed.quote(symbol)
            values: dict[str, Any] = {}
            for name, kind in get_type_hints(SymbolInfo).items():
                values[name] = kind()  # False, 0, 0.0 or ""
            digits = len(f"{inst.point:.10f}".rstrip("0").split(".")[1])
            values.update(
                select=symbol in self._selected, visible=True, time=self._tick_msc[symbol] // 1000, digits=digits,
                spread=inst.spread_points, trade_mode=int(self._rule(symbol, "trade_mode")), trade_exemode=2,
                filling_mode=self._filling_mode, order_mode=127, bid=bid, ask=ask, point=inst.point,
                trade_tick_size=inst.point, trade_contract_size=inst.contract_size,
                volume_min=self._rule(symbol, "volume_min"), volume_max=self._rule(symbol, "volume_max"),
                volume_step=self._rule(symbol, "volume_step"),
                currency_base=symbol[:3], currency_profit=symbol[3:6], currency_margin=symbol[:3], name=symbol,
                path=f"Forex\\{symbol}", description=symbol,
            )  # fmt: skip
            return SymbolInfo(**values)

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        with self._lock:
            if not self._linked():
                return None
            if symbol not in self._symbols:
                self._fail(self.RES_E_NOT_FOUND, "Terminal: Not found")
                return None
            bid, ask = self._feed.quote(symbol)
            msc = self._tick_msc[symbol]
            return Tick(msc // 1000, bid, ask, 0.0, 0, msc, 6, 0.0)

    def positions_get(
        self, symbol: str | None = None, group: str | None = None, ticket: int | None = None
    ) -> tuple[TradePosition, ...] | None:
        with self._lock:
            if not self._linked():
                return None
            if symbol is not None:
                ticket = None  # the reference: ``ticket``, "Position ticket (POSITION_TICKET)", is ignored then
            found = [
                self._position_tuple(p)
                for p in sorted(self._book.positions.values(), key=lambda p: p.ticket)
                if (symbol is None or p.symbol == symbol) and (ticket is None or p.ticket == ticket)
            ]
            return tuple(found)

    def positions_total(self) -> int | None:
        with self._lock:
            return len(self._book.positions) if self._linked() else None

    def history_deals_get(
        self,
        date_from: datetime | int | None = None,
        date_to: datetime | int | None = None,
        group: str | None = None,
        *,
        ticket: int | None = None,
        position: int | None = None,
    ) -> tuple[TradeDeal, ...] | None:
        with self._lock:
            if not self._linked():
                return None
            now = time.monotonic()
            deals = [d for d in self._book.deals if self._book.visible_at.get(d.ticket, 0.0) <= now]
            if ticket is not None:  # the package's reference: ``ticket`` is the ORDER ticket (DEAL_ORDER)
                return tuple(d for d in deals if d.order == ticket)
            if position is not None:
                return tuple(d for d in deals if d.position_id == position)
            if date_from is None or date_to is None:
                self._fail(self.RES_E_INVALID_PARAMS, "Invalid arguments")
                return None
            low, high = epoch(date_from), epoch(date_to)
            return tuple(d for d in deals if low <= d.time <= high)

    def order_send(self, request: dict[str, Any]) -> OrderSendResult | None:
        with self._lock:
            if not self._linked():
                return None
            if not isinstance(request, dict):
                self._fail(self.RES_E_INVALID_PARAMS, "Invalid arguments")
                return None
            for name, value in request.items():
                kinds = REQUEST_TYPES.get(name)
                if kinds is None or not isinstance(value, kinds) or isinstance(value, bool):
                    self._fail(self.RES_E_INVALID_PARAMS, f'Invalid "{name}" argument')
                    return None
            if len(request.get("comment", "")) > 31:
                self._fail(self.RES_E_INVALID_PARAMS, 'Invalid "comment" argument')
                return None
            self.requests.append(dict(request))
            fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.delay_s > 0:
            time.sleep(fault.delay_s)  # a slow trade server: the caller's thread waits
        with self._lock:
            self._order_deal_delay_s = fault.deal_delay_s if fault is not None else None
            try:
                result = self._execute(request, fault)
            finally:
                self._order_deal_delay_s = None
            if fault is not None and fault.lost_result:
                self._fail(self.RES_E_INTERNAL_FAIL_RECEIVE, "IPC recv failed")
                return None
            return result
