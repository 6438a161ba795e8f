"""The MT5 bridge on a trade server whose clock is not UTC (the simulated package's, +3 h unless a test says
otherwise), on the real nats-server: what it publishes carries UTC times, and its deal history searches cover
HISTORY_DAYS of the server's time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.protocol import ClosedEvent, Event, OpenedEvent, PositionUpdate, PriceTick, utcnow

from ..helpers import deliver, wait_for
from ..mt5.fake_mt5 import FakeMT5
from ..mt5.terminals import Bridges
from .test_mt5bridge import close_command, open_command, readme_comment

pytestmark = pytest.mark.integration


def off_utc_s(moment: datetime | None) -> float:
    assert moment is not None
    return abs((moment - utcnow()).total_seconds())


def updates(events: list[Event]) -> list[PositionUpdate]:
    return [e for e in events if isinstance(e, PositionUpdate) and e.positions]


async def test_an_opened_position_carries_its_utc_opening_time(
    bridges: Bridges, events: list[Event], nc: NatsClient
) -> None:
    await bridges.start("A1", FakeMT5(), symbols="")  # no ticks read for PRICE: the deal tells the clock
    assert (await deliver(nc, "A1", open_command("t-open", "p-t"))).delivered
    await wait_for(lambda: any(isinstance(e, OpenedEvent) for e in events), "OPENED")
    await wait_for(lambda: bool(updates(events)), "a POSITION_UPDATE with the position")
    (position,) = updates(events)[-1].positions
    assert off_utc_s(position.open_time) < 60  # not 3 h ahead


async def test_prices_carry_utc_times_once_a_fresh_tick_tells_the_servers_clock(
    bridges: Bridges, events: list[Event]
) -> None:
    mt5 = FakeMT5()
    await bridges.start("A1", mt5, symbols="EURUSD")

    def priced() -> bool:
        mt5.step()  # the market moves: the tick's time changes, so it is fresh
        return any(isinstance(e, PriceTick) for e in events)

    await wait_for(priced, "PRICE")
    prices = [e for e in events if isinstance(e, PriceTick)]
    assert all(off_utc_s(p.time) < 60 for p in prices)  # none 3 h ahead


async def test_without_a_fresh_time_positions_have_no_opening_time_unless_the_offset_is_configured(
    bridges: Bridges, events: list[Event], tmp_path: Path
) -> None:
    mt5 = FakeMT5(server_offset_s=-16_200)  # UTC-04:30
    mt5.initialize()
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick is not None
    placed = {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": tick.ask, "deviation": 10,
              "magic": 1, "comment": "by hand", "type_filling": 0}  # fmt: skip
    assert mt5.order_send(placed) is not None  # opened before the bridge starts; the market stands still
    first = await bridges.start("A1", mt5, symbols="")
    await wait_for(lambda: bool(updates(events)), "the first POSITION_UPDATE")
    (unknown,) = updates(events)[-1].positions
    assert unknown.open_time is None  # rather than 4.5 h off
    await bridges.stop(first.bridge)
    events.clear()
    await bridges.start("A1", mt5, symbols="", server_utc_offset="-04:30", book_dir=str(tmp_path / "b2"))
    await wait_for(lambda: bool(updates(events)), "the POSITION_UPDATE of the configured bridge")
    (known,) = updates(events)[-1].positions
    assert off_utc_s(known.open_time) < 60


async def test_earlier_executions_within_history_days_of_server_time_are_found(
    bridges: Bridges, events: list[Event], nc: NatsClient, tmp_path: Path
) -> None:
    """A server 3 h behind UTC: deals made 22 h ago are 25 h old in the server's time written as UTC."""
    mt5 = FakeMT5(server_offset_s=-3 * 3600)
    first = await bridges.start("A1", mt5, history_days=1, symbols="")
    for command in (open_command("h-open", "p-h"), close_command("h-close", "p-h")):
        assert (await deliver(nc, "A1", command)).delivered
    await wait_for(lambda: any(isinstance(e, ClosedEvent) for e in events), "CLOSED")
    await bridges.stop(first.bridge)
    mt5.age(22 * 3600)
    events.clear()
    await bridges.start("A1", mt5, history_days=1, symbols="", book_dir=str(tmp_path / "forgetful"))
    for command in (close_command("h-close", "p-h"), open_command("h-open", "p-h")):
        assert (await deliver(nc, "A1", command)).delivered
    await wait_for(lambda: len([e for e in events if isinstance(e, (OpenedEvent, ClosedEvent))]) == 2, "answers")
    answers = [e for e in events if isinstance(e, (OpenedEvent, ClosedEvent))]
    assert [(type(e).__name__, e.status, e.already_executed) for e in answers] == [
        ("ClosedEvent", "SUCCESS", True),
        ("OpenedEvent", "SUCCESS", True),
    ]
    assert mt5.sent(readme_comment("h-open", "")[:14]) == 1  # never sent again
    assert mt5.sent(readme_comment("h-close", "")[:14]) == 1
