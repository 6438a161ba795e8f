"""A simulated ``MetaTrader5`` package for tests: a terminal on a hedging account, in memory.

By concern: ``constants.py`` (the package's constants), ``state.py`` (the account's state and the package's
records built from it), ``server.py`` (the trade server behind ``order_send``), ``package.py`` (the package's
functions), ``terminal.py`` (``FakeMT5``: what tests do to the terminal).

An instance of ``FakeMT5`` stands in for the module: the same functions with the same signatures
(``initialize``, ``login``, ``shutdown``, ``last_error``, ``terminal_info``, ``account_info``, ``symbol_info``,
``symbol_info_tick``, ``symbol_select``, ``positions_get``, ``history_deals_get``, ``order_send``), the same
named tuples (field names and order as MetaQuotes documents them) and the same constants and retcode values as
``MetaTrader5`` 5.0.6231 (read from that wheel's ``__init__.py``; ``mt5_wheel.json`` holds what
``extract_wheel.py`` took from it, and ``test_fake_mt5.py`` compares). It is injected into the bridge by its
constructor; shipped code never imports it.

Behaviour, as a trade server and terminal answer:

- ``order_send`` with ``TRADE_ACTION_SLTP`` sets a position's stop loss and take profit as MT5 does, awkward
  parts included: ``position`` (the current ticket) is required (0: 10013 invalid request; no such position:
  10036), ``sl``/``tp`` left out of the request are 0.0 and 0.0 means none, so a request that names only
  ``sl`` removes the take profit; a stop on the wrong side of the price (a BUY's stop loss at or above the bid,
  its take profit at or below it; a SELL's against the ask), nearer than the symbol's ``trade_stops_level``
  points (``STOPS_LEVEL_POINTS``) or negative is 10016 (these checks are ``hedgebridge.sim.checks``'), stops
  equal to the position's are 10025 (no changes), and a successful change answers 10009 with no deal and no
  order. A market deal's ``sl``/``tp`` are checked the
  same way against its fill price and set on the position it opens; ``step()`` closes a position whose stop
  the price reached (deal reason 4 stop loss, 5 take profit);
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

from ..fake_records import (
    NAMED_TUPLES,
    AccountInfo,
    OrderSendResult,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradePosition,
    TradeRequest,
)
from .constants import DEFAULT_DEAL_DELAY_S, DEFAULT_SERVER_OFFSET_S, STOPS_LEVEL_POINTS
from .state import FakeFault
from .terminal import FakeMT5

__all__ = [
    "DEFAULT_DEAL_DELAY_S",
    "DEFAULT_SERVER_OFFSET_S",
    "NAMED_TUPLES",
    "STOPS_LEVEL_POINTS",
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
