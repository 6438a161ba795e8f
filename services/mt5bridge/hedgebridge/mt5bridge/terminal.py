"""The ``MetaTrader5`` package, called on its one worker thread: the package is not thread-safe and blocks,
so every call runs there, in order. A call whose answer says the package lost its link to the terminal
raises ``TerminalLost``. The trade server's clock (``clock.py``) lives here: the package's times are its.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import translate as tr
from .clock import MAX_OFFSET_S, ServerClock
from .errors import TerminalLost

_DAY_S = 86_400


class Terminal:
    """``mt5`` is the package's module, or a stand-in for it (set at start when None)."""

    def __init__(self, mt5: Any | None, history_days: int, clock: ServerClock | None = None) -> None:
        self.module = mt5
        self._history_days = history_days
        self.clock = clock if clock is not None else ServerClock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5")

    @property
    def mt5(self) -> Any:
        assert self.module is not None, "bridge not started"
        return self.module

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the package on its worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    async def query(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the package; its answer (None or False for an ordinary failure: not found…), or TerminalLost
        when its link to the terminal is broken."""
        result = await self.call(function, *args, **kwargs)
        if result is None or result is False:
            code, text = await self.call(self.mt5.last_error)
            if tr.RES_E_INTERNAL_FAIL_FIRST <= code <= tr.RES_E_INTERNAL_FAIL_LAST:
                raise TerminalLost(f"{getattr(function, '__name__', 'call')}: {text} ({code})")
        return result

    async def history(self) -> tuple[Any, ...]:
        """The deals of the last ``history_days`` (to tomorrow), asked in the trade server's time, in seconds;
        while the server's offset is unknown the range is wider by the largest offset on both sides."""
        now = self.clock.server_now_s()
        margin = 0 if now is not None else MAX_OFFSET_S
        if now is None:
            now = self.clock.now_ms() // 1000
        start, end = now - self._history_days * _DAY_S - margin, now + _DAY_S + margin
        deals = await self.query(self.mt5.history_deals_get, start, end)
        return tuple(deals or ())

    async def deal(self, deal: int, order: int, sent_ms: int) -> Any:
        """The deal ``deal`` of the order ``order`` sent at ``sent_ms`` (host UTC); just after ``order_send`` it
        may take a moment to reach the history. The package finds deals by their order (``ticket=`` is
        DEAL_ORDER) or their position, never by the deal's own ticket. A deal found tells the server's clock."""
        if not deal or not order:
            return None
        for _ in range(25):
            deals = await self.query(self.mt5.history_deals_get, ticket=order)
            found = [d for d in deals or () if d.ticket == deal]
            if found:
                self.clock.deal(found[0].time_msc, sent_ms)
                return found[0]
            await asyncio.sleep(0.02)
        return None

    async def tick(self, symbol: str) -> Any:
        """The symbol's last tick (None when the terminal has none); its time tells the server's clock."""
        tick = await self.query(self.mt5.symbol_info_tick, symbol)
        if tick is not None:
            self.clock.tick(symbol, tick.time_msc)
        return tick

    async def positions(self) -> tuple[Any, ...]:
        positions = await self.query(self.mt5.positions_get)
        if positions is None:
            code, text = await self.call(self.mt5.last_error)
            raise TerminalLost(f"positions_get: {text} ({code})")
        return tuple(positions)
