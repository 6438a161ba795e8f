"""The one executor client against a real nats-server: each answer of the bus becomes its typed result."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common import executor_client, streams
from hedgebridge.common.executor_client import Silence, UnreadableAnswer
from hedgebridge.protocol import (
    BatchItem,
    BatchResult,
    CloseBatch,
    CloseOrder,
    OpenOrder,
    OrderResult,
    errors,
    pack,
    subjects,
    unpack,
)

OPEN = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="act-1")
BATCH = CloseBatch(
    action_id="b-1", items=[BatchItem(account_id="A1", mt_ticket="7"), BatchItem(account_id="A2", position_id="p-2")]
)


async def test_no_executor_means_nothing_was_sent(nc: NatsClient) -> None:
    answer = await executor_client.ask(nc, OPEN, 1.0)
    assert answer.silence is Silence.NO_EXECUTOR
    assert not answer.answered
    result = answer.result
    assert (result.status, result.code, result.action_id, result.kind) == (
        "EXPIRED",
        errors.EXECUTOR_UNAVAILABLE,
        "act-1",
        "OPEN",
    )
    assert (result.symbol, result.side, result.account_id) == ("EURUSD", "BUY", "A1")

    batch = await executor_client.ask(nc, BATCH, 1.0)
    assert batch.silence is Silence.NO_EXECUTOR
    assert [(r.status, r.code, r.action_id, r.mt_ticket) for r in batch.result.results] == [
        ("EXPIRED", errors.EXECUTOR_UNAVAILABLE, "b-1-0", "7"),
        ("EXPIRED", errors.EXECUTOR_UNAVAILABLE, "b-1-1", None),
    ]


async def test_an_executor_that_does_not_answer_leaves_the_outcome_unknown(nc: NatsClient) -> None:
    received: list[bytes] = []

    async def silent(msg: Msg) -> None:
        received.append(msg.data)

    await nc.subscribe(subjects.ORDER_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=silent)
    await nc.flush()
    close = CloseOrder(account_id="A1", position_id="p-1", action_id="act-2")
    answer = await executor_client.ask(nc, close, 0.2, follow_on="topic orders")
    assert answer.silence is Silence.NO_REPLY
    assert (answer.result.status, answer.result.code, answer.result.position_id) == (
        "OUTCOME_UNKNOWN",
        errors.OUTCOME_UNKNOWN,
        "p-1",
    )
    assert "on topic orders" in answer.result.message
    assert unpack(received[0], CloseOrder) == close  # the request did reach the (silent) executor


async def test_the_executors_answer_is_returned_as_it_came(nc: NatsClient) -> None:
    async def order(msg: Msg) -> None:
        request = unpack(msg.data, OpenOrder)
        await msg.respond(pack(OrderResult(status="FILLED", action_id=request.action_id, volume=request.volume)))

    async def batch(msg: Msg) -> None:
        await msg.respond(pack(BatchResult(action_id=unpack(msg.data, CloseBatch).action_id or "", results=[])))

    await nc.subscribe(subjects.ORDER_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=order)
    await nc.subscribe(subjects.BATCH_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=batch)
    await nc.flush()
    answer = await executor_client.ask(nc, OPEN, 2.0)
    assert answer.answered
    assert (answer.result.status, answer.result.action_id) == ("FILLED", "act-1")
    batch_answer = await executor_client.ask(nc, BATCH, 2.0)
    assert batch_answer.answered
    assert batch_answer.result == BatchResult(action_id="b-1", results=[])


async def test_an_unreadable_answer_is_an_error_naming_what_the_decoder_said(nc: NatsClient) -> None:
    async def garbage(msg: Msg) -> None:
        await msg.respond(b"\xc1 not msgpack")

    await nc.subscribe(subjects.ORDER_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=garbage)
    await nc.flush()
    with pytest.raises(UnreadableAnswer) as caught:
        await executor_client.ask(nc, OPEN, 2.0)
    assert str(caught.value).startswith("unreadable answer from the executor: ")
    assert caught.value.detail
    assert caught.value.detail in str(caught.value)


async def test_a_request_lost_before_it_was_recorded_is_sent_again_to_the_same_reply_subject(
    nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_client, "RESEND_CHECK_S", 0.05)
    deliveries: list[Msg] = []

    async def dies_first(msg: Msg) -> None:  # the first delivery dies with its executor, unrecorded
        deliveries.append(msg)
        if len(deliveries) > 1:
            await msg.respond(pack(OrderResult(status="FILLED", action_id=unpack(msg.data, OpenOrder).action_id)))

    await nc.subscribe(subjects.ORDER_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=dies_first)
    await nc.flush()
    answer = await executor_client.ask(nc, OPEN, 5.0)
    assert answer.answered
    assert (answer.result.status, answer.result.action_id) == ("FILLED", "act-1")
    assert len(deliveries) == 2
    assert deliveries[0].reply == deliveries[1].reply  # whoever answers the first delivery answers this caller
    assert deliveries[0].data == deliveries[1].data

    without_id = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1)
    deliveries.clear()
    silent = await executor_client.ask(nc, without_id, 0.3)  # no actionId: never sent twice
    assert silent.silence is Silence.NO_REPLY
    assert len(deliveries) == 1


async def test_a_recorded_order_is_left_to_its_owner_and_not_sent_again(
    nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor_client, "RESEND_CHECK_S", 0.05)
    state = await streams.ensure(nc)
    await state.orders.put("act-1", b"recorded")
    deliveries: list[Msg] = []

    async def silent(msg: Msg) -> None:
        deliveries.append(msg)

    await nc.subscribe(subjects.ORDER_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=silent)
    await nc.flush()
    answer = await executor_client.ask(nc, OPEN, 0.5)
    assert answer.silence is Silence.NO_REPLY
    assert len(deliveries) == 1
