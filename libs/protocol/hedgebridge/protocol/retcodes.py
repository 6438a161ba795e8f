"""MT5 trade server return codes (``MqlTradeResult.retcode``) and what to do about each.

The values are MetaTrader 5's ``TRADE_RETCODE_*`` constants. Every code the executor can meet falls into
one class:

- DONE: executed (DONE_PARTIAL: executed for part of the volume; the rest is never re-sent silently).
- RETRY: the price moved or the server is busy: send again with a fresh price, with a bounded backoff.
- RECONCILE: the server may or may not have executed it: compare with the terminal's positions first.
- FINAL: the request cannot succeed as it is (bad volume, market closed, no money…): report it.
- ALREADY_CLOSED: a CLOSE (or MODIFY) for a position that no longer exists: it is closed either way.
- NO_CHANGES: a MODIFY that asks for the stops the position has already (10025): its goal holds, nothing
  was changed.
"""

from __future__ import annotations

from enum import StrEnum


class RetcodeClass(StrEnum):
    DONE = "DONE"
    DONE_PARTIAL = "DONE_PARTIAL"
    RETRY = "RETRY"
    RECONCILE = "RECONCILE"
    FINAL = "FINAL"
    ALREADY_CLOSED = "ALREADY_CLOSED"
    NO_CHANGES = "NO_CHANGES"


REQUOTE = 10004
REJECT = 10006
CANCEL = 10007
PLACED = 10008
DONE = 10009
DONE_PARTIAL = 10010
ERROR = 10011
TIMEOUT = 10012
INVALID = 10013
INVALID_VOLUME = 10014
INVALID_PRICE = 10015
INVALID_STOPS = 10016
TRADE_DISABLED = 10017
MARKET_CLOSED = 10018
NO_MONEY = 10019
PRICE_CHANGED = 10020
PRICE_OFF = 10021
INVALID_EXPIRATION = 10022
ORDER_CHANGED = 10023
TOO_MANY_REQUESTS = 10024
NO_CHANGES = 10025
SERVER_DISABLES_AT = 10026
CLIENT_DISABLES_AT = 10027
LOCKED = 10028
FROZEN = 10029
INVALID_FILL = 10030
CONNECTION = 10031
ONLY_REAL = 10032
LIMIT_ORDERS = 10033
LIMIT_VOLUME = 10034
INVALID_ORDER = 10035
POSITION_CLOSED = 10036
INVALID_CLOSE_VOLUME = 10038
CLOSE_ORDER_EXIST = 10039
LIMIT_POSITIONS = 10040
REJECT_CANCEL = 10041
LONG_ONLY = 10042
SHORT_ONLY = 10043
CLOSE_ONLY = 10044
FIFO_CLOSE = 10045
HEDGE_PROHIBITED = 10046

NAMES: dict[int, str] = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and 10000 <= value < 11000
}

_CLASSES: dict[int, RetcodeClass] = {
    PLACED: RetcodeClass.DONE,
    DONE: RetcodeClass.DONE,
    DONE_PARTIAL: RetcodeClass.DONE_PARTIAL,
    REQUOTE: RetcodeClass.RETRY,
    PRICE_CHANGED: RetcodeClass.RETRY,
    PRICE_OFF: RetcodeClass.RETRY,
    TOO_MANY_REQUESTS: RetcodeClass.RETRY,
    LOCKED: RetcodeClass.RETRY,
    ORDER_CHANGED: RetcodeClass.RETRY,
    ERROR: RetcodeClass.RECONCILE,
    TIMEOUT: RetcodeClass.RECONCILE,
    CONNECTION: RetcodeClass.RECONCILE,
    POSITION_CLOSED: RetcodeClass.ALREADY_CLOSED,
    NO_CHANGES: RetcodeClass.NO_CHANGES,
}


def classify(retcode: int | None, *, closing: bool = False, modifying: bool = False) -> RetcodeClass:
    """The class of ``retcode``. Codes not listed above (REJECT, INVALID_*, MARKET_CLOSED, NO_MONEY,
    TRADE_DISABLED, unknown codes…) are FINAL; POSITION_CLOSED is ALREADY_CLOSED only for a CLOSE or a
    MODIFY (a position it names is gone), NO_CHANGES is NO_CHANGES only for a MODIFY."""
    if retcode is None:
        return RetcodeClass.FINAL
    found = _CLASSES.get(retcode, RetcodeClass.FINAL)
    if found is RetcodeClass.ALREADY_CLOSED and not (closing or modifying):
        return RetcodeClass.FINAL
    if found is RetcodeClass.NO_CHANGES and not modifying:
        return RetcodeClass.FINAL
    return found


def name(retcode: int | None) -> str:
    if retcode is None:
        return "NONE"
    return NAMES.get(retcode, f"RETCODE_{retcode}")
