"""The ``MetaTrader5`` package as the bridge reads it: the package's constants (``MetaTrader5`` 5.0.6231,
``__init__.py``; ``tests/mt5`` checks them against the wheel) and read-only protocols of the named tuples it
returns, so the package's own types and the test double both fit.
"""

from __future__ import annotations

from typing import Protocol

# --- the package's constants (MetaTrader5 5.0.6231) ---------------------------------------------------------

TRADE_ACTION_DEAL = 1
TRADE_ACTION_SLTP = 6
ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
ORDER_TIME_GTC = 0
POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1
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
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
# SymbolInfo.filling_mode is a bit set of MQL5's SYMBOL_FILLING_* flags, which the package does not define
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2
SYMBOL_FILLING_BOC = 4
# last_error() codes of the package's inter-process link to the terminal: the terminal is gone
RES_E_INTERNAL_FAIL_FIRST = -10005
RES_E_INTERNAL_FAIL_LAST = -10000

# --- what the package returns, as read here ------------------------------------------------------------------


class TradePositionLike(Protocol):
    """``identifier`` (POSITION_IDENTIFIER) names the position for its whole life; ``ticket`` (POSITION_TICKET) is
    the current one, which a swap charged by re-opening the position changes, and only a trade request names it."""

    @property
    def ticket(self) -> int: ...
    @property
    def identifier(self) -> int: ...
    @property
    def time_msc(self) -> int: ...
    @property
    def type(self) -> int: ...
    @property
    def magic(self) -> int: ...
    @property
    def volume(self) -> float: ...
    @property
    def price_open(self) -> float: ...
    @property
    def price_current(self) -> float: ...
    @property
    def sl(self) -> float: ...
    @property
    def tp(self) -> float: ...
    @property
    def profit(self) -> float: ...
    @property
    def symbol(self) -> str: ...
    @property
    def comment(self) -> str: ...


class TradeDealLike(Protocol):
    @property
    def ticket(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def entry(self) -> int: ...
    @property
    def magic(self) -> int: ...
    @property
    def position_id(self) -> int: ...
    @property
    def reason(self) -> int: ...
    @property
    def volume(self) -> float: ...
    @property
    def price(self) -> float: ...
    @property
    def commission(self) -> float: ...
    @property
    def swap(self) -> float: ...
    @property
    def fee(self) -> float: ...
    @property
    def profit(self) -> float: ...
    @property
    def symbol(self) -> str: ...
    @property
    def comment(self) -> str: ...


class OrderSendResultLike(Protocol):
    @property
    def retcode(self) -> int: ...
    @property
    def deal(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def volume(self) -> float: ...
    @property
    def price(self) -> float: ...
    @property
    def comment(self) -> str: ...


class AccountInfoLike(Protocol):
    @property
    def balance(self) -> float: ...
    @property
    def equity(self) -> float: ...
    @property
    def margin(self) -> float: ...
    @property
    def margin_free(self) -> float: ...
    @property
    def margin_level(self) -> float: ...
    @property
    def currency(self) -> str: ...


class TickLike(Protocol):
    @property
    def time_msc(self) -> int: ...
    @property
    def bid(self) -> float: ...
    @property
    def ask(self) -> float: ...
