"""The trade server's clock. The ``MetaTrader5`` package gives every time (ticks, positions, deals) and takes the
range of ``history_deals_get`` in the trade server's time written as if it were UTC seconds: a broker whose server
runs on UTC+3 gives times 3 h ahead of UTC. The bridge reports UTC, so it needs the server's offset from UTC:

- ``HEDGEBRIDGE_MT5BRIDGE_SERVER_UTC_OFFSET`` when it is set;
- else derived from a time known to be fresh: a tick whose time changed since the bridge last read that symbol
  (so it is at most that old), or the deal of an order the bridge just sent (made between the call and the
  read). Its difference with the host's UTC clock, rounded to a quarter of an hour (server time zones are
  whole quarters, as the EA assumes), is the offset, accepted when the remainder fits the time's age and the
  clocks' skew. A tick that did not change says nothing (the market may be closed: its time is Friday's), so
  until a fresh time is seen the offset is unknown; a derived offset changes (a daylight saving change) when
  two fresh times in a row agree on the new one.

Pure code but for the host's clock (``utc_ms``), which tests may replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from hedgebridge.common import logs

log = logs.get("mt5bridge")

QUARTER_S = 900
MAX_SKEW_S = 120  # how far the host's UTC clock may be off the trade server's
MAX_AGE_S = 300  # older "fresh" times are not used: with the skew they would not round to one quarter
MAX_OFFSET_S = 14 * 3600  # time zones run from UTC-12 to UTC+14


def utc_ms() -> int:
    return time.time_ns() // 1_000_000


def derive(server_msc: int, utc_msc: int, max_age_ms: int) -> int | None:
    """The offset (seconds, a whole quarter of an hour) that makes ``server_msc`` a time at most ``max_age_ms``
    before ``utc_msc``, give or take the clocks' skew; None when no offset fits."""
    if max_age_ms < 0 or max_age_ms > MAX_AGE_S * 1000:
        return None
    diff = server_msc - utc_msc
    offset = round(diff / (QUARTER_S * 1000)) * QUARTER_S
    rest = diff - offset * 1000  # the clocks' skew minus the time's age
    if not -(max_age_ms + MAX_SKEW_S * 1000) <= rest <= MAX_SKEW_S * 1000 or abs(offset) > MAX_OFFSET_S:
        return None
    return offset


class ServerClock:
    """The trade server's offset from UTC (configured, else derived) and conversions both ways."""

    def __init__(self, configured_s: int | None = None, now_ms: Callable[[], int] = utc_ms) -> None:
        self.configured_s = configured_s
        self.derived_s: int | None = None
        self._candidate: int | None = None  # a new offset seen once
        self._ticks: dict[str, tuple[int, int]] = {}  # symbol -> (tick time, host UTC when it was read)
        self.now_ms = now_ms

    @property
    def offset_s(self) -> int | None:
        return self.configured_s if self.configured_s is not None else self.derived_s

    def tick(self, symbol: str, tick_msc: int) -> None:
        """A tick just read: its time is fresh when it changed since the last read of ``symbol``."""
        now = self.now_ms()
        previous = self._ticks.get(symbol)
        self._ticks[symbol] = (tick_msc, now)
        if previous is not None and tick_msc > previous[0]:
            self._learn(derive(tick_msc, now, now - previous[1]))

    def deal(self, deal_msc: int, sent_ms: int) -> None:
        """The deal of an order sent at ``sent_ms`` (host UTC), read now."""
        now = self.now_ms()
        self._learn(derive(deal_msc, now, now - sent_ms))

    def _learn(self, offset: int | None) -> None:
        if offset is None or offset == self.derived_s:
            self._candidate = None
            return
        if self.derived_s is not None and offset != self._candidate:
            self._candidate = offset  # one fresh time against the known offset: wait for a second
            return
        if self.configured_s is not None and offset != self.configured_s:
            log.warning(
                "the trade server's times do not fit the configured offset from UTC",
                configured=describe(self.configured_s),
                seen=describe(offset),
            )
        else:
            log.info("trade server offset from UTC", offset=describe(offset))
        self.derived_s, self._candidate = offset, None

    def to_utc(self, server_msc: int) -> datetime | None:
        """A server time in milliseconds as a UTC timestamp; None while the offset is unknown."""
        offset = self.offset_s
        if offset is None or server_msc <= 0:
            return None
        return datetime.fromtimestamp(server_msc / 1000 - offset, UTC)

    def server_now_s(self) -> int | None:
        """The trade server's clock now, in the package's seconds; None while the offset is unknown."""
        offset = self.offset_s
        return None if offset is None else self.now_ms() // 1000 + offset


def describe(offset_s: int) -> str:
    """``+03:00``, ``-04:30``."""
    sign = "-" if offset_s < 0 else "+"
    minutes = abs(offset_s) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
