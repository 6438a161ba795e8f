"""MODIFY around the terminals: an older terminal that does not know it gets a definite answer at once (not a
timeout), a stop the price reaches closes the position as an outside close, and the MODIFIED reports reach the
client API's ``trades`` topic. The execution rules every terminal keeps are in ``test_terminal_contract.py``."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.executor.service import Executor
from hedgebridge.protocol import (
    ClosedEvent,
    ModifiedEvent,
    ModifyOrder,
    OpenOrder,
    errors,
    subjects,
    unpack_event,
)

from ..conftest import StartSims
from ..helpers import order, wait_for

pytestmark = pytest.mark.integration


async def test_a_terminal_that_does_not_know_modify_gets_terminal_refused_at_once(
    sims: StartSims, nc: NatsClient, executor: Executor
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, modify=False)
    opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.status == "FILLED"
    request = ModifyOrder(
        account_id="A1", mt_ticket=opened.mt_ticket, stop_loss=1.0, action_id="old-ea", timeout_ms=8000
    )
    refused = await order(nc, request)
    assert (refused.status, refused.code, refused.kind) == ("REJECTED", errors.TERMINAL_REFUSED, "MODIFY")
    assert "UNKNOWN_TYPE" in refused.message
    assert "must be upgraded" in refused.message
    again = await order(nc, request)  # recorded: the same answer, nothing sent again
    assert (again.status, again.code, again.duplicate) == ("REJECTED", errors.TERMINAL_REFUSED, True)
    assert terminal.account.positions[int(opened.mt_ticket or 0)].sl == 0.0
    # the terminal keeps working for what it knows
    assert (await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="SELL", volume=0.1))).status == "FILLED"


async def test_a_stop_the_price_reaches_closes_the_position_as_an_outside_close(
    sims: StartSims, nc: NatsClient, executor: Executor
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, tick_interval_ms=10)
    seen: list[ClosedEvent | ModifiedEvent] = []

    async def collect(msg: Msg) -> None:
        event = unpack_event(msg.data)
        if isinstance(event, ClosedEvent | ModifiedEvent):
            seen.append(event)

    subs = [await nc.subscribe(subjects.event("A1", kind), cb=collect) for kind in ("CLOSED", "MODIFIED")]
    await nc.flush()
    try:
        opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))
        assert opened.price is not None
        stop_loss = round(opened.price - 0.005, 5)
        stops = ModifyOrder(account_id="A1", mt_ticket=opened.mt_ticket, stop_loss=stop_loss, action_id="sl-1")
        assert (await order(nc, stops)).status == "FILLED"
        await wait_for(lambda: any(isinstance(e, ModifiedEvent) for e in seen), "the MODIFIED report")
        terminal.account.feed.mids["EURUSD"] = stop_loss - 0.001  # the market falls through the stop loss
        await wait_for(lambda: any(isinstance(e, ClosedEvent) and e.reason for e in seen), "the stop's close")
    finally:
        for sub in subs:
            await sub.unsubscribe()
    closed = next(e for e in seen if isinstance(e, ClosedEvent))
    assert closed.reason == "stop_loss"
    assert closed.price is not None
    assert closed.price <= stop_loss
    assert (closed.mt_ticket, closed.status, closed.action_id) == (opened.mt_ticket, "SUCCESS", opened.action_id)
    assert terminal.account.positions == {}
