"""MODIFY around the terminals: an older terminal that does not know it gets a definite answer at once (not a
timeout), a stop the price reaches closes the position as an outside close, the client API's MODIFY_ORDER (and the
MODIFIED reports on its ``trades`` topic), and a hedge action's legs with stops. The execution rules every terminal
keeps are in ``test_terminal_contract.py``."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.client import ClientError, HedgebridgeClient, Leg
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
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
from .test_client_api import IN, OUT, client_url, run_sims, system_token

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


async def test_modify_through_the_client_api_and_a_hedge_leg_with_stops(
    gateway: Gateway, executor: Executor, coordinator: Coordinator, secret: str
) -> None:
    async with (
        run_sims(gateway, secret, [IN, OUT], tick_interval_ms=0) as terminals,
        await HedgebridgeClient.connect(client_url(gateway), system_token(secret, IN)) as client,
    ):
        trades = await client.subscribe(["trades"])
        opened = await client.open(IN, "EURUSD", "BUY", 0.1, action_id="c-open", take_profit=9.0)
        assert (opened.status, opened.take_profit) == ("FILLED", 9.0)
        assert opened.price is not None
        sl = round(opened.price - 0.005, 5)
        result = await client.modify(IN, mt_ticket=opened.mt_ticket, stop_loss=sl, action_id="c-mod")
        assert (result.status, result.kind, result.stop_loss, result.take_profit) == ("FILLED", "MODIFY", sl, 9.0)
        refused = await client.modify(IN, position_id=opened.position_id, take_profit=1.0)  # below a BUY's price
        assert (refused.status, refused.code, refused.retcode) == ("REJECTED", errors.INVALID_STOPS, 10016)
        with pytest.raises(ClientError) as info:
            await client.modify(OUT, mt_ticket="1", stop_loss=1.0)
        assert (info.value.code, info.value.field) == (errors.FORBIDDEN, "body.accountId")
        modified: list[ModifiedEvent] = []
        async with asyncio.timeout(10):
            while len(modified) < 2:
                push = await trades.next()
                if isinstance(push.data, ModifiedEvent):
                    assert push.seq is not None  # a stream topic: numbered in HB_EVENTS
                    modified.append(push.data)
        assert (modified[0].action_id, modified[0].status) == ("c-mod", "SUCCESS")
        assert modified[1].status == "FAILED"
        assert modified[1].error_code == 10016
        await trades.close()
        leg = Leg(IN, "EURUSD", "SELL", 0.1, stop_loss=9.0)
        state = await client.hedge([leg], action_id="h-stops", follow=True)
        assert state.state == "COMPLETED"
        assert state.legs[0].stop_loss == 9.0
        ticket = state.legs[0].mt_ticket
        assert ticket is not None
        (mine,) = [t for t in terminals if t.account_id == IN]
        assert mine.account.positions[int(ticket)].sl == 9.0
