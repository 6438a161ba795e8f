"""The MT5 bridge names a position by its POSITION_IDENTIFIER, on the real nats-server with the executor: after
the trade server gives the position a new ticket (a swap charged by re-opening it) the snapshots still name it
by its identifier and a CLOSE still finds it; and its book keeps a position that closed while the bridge was
stopped, so that the next start reports that close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.executor.service import Executor
from hedgebridge.protocol import (
    ClosedEvent,
    CloseOrder,
    Event,
    OpenOrder,
    PositionUpdate,
    SyncCommand,
    utcnow,
)

from ..helpers import deliver, order, wait_for
from ..mt5.fake_mt5 import FakeMT5
from ..mt5.terminals import Bridges

pytestmark = pytest.mark.integration


def buy(action_id: str) -> OpenOrder:
    return OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id=action_id)


def closing_deals(mt5: FakeMT5, identifier: int) -> list[Any]:
    return [d for d in mt5.history_deals_get(position=identifier) or () if d.entry == FakeMT5.DEAL_ENTRY_OUT]


async def closing_deal(mt5: FakeMT5, identifier: int) -> Any:
    await wait_for(lambda: bool(closing_deals(mt5, identifier)), "the closing deal in the history")
    (deal,) = closing_deals(mt5, identifier)
    return deal


async def test_a_position_whose_ticket_changed_is_still_named_and_closed_by_its_identifier(
    bridges: Bridges, events: list[Event], nc: NatsClient, executor: Executor
) -> None:
    mt5 = FakeMT5()
    await bridges.start("A1", mt5)
    first, second = await order(nc, buy("id-1")), await order(nc, buy("id-2"))
    assert first.mt_ticket is not None
    assert second.mt_ticket is not None
    # the broker charges swap by re-opening both positions: new tickets, the same identifiers
    for opened in (first, second):
        assert mt5.reopen(int(opened.mt_ticket or 0), swap=-1.25) != int(opened.mt_ticket or 0)
    assert mt5.positions_get(ticket=int(first.mt_ticket)) == ()
    for _ in range(20):
        mt5.step()  # the price moves: each close has a profit of its own
    assert (await deliver(nc, "A1", SyncCommand(timestamp=utcnow(), account_id="A1", sync_id="s-id"))).delivered

    def snapshot() -> PositionUpdate | None:
        return next((e for e in events if isinstance(e, PositionUpdate) and e.sync_id == "s-id"), None)

    await wait_for(lambda: snapshot() is not None, "the POSITION_UPDATE answering the SYNC")
    update = snapshot()
    assert update is not None
    assert [(p.mt_ticket, p.position_id, p.action_id) for p in update.positions] == [
        (first.mt_ticket, first.position_id, "id-1"),
        (second.mt_ticket, second.position_id, "id-2"),
    ]

    by_position = await order(nc, CloseOrder(account_id="A1", position_id=first.position_id, action_id="id-c1"))
    by_ticket = await order(nc, CloseOrder(account_id="A1", mt_ticket=second.mt_ticket, action_id="id-c2"))
    for closed, opened in ((by_position, first), (by_ticket, second)):
        assert (closed.status, closed.mt_ticket) == ("FILLED", opened.mt_ticket)
        deal = await closing_deal(mt5, int(opened.mt_ticket or 0))
        assert deal.swap == -1.25
        assert closed.profit == round(deal.profit + deal.swap + deal.commission + deal.fee, 2)
    assert mt5.open_positions() == {}


async def test_a_position_closed_while_the_bridge_was_stopped_is_reported_by_the_next_start(
    bridges: Bridges, events: list[Event], nc: NatsClient, executor: Executor, tmp_path: Path
) -> None:
    mt5 = FakeMT5()
    first = await bridges.start("A1", mt5)
    opened = await order(nc, buy("away-1"))
    assert opened.status == "FILLED"
    assert opened.mt_ticket is not None
    await bridges.stop(first.bridge)
    for _ in range(20):
        mt5.step()
    mt5.close_outside(int(opened.mt_ticket), reason=FakeMT5.DEAL_REASON_SL)  # the stop loss hits meanwhile

    await bridges.start("A1", mt5)  # the same book file
    await wait_for(lambda: any(isinstance(e, ClosedEvent) for e in events), "the CLOSED after the restart")
    deal = await closing_deal(mt5, int(opened.mt_ticket))  # the package answers once a bridge has initialised it
    (closed,) = [e for e in events if isinstance(e, ClosedEvent)]
    assert (closed.position_id, closed.action_id, closed.mt_ticket, closed.reason, closed.status) == (
        opened.position_id,
        "away-1",
        opened.mt_ticket,
        "stop_loss",
        "SUCCESS",
    )
    assert (closed.price, closed.profit) == (deal.price, round(deal.profit + deal.swap + deal.commission, 2))
    book = tmp_path / "books" / "book_A1.jsonl"
    # reported, the position leaves the book, in the file too: the next start does not report it again
    await wait_for(lambda: book.read_text() == "", "the book file to forget the reported position")


async def test_a_closed_position_stays_in_the_book_until_its_closing_deal_reaches_the_history(
    bridges: Bridges, events: list[Event], nc: NatsClient, executor: Executor
) -> None:
    mt5 = FakeMT5()
    await bridges.start("A1", mt5, poll_interval_ms=20)  # 40 polls without the deal take under a second
    opened = await order(nc, buy("late-1"))
    assert opened.mt_ticket is not None
    mt5.deal_delay_s = 2.0  # the terminal's history lags: the closing deal arrives long after the close
    mt5.close_outside(int(opened.mt_ticket), reason=FakeMT5.DEAL_REASON_SO)
    await wait_for(lambda: any(isinstance(e, ClosedEvent) for e in events), "the CLOSED once the deal is there")
    (closed,) = [e for e in events if isinstance(e, ClosedEvent)]
    deal = await closing_deal(mt5, int(opened.mt_ticket))
    assert (closed.mt_ticket, closed.reason, closed.profit) == (
        opened.mt_ticket,
        "stop_out",
        round(deal.profit + deal.swap + deal.commission, 2),
    )
