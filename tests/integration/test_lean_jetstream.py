"""``LeanJetStream``: JetStream writes and requests answered on its own reply subscription, against a real
nats-server: the KV compare-and-set rules, de-duplication, and each way a write or a request fails, as nats.py
reports them."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
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


async def test_a_write_started_with_send_is_in_the_outgoing_buffer_and_its_ack_follows(nc: NatsClient) -> None:
    js = LeanJetStream(nc)
    await streams.ensure(nc, js=js)
    pending = nc.pending_data_size
    acked = await js.send(subjects.result("A1"), b"{}", headers={"Nats-Msg-Id": "a-2:FILLED"})
    assert nc.pending_data_size > pending  # in the outgoing buffer when the call returned: nothing awaited yet
    assert not acked.done()
    first = await acked
    assert first.stream == subjects.EVENTS_STREAM
    again = await (await js.send(subjects.result("A1"), b"{}", headers={"Nats-Msg-Id": "a-2:FILLED"}))
    assert (again.seq, again.duplicate) == (first.seq, True)
    with pytest.raises(NoStreamResponseError):
        await (await js.send("no.stream.here", b""))
    assert not js._waiting


async def test_a_request_is_answered_on_the_lean_reply_subscription(nc: NatsClient) -> None:
    js = LeanJetStream(nc)

    async def echo(msg: Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    responder = await nc.subscribe("lean.echo", cb=echo)
    await nc.flush()
    reply = await js.request("lean.echo", b"ping", 2.0, headers={"h": "1"})
    assert reply.data == b"re:ping"
    with pytest.raises(NoRespondersError):
        await js.request("nobody.listens", b"", 2.0)
    silent = await nc.subscribe("lean.silent")  # takes the request, never answers
    with pytest.raises(NatsTimeoutError):
        await js.request("lean.silent", b"", 0.05)
    await silent.unsubscribe()
    await responder.unsubscribe()
    assert not js._waiting  # nothing left waiting
