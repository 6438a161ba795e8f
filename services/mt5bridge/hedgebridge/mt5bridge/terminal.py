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

    async def fill_deals(self, result: Any, sent_ms: int, wait_ms: int) -> tuple[Any, ...]:
        """The deals of a filled order (``result`` of ``order_send``, sent at ``sent_ms``, host UTC). They can
        reach the terminal's history a while after ``order_send`` answers (the closing deal especially, and
        ``result.deal`` may be 0), so the history is asked again until they are all there (``result.deal``
        among them, as much volume as was filled) or ``wait_ms`` has passed: then none (a part would tell a
        wrong price and profit). The package finds deals by their order (``ticket=`` is DEAL_ORDER) or their
        position, never by the deal's own ticket. Deals found tell the server's clock."""
        if not result.order:
            return ()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        pause = 0.01
        while True:
            deals = tuple(await self.query(self.mt5.history_deals_get, ticket=result.order) or ())
            if deals and _complete(deals, result.deal, result.volume):
                self.clock.deal(max(d.time_msc for d in deals), sent_ms)
                return deals
            left = deadline - loop.time()
            if left <= 0:
                return ()
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

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

    async def position(self, identifier: int) -> Any:
        """The open position whose identifier (POSITION_IDENTIFIER) is ``identifier``, None when there is none.
        The package's ``positions_get(ticket=)`` selects by the current ticket (its reference: "Position ticket
        (POSITION_TICKET)"), which a trade server's service operation can change (a swap charged by re-opening
        the position): so the positions are read and their identifiers compared."""
        if identifier <= 0:
            return None
        return next((p for p in await self.positions() if p.identifier == identifier), None)


def _complete(deals: tuple[Any, ...], deal: int, volume: float) -> bool:
    """Whether ``deals`` hold the deal ``deal`` (when known) and as much volume as was filled (when known)."""
    if deal and not any(d.ticket == deal for d in deals):
        return False
    return volume <= 0 or sum(d.volume for d in deals) >= volume - 1e-9
