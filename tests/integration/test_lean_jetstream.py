"""``LeanJetStream``: JetStream writes acknowledged through its own reply subscription, against a real
nats-server: the KV compare-and-set rules, de-duplication, and each way a write fails, as nats.py reports them."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError, NoStreamResponseError

from hedgebridge.common import streams
from hedgebridge.common.jetstream import LeanJetStream
from hedgebridge.protocol import subjects

pytestmark = pytest.mark.integration


async def test_kv_writes_keep_the_compare_and_set_rules(nc: NatsClient) -> None:
    state = await streams.ensure(nc, js=LeanJetStream(nc))
    kv = state.orders
    first = await kv.create("a-1", b"one")
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.create("a-1", b"again")  # the actionId is taken
    second = await kv.update("a-1", b"two", last=first)
    assert second > first
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.update("a-1", b"stale", last=first)  # written meanwhile
    await kv.delete("a-1")
    with pytest.raises(KeyNotFoundError):
        await kv.get("a-1")
    again = await kv.create("a-1", b"three")  # created again over its delete marker
    entry = await kv.get("a-1")
    assert (entry.value, entry.revision) == (b"three", again)
    assert await kv.put("b-1", b"x") > again


async def test_a_repeated_message_id_is_acknowledged_as_a_duplicate(nc: NatsClient) -> None:
    js = LeanJetStream(nc)
    await streams.ensure(nc, js=js)
    subject = subjects.result("A1")
    first = await js.publish(subject, b"{}", headers={"Nats-Msg-Id": "a-1:FILLED"})
    second = await js.publish(subject, b"{}", headers={"Nats-Msg-Id": "a-1:FILLED"})
    assert (first.stream, first.duplicate) == (subjects.EVENTS_STREAM, None)
    assert (second.seq, second.duplicate) == (first.seq, True)


async def test_a_write_fails_as_nats_py_reports_it(nc: NatsClient) -> None:
    js = LeanJetStream(nc)
    await streams.ensure(nc, js=js)
    with pytest.raises(NoStreamResponseError):
        await js.publish("no.stream.here", b"")
    with pytest.raises(BadRequestError) as refused:
        await js.publish(subjects.result("A1"), b"{}", stream="ANOTHER")
    assert refused.value.err_code == 10060  # the expected stream does not match
    silent = await nc.subscribe("plain.subject")  # a subscriber that never acknowledges
    with pytest.raises(NatsTimeoutError):
        await js.publish("plain.subject", b"", timeout=0.05)
    await silent.unsubscribe()
    assert not js._waiting  # nothing left waiting
