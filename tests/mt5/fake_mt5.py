"""A simulated ``MetaTrader5`` package for tests: a terminal on a hedging account, in memory.

An instance of ``FakeMT5`` stands in for the module: the same functions with the same signatures
(``initialize``, ``login``, ``shutdown``, ``last_error``, ``terminal_info``, ``account_info``, ``symbol_info``,
``symbol_info_tick``, ``symbol_select``, ``positions_get``, ``history_deals_get``, ``order_send``), the same
named tuples (field names and order as MetaQuotes documents them) and the same constants and retcode values as
``MetaTrader5`` 5.0.6231 (read from that wheel's ``__init__.py``; ``mt5_wheel.json`` holds what
``extract_wheel.py`` took from it, and ``test_fake_mt5.py`` compares). It is injected into the bridge by its
constructor; shipped code never imports it.

Behaviour, as a trade server and terminal answer:

- ``order_send`` checks its arguments' types (``None`` and ``last_error`` ``(-2, 'Invalid "x" argument')``),
  the comment's length (31), the volume against the symbol's min/max/step (10014), the symbol's trade mode
  (10017 disabled, 10042 long only, 10043 short only, 10044 close only), the filling mode against
  the symbol's (10030), the price against the market and ``deviation`` (10004 requote), a close's position
  (10036) and volume (10038); a fill opens or reduces a position (its ticket and identifier = the opening
  order's ticket) and writes deals (entry IN/OUT, magic, comment, position id = the identifier, profit, swap) to
  the history;
- a position is named by two numbers, as in MT5: ``identifier`` (POSITION_IDENTIFIER, the deals'
  ``position_id``) never changes, while ``ticket`` (POSITION_TICKET) can: ``reopen()`` is the trade server's
  service operation that charges swap by re-opening the position under a new ticket (MQL5 reference, Position
  Properties: the ticket "usually matches the ticket of an order used to open the position except when the
  ticket is changed as a result of service operations on the server, for example, when charging swaps with
  position re-opening"). ``positions_get(ticket=)`` and a request's ``position`` name the current ticket
  (POSITION_TICKET "corresponds to MqlTradeRequest::position"); the swap is in the position's ``swap`` and the
  equity, and moves to the closing deal's ``swap`` (its share of the volume) when the position closes;
- prices come from ``hedgebridge.sim``'s random-walk feed; ``step()`` moves them;
- faults (``FakeFault``), one per ``order_send``: a retcode (nothing executes), a partial fill (10010), a lost
  result (it executes but ``order_send`` returns None, as when the link to the terminal breaks mid-call), and a
  delay (the call blocks, as a slow trade server does, then goes on);
- deals reach the history ``deal_delay_s`` after they are made (``DEFAULT_DEAL_DELAY_S``, or
  ``FakeFault(deal_delay_s=...)`` for one order), as in a terminal, whose history can lag ``order_send``'s
  answer, the closing deal especially (MQL5's ``OrderSend`` reference: the deals of an order "may happen after
  sending a response"; ``result.deal`` may then be 0); positions and the balance change at once;
- each symbol's rules (``symbol_info``: volume 0.01 to 100 in steps of 0.01, trade mode full) change with
  ``set_symbol()``, as a broker changes them;
- ``lose_terminal()`` breaks the link: every call fails with ``(-10004, 'No IPC connection')`` until
  ``restore_terminal()``; ``close_outside()`` closes a position as a stop loss or a person would;
  ``open_positions()`` names the open positions by identifier (what the protocol's mtTicket is).

Times are the trade server's clock, as the real package gives them. MetaQuotes' reference of the Python
package (``copy_rates_from``, ``copy_ticks_from``, ``history_deals_get``…) says the terminal keeps times "in UTC
time zone (without the shift)" and asks for ``datetime`` arguments "created in UTC time". What the package
returns is the trade server's wall clock written as if it were UTC seconds: a broker whose server runs on
EET/EEST (UTC+2 in winter, UTC+3 in summer, the usual choice, so that daily bars close at 17:00 New York) gives
times 2-3 h ahead of the real UTC, and a range asked with a UTC ``datetime`` misses the last 2-3 h (mt5linux
issue #25: a GMT+2 server asked for the bars up to "now" in UTC answers with those of two hours earlier;
Mql5-Python-Integration issue #31: ``history_deals_get`` with local ``datetime``s finds nothing; MQL5's
``HistorySelect``, which the package's ``history_deals_get`` wraps, selects "the specified period of server
time"). So here:

- ``time``/``time_msc`` of a tick (``symbol_info_tick``; ``symbol_info().time``) are the server time of the last
  price change (``step()``): they stand still while the market does, as on a quiet or closed market;
- positions (``time``, ``time_msc``, ``time_update``, ``time_update_msc``) and deals (``time``, ``time_msc``)
  carry the server time they were made at;
- ``history_deals_get(date_from, date_to)`` turns a ``datetime`` into seconds as its ``timestamp()`` does (a
  naive one as local time), takes an ``int`` as seconds, and compares them with the deals' server times as
  they are, bounds included;
- the package has no call that answers the offset (MQL5's ``TimeTradeServer``/``TimeGMT`` are not in it):
  programs compare a fresh tick's or deal's time with their UTC clock (rounded to a quarter of an hour, as
  server time zones are) or are told the offset.

``server_offset_s`` is the trade server's offset from UTC: ``DEFAULT_SERVER_OFFSET_S`` (+3 h) unless a test
says otherwise (0 for a server on UTC); it may change during a test, as at a daylight saving change.
``age(seconds)`` makes the positions and deals so far older, as if they had been made that long ago.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_type_hints

from hedgebridge.sim.feed import PriceFeed, instrument

from .fake_records import (
    NAMED_TUPLES,
    REQUEST_TYPES,
    RETCODE_TEXT,
    AccountInfo,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradePosition,
    TradeRequest,
)

__all__ = [
    "NAMED_TUPLES",
    "AccountInfo",
    "FakeFault",
    "FakeMT5",
    "OrderSendResult",
    "SymbolInfo",
    "TerminalInfo",
    "Tick",
    "TradeDeal",
    "TradePosition",
    "TradeRequest",
]

DEFAULT_SERVER_OFFSET_S = 3 * 3600  # EEST: the trade servers of most brokers in summer
DEFAULT_DEAL_DELAY_S = 0.2


@dataclass(frozen=True, slots=True)
class FakeFault:
    """What happens to the next ``order_send`` instead of a clean fill (see the module's docstring)."""

    retcode: int | None = None
    fill_ratio: float | None = None
    lost_result: bool = False
    delay_s: float = 0.0
    deal_delay_s: float | None = None  # this order's deals reach the history this late (None: the terminal's)
    deal_unknown: bool = False  # the answer carries no deal ticket (``result.deal`` 0)


@dataclass
class _Position:
    ticket: int  # the current ticket: the identifier until a reopen()
    identifier: int
    type: int
    magic: int
    volume: float
    price_open: float
    symbol: str
    comment: str
    time_msc: int  # server time
    update_msc: int  # server time of the last change (a partial close, a reopen)
    swap: float = 0.0  # charged so far


@dataclass
class _Book:
    positions: dict[int, _Position] = field(default_factory=dict)
    deals: list[TradeDeal] = field(default_factory=list)
    visible_at: dict[int, float] = field(default_factory=dict)  # deal ticket -> monotonic time it is in the history


class FakeMT5:
    """A stand-in for the ``MetaTrader5`` module, one terminal and one hedging account per instance."""

    __version__ = "5.0.6231"

    # constants: the values of MetaTrader5 5.0.6231
    TRADE_ACTION_DEAL = 1
    TRADE_ACTION_PENDING = 5
    TRADE_ACTION_SLTP = 6
    TRADE_ACTION_MODIFY = 7
    TRADE_ACTION_REMOVE = 8
    TRADE_ACTION_CLOSE_BY = 10
    ORDER_TYPE_BUY = 0
    ORDER_TYPE_SELL = 1
    ORDER_TYPE_BUY_LIMIT = 2
    ORDER_TYPE_SELL_LIMIT = 3
    ORDER_TYPE_BUY_STOP = 4
    ORDER_TYPE_SELL_STOP = 5
    ORDER_TYPE_BUY_STOP_LIMIT = 6
    ORDER_TYPE_SELL_STOP_LIMIT = 7
    ORDER_TYPE_CLOSE_BY = 8
    ORDER_FILLING_FOK = 0
    ORDER_FILLING_IOC = 1
    ORDER_FILLING_RETURN = 2
    ORDER_FILLING_BOC = 3
    ORDER_TIME_GTC = 0
    ORDER_TIME_DAY = 1
    ORDER_TIME_SPECIFIED = 2
    ORDER_TIME_SPECIFIED_DAY = 3
    POSITION_TYPE_BUY = 0
    POSITION_TYPE_SELL = 1
    DEAL_TYPE_BUY = 0
    DEAL_TYPE_SELL = 1
    DEAL_TYPE_BUY_CANCELED = 13
    DEAL_TYPE_SELL_CANCELED = 14
    DEAL_ENTRY_IN = 0
    DEAL_ENTRY_OUT = 1
    DEAL_ENTRY_INOUT = 2
    DEAL_ENTRY_OUT_BY = 3
    DEAL_REASON_CLIENT = 0
    DEAL_REASON_MOBILE = 1
    DEAL_REASON_WEB = 2
    DEAL_REASON_EXPERT = 3
    DEAL_REASON_SL = 4
    DEAL_REASON_TP = 5
    DEAL_REASON_SO = 6
    DEAL_REASON_ROLLOVER = 7
    DEAL_REASON_VMARGIN = 8
    DEAL_REASON_SPLIT = 9
    ACCOUNT_TRADE_MODE_DEMO = 0
    ACCOUNT_TRADE_MODE_CONTEST = 1
    ACCOUNT_TRADE_MODE_REAL = 2
    ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
    ACCOUNT_MARGIN_MODE_EXCHANGE = 1
    ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
    TRADE_RETCODE_REQUOTE = 10004
    TRADE_RETCODE_REJECT = 10006
    TRADE_RETCODE_CANCEL = 10007
    TRADE_RETCODE_PLACED = 10008
    TRADE_RETCODE_DONE = 10009
    TRADE_RETCODE_DONE_PARTIAL = 10010
    TRADE_RETCODE_ERROR = 10011
    TRADE_RETCODE_TIMEOUT = 10012
    TRADE_RETCODE_INVALID = 10013
    TRADE_RETCODE_INVALID_VOLUME = 10014
    TRADE_RETCODE_INVALID_PRICE = 10015
    TRADE_RETCODE_INVALID_STOPS = 10016
    TRADE_RETCODE_TRADE_DISABLED = 10017
    TRADE_RETCODE_MARKET_CLOSED = 10018
    TRADE_RETCODE_NO_MONEY = 10019
    TRADE_RETCODE_PRICE_CHANGED = 10020
    TRADE_RETCODE_PRICE_OFF = 10021
    TRADE_RETCODE_INVALID_EXPIRATION = 10022
    TRADE_RETCODE_ORDER_CHANGED = 10023
    TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
    TRADE_RETCODE_NO_CHANGES = 10025
    TRADE_RETCODE_SERVER_DISABLES_AT = 10026
    TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
    TRADE_RETCODE_LOCKED = 10028
    TRADE_RETCODE_FROZEN = 10029
    TRADE_RETCODE_INVALID_FILL = 10030
    TRADE_RETCODE_CONNECTION = 10031
    TRADE_RETCODE_ONLY_REAL = 10032
    TRADE_RETCODE_LIMIT_ORDERS = 10033
    TRADE_RETCODE_LIMIT_VOLUME = 10034
    TRADE_RETCODE_INVALID_ORDER = 10035
    TRADE_RETCODE_POSITION_CLOSED = 10036
    TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038
    TRADE_RETCODE_CLOSE_ORDER_EXIST = 10039
    TRADE_RETCODE_LIMIT_POSITIONS = 10040
    TRADE_RETCODE_REJECT_CANCEL = 10041
    TRADE_RETCODE_LONG_ONLY = 10042
    TRADE_RETCODE_SHORT_ONLY = 10043
    TRADE_RETCODE_CLOSE_ONLY = 10044
    TRADE_RETCODE_FIFO_CLOSE = 10045
    RES_S_OK = 1
    RES_E_FAIL = -1
    RES_E_INVALID_PARAMS = -2
    RES_E_NO_MEMORY = -3
    RES_E_NOT_FOUND = -4
    RES_E_INVALID_VERSION = -5
    RES_E_AUTH_FAILED = -6
    RES_E_UNSUPPORTED = -7
    RES_E_AUTO_TRADING_DISABLED = -8
    RES_E_INTERNAL_FAIL = -10000
    RES_E_INTERNAL_FAIL_SEND = -10001
    RES_E_INTERNAL_FAIL_RECEIVE = -10002
    RES_E_INTERNAL_FAIL_INIT = -10003
    RES_E_INTERNAL_FAIL_CONNECT = -10004
    RES_E_INTERNAL_FAIL_TIMEOUT = -10005

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
        self._book = _Book()
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

    # --- what tests do to the terminal -------------------------------------------------------------------

    def set_symbol(self, symbol: str, **rules: float | str) -> None:
        """The broker changes a symbol's rules: ``volume_min``, ``volume_max``, ``volume_step``, ``trade_mode`` (a
        SYMBOL_TRADE_MODE number, or the protocol's name: DISABLED, LONG_ONLY, SHORT_ONLY, CLOSE_ONLY, FULL)."""
        names = {"DISABLED": 0, "LONG_ONLY": 1, "SHORT_ONLY": 2, "CLOSE_ONLY": 3, "FULL": 4}
        with self._lock:
            changed = dict(self._rules.get(symbol, {}))
            for key, value in rules.items():
                if key not in _RULES:
                    raise ValueError(f"{key}: not a rule of the fake terminal")
                changed[key] = float(names[value]) if isinstance(value, str) else float(value)
            self._rules[symbol] = changed

    def _rule(self, symbol: str, name: str) -> float:
        return self._rules.get(symbol, {}).get(name, _RULES[name])

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

    def server_msc(self) -> int:
        """The trade server's clock now, in milliseconds as the package gives times."""
        return int(time.time() * 1000) + self.server_offset_s * 1000

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

    # --- the package's functions -------------------------------------------------------------------------

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
            low, high = _epoch(date_from), _epoch(date_to)
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

    # --- inside ------------------------------------------------------------------------------------------

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
        return OrderSendResult(retcode, deal, order, volume, price, bid, ask, RETCODE_TEXT.get(retcode, ""), 1,
                               0, self._request_tuple(request))  # fmt: skip

    def _execute(self, request: dict[str, Any], fault: FakeFault | None) -> OrderSendResult:
        if fault is not None and fault.retcode is not None:
            return self._answer(request, fault.retcode)
        if request.get("action") != self.TRADE_ACTION_DEAL:
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        symbol = str(request.get("symbol", ""))
        if symbol not in self._symbols:
            return self._answer(request, self.TRADE_RETCODE_INVALID)
        if not self.trade_allowed:
            return self._answer(request, self.TRADE_RETCODE_CLIENT_DISABLES_AT)
        volume = float(request.get("volume", 0.0))
        step, low, high = (self._rule(symbol, n) for n in ("volume_step", "volume_min", "volume_max"))
        steps = volume / step
        if volume < low - 1e-9 or volume > high + 1e-9 or abs(steps - round(steps)) > 1e-6:
            return self._answer(request, self.TRADE_RETCODE_INVALID_VOLUME)
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
            return self._answer(request, retcode, _deal_ticket(deal, fault), order, volume, market)
        now_ms = self.server_msc()
        self._book.positions[order] = _Position(order, order, side, magic, volume, market, symbol, comment, now_ms,
                                                now_ms)  # fmt: skip
        deal = self._deal(order, symbol, side, self.DEAL_ENTRY_IN, magic, order, self.DEAL_REASON_EXPERT, volume,
                          market, 0.0, comment)  # fmt: skip
        return self._answer(request, retcode, _deal_ticket(deal, fault), order, volume, market)

    def _trade_mode(self, symbol: str, side: int, *, opening: bool) -> int:
        """The retcode a symbol's trade mode refuses the order with, 0 when it allows it."""
        mode = int(self._rule(symbol, "trade_mode"))
        if mode == 0:
            return self.TRADE_RETCODE_TRADE_DISABLED
        if opening and mode == 3:
            return self.TRADE_RETCODE_CLOSE_ONLY
        if opening and mode == 1 and side == self.ORDER_TYPE_SELL:
            return self.TRADE_RETCODE_LONG_ONLY
        if opening and mode == 2 and side == self.ORDER_TYPE_BUY:
            return self.TRADE_RETCODE_SHORT_ONLY
        return 0

    def _fill_close(
        self, position: _Position, volume: float, price: float, magic: int, comment: str, reason: int, order: int
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

    def _profit(self, position: _Position, volume: float, price: float) -> float:
        inst = instrument(position.symbol)
        direction = 1 if position.type == self.POSITION_TYPE_BUY else -1
        raw = (price - position.price_open) * direction * volume * inst.contract_size
        if not inst.quote_in_account_currency:
            raw /= price
        return round(raw, 2)

    def _mark(self, position: _Position) -> float:
        bid, ask = self._feed.quote(position.symbol)
        return bid if position.type == self.POSITION_TYPE_BUY else ask

    def _floating(self, position: _Position) -> float:
        return self._profit(position, position.volume, self._mark(position))

    def _margin(self) -> float:
        total = 0.0
        for p in self._book.positions.values():
            inst = instrument(p.symbol)
            notional = p.volume * inst.contract_size * (p.price_open if inst.quote_in_account_currency else 1.0)
            total += notional / self._leverage
        return round(total, 2)

    def _position_tuple(self, p: _Position) -> TradePosition:
        return TradePosition(
            ticket=p.ticket, time=p.time_msc // 1000, time_msc=p.time_msc, time_update=p.update_msc // 1000,
            time_update_msc=p.update_msc, type=p.type, magic=p.magic, identifier=p.identifier,
            reason=self.DEAL_REASON_EXPERT, volume=p.volume, price_open=p.price_open, sl=0.0, tp=0.0,
            price_current=self._mark(p), swap=p.swap, profit=self._floating(p), symbol=p.symbol, comment=p.comment,
            external_id="",
        )  # fmt: skip


_RULES: dict[str, float] = {"volume_min": 0.01, "volume_max": 100.0, "volume_step": 0.01, "trade_mode": 4.0}


def _deal_ticket(deal: TradeDeal, fault: FakeFault | None) -> int:
    """``result.deal``: 0 when the trade server did not know the deal yet when it answered."""
    return 0 if fault is not None and fault.deal_unknown else deal.ticket


def _epoch(value: datetime | int) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)


for _name, _kind in NAMED_TUPLES.items():  # the named tuples, reachable as on the module (mt5.TradePosition…)
    setattr(FakeMT5, _name, _kind)
