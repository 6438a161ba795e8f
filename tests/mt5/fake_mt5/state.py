"""The simulated terminal's state (the account, its positions and deals, the link, the faults queued) and the
package's records built from it (positions, requests, ``order_send`` answers)."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hedgebridge.sim import checks
from hedgebridge.sim.feed import PriceFeed, instrument

from ..fake_records import OrderSendResult, TradeDeal, TradePosition, TradeRequest
from .constants import DEFAULT_DEAL_DELAY_S, DEFAULT_SERVER_OFFSET_S, Constants


@dataclass(frozen=True, slots=True)
class FakeFault:
    """What happens to the next ``order_send`` instead of a clean fill (see the package's docstring)."""

    retcode: int | None = None
    fill_ratio: float | None = None
    lost_result: bool = False
    delay_s: float = 0.0
    deal_delay_s: float | None = None  # this order's deals reach the history this late (None: the terminal's)
    deal_unknown: bool = False  # the answer carries no deal ticket (``result.deal`` 0)


@dataclass
class OpenPosition:
    ticket: int  # the current ticket: the identifier until a reopen()
    identifier: int
    type: int
    magic: int
    volume: float
    price_open: float
    symbol: str
    comment: str
    time_msc: int  # server time
    update_msc: int  # server time of the last change (a partial close, a reopen, new stops)
    swap: float = 0.0  # charged so far
    sl: float = 0.0  # 0: none
    tp: float = 0.0


@dataclass
class Book:
    positions: dict[int, OpenPosition] = field(default_factory=dict)
    deals: list[TradeDeal] = field(default_factory=list)
    visible_at: dict[int, float] = field(default_factory=dict)  # deal ticket -> monotonic time it is in the history


RULES: dict[str, float] = {"volume_min": 0.01, "volume_max": 100.0, "volume_step": 0.01, "trade_mode": 4.0}


def deal_ticket(deal: TradeDeal, fault: FakeFault | None) -> int:
    """``result.deal``: 0 when the trade server did not know the deal yet when it answered."""
    return 0 if fault is not None and fault.deal_unknown else deal.ticket


def epoch(value: datetime | int) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


class State(Constants):
    """One terminal and one hedging account."""

    def __init__(
        self,
        login: int = 5_001_001,
        password: str = "",
        server: str = "Fake-Demo",
        *,
        symbols: Iterable[str] = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD"),
        balance: float = 10_000.0,
        leverage: int = 100,
        seed: int = 3,
        first_ticket: int = 70_000_000,
        filling_mode: int = 1,  # SYMBOL_FILLING_FOK
        commission_per_lot: float = 3.5,  # per side; the round turn is charged on the closing deal
        server_offset_s: int = DEFAULT_SERVER_OFFSET_S,
        deal_delay_s: float = DEFAULT_DEAL_DELAY_S,
    ) -> None:
        self._lock = threading.RLock()
        self._login = login
        self._password = password
        self._server = server
        self._balance = balance
        self._leverage = leverage
        self._symbols = tuple(symbols)
        self._selected: set[str] = set()
        self._filling_mode = filling_mode
        self._commission_per_lot = commission_per_lot
        self._feed = PriceFeed(self._symbols, random.Random(seed))
        self.server_offset_s = server_offset_s  # the trade server's clock minus UTC
        self.deal_delay_s = deal_delay_s
        self._order_deal_delay_s: float | None = None  # the order being executed's, from its fault
        self._tick_msc = dict.fromkeys(self._symbols, self.server_msc())  # the last price change, server time
        self._book = Book()
        self._next_order = first_ticket
        self._next_deal = first_ticket * 2
        self._initialized = False
        self._reachable = True
        self._error: tuple[int, str] = (self.RES_S_OK, "Success")
        self.trade_allowed = True  # the terminal's "Algo Trading" button
        self.expert_allowed = True  # the trade server allows expert trading on the account
        self.faults: deque[FakeFault] = deque()
        self._rules: dict[str, dict[str, float]] = {}  # per symbol: the rules set_symbol changed
        self.requests: list[dict[str, Any]] = []  # every order_send request, refused ones included
        self.initialize_calls = 0

    def _rule(self, symbol: str, name: str) -> float:
        return self._rules.get(symbol, {}).get(name, RULES[name])

    def server_msc(self) -> int:
        """The trade server's clock now, in milliseconds as the package gives times."""
        return int(time.time() * 1000) + self.server_offset_s * 1000

    def _linked(self) -> bool:
        if not self._reachable:
            self._error = (self.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
            return False
        if not self._initialized:
            self._error = (self.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
            return False
        return True

    def _fail(self, code: int, message: str) -> bool:
        self._error = (code, message)
        return False

    def _credentials_ok(self, login: int, password: str | None, server: str | None) -> bool:
        if login != self._login:
            return False
        if self._password and password != self._password:
            return False
        return server is None or server == self._server

    def _request_tuple(self, request: dict[str, Any]) -> TradeRequest:
        defaults: dict[str, Any] = dict.fromkeys(TradeRequest._fields, 0)
        defaults.update(symbol="", comment="", volume=0.0, price=0.0, stoplimit=0.0, sl=0.0, tp=0.0)
        defaults.update(request)
        return TradeRequest(**defaults)

    def _answer(self, request: dict[str, Any], retcode: int, deal: int = 0, order: int = 0, volume: float = 0.0,
                price: float = 0.0) -> OrderSendResult:  # fmt: skip
        symbol = str(request.get("symbol", ""))
        bid, ask = self._feed.quote(symbol) if symbol in self._symbols else (0.0, 0.0)
        self._error = (self.RES_S_OK, "Success")
        return OrderSendResult(retcode, deal, order, volume, price, bid, ask, checks.TEXT.get(retcode, ""), 1,
                               0, self._request_tuple(request))  # fmt: skip

    def _profit(self, position: OpenPosition, volume: float, price: float) -> float:
        inst = instrument(position.symbol)
        direction = 1 if position.type == self.POSITION_TYPE_BUY else -1
        raw = (price - position.price_open) * direction * volume * inst.contract_size
        if not inst.quote_in_account_currency:
            raw /= price
        return round(raw, 2)

    def _mark(self, position: OpenPosition) -> float:
        bid, ask = self._feed.quote(position.symbol)
        return bid if position.type == self.POSITION_TYPE_BUY else ask

    def _floating(self, position: OpenPosition) -> float:
        return self._profit(position, position.volume, self._mark(position))

    def _margin(self) -> float:
        total = 0.0
        for p in self._book.positions.values():
            inst = instrument(p.symbol)
            notional = p.volume * inst.contract_size * (p.price_open if inst.quote_in_account_currency else 1.0)
            total += notional / self._leverage
        return round(total, 2)

    def _position_tuple(self, p: OpenPosition) -> TradePosition:
        return TradePosition(
            ticket=p.ticket, time=p.time_msc // 1000, time_msc=p.time_msc, time_update=p.update_msc // 1000,
            time_update_msc=p.update_msc, type=p.type, magic=p.magic, identifier=p.identifier,
            reason=self.DEAL_REASON_EXPERT, volume=p.volume, price_open=p.price_open, sl=p.sl, tp=p.tp,
            price_current=self._mark(p), swap=p.swap, profit=self._floating(p), symbol=p.symbol, comment=p.comment,
            external_id="",
        )  # fmt: skip
