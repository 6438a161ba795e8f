"""One read of a stretch of a stream (``common.stream_reads``), against a real nats-server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common import stream_reads

pytestmark = pytest.mark.integration

SUBJECTS = ["t.a.1", "t.r.1", "t.a.2", "t.r.2", "t.c", "t.r.2"] * 3
FILTERS = ["t.a.*", "t.r.*", "t.c"]


async def test_a_read_by_time_with_several_filters_starts_at_the_first_message_of_that_time(nc: NatsClient) -> None:
    js = nc.jetstream()
    await js.add_stream(name="READS", subjects=["t.>"])
    for i, subject in enumerate(SUBJECTS):
        await js.publish(subject, str(i).encode())
    every = stream_reads.ephemeral([">"])
    stamps = [m.metadata.timestamp async for m in stream_reads.messages(js, "READS", every)]
    assert len(stamps) == len(SUBJECTS)
    for k in range(1, len(SUBJECTS)):
        # just after the previous message: a consumer started by this time with these filters skips messages
        when = stamps[k - 1] + timedelta(microseconds=1)
        start = await stream_reads.first_seq_at(js, "READS", when)
        config = stream_reads.ephemeral(FILTERS, start_seq=start)
        seqs = [m.metadata.sequence.stream async for m in stream_reads.messages(js, "READS", config)]
        first = next(i for i in range(len(stamps)) if stamps[i] >= when)
        assert seqs[0] <= first + 1  # never later than the first message of that time
        assert seqs[-1] == len(SUBJECTS)
        assert set(range(first + 1, len(SUBJECTS) + 1)) <= set(seqs)


async def test_a_read_by_time_starts_at_the_first_message_of_that_time_across_removed_ones(nc: NatsClient) -> None:
    """A bucket keeping one revision per key: each key written twice leaves a gap where its first write was."""
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="GAPS", history=1)
    await kv.put("before", b"0")
    await kv.create("kept", b"1")  # written once: its first write stays
    for i in range(5):  # each written again: the first write is removed, after "kept"
        await kv.create(f"later-{i}", b"2")
        await kv.put(f"later-{i}", b"3")
    every = stream_reads.messages(js, "KV_GAPS", stream_reads.ephemeral([">"]))
    stored = [(m.metadata.sequence.stream, m.metadata.timestamp) async for m in every]
    assert [seq for seq, _ in stored] == [1, 2, 4, 6, 8, 10, 12]
    for seq, stamp in stored:
        assert await stream_reads.first_seq_at(js, "KV_GAPS", stamp - timedelta(microseconds=1)) == seq
    assert await stream_reads.first_seq_at(js, "KV_GAPS", stored[-1][1] + timedelta(seconds=1)) == 13


async def test_a_read_takes_what_was_stored_when_it_began_in_the_batches_asked(nc: NatsClient) -> None:
    js = nc.jetstream()
    await js.add_stream(name="BATCHES", subjects=["b.>"])
    for i in range(10):
        await js.publish(f"b.{i % 2}", str(i).encode())
    asked: list[int] = []

    def batch(got: int) -> int:
        asked.append(got)
        return 3

    config = stream_reads.ephemeral(["b.1"])
    data = [m.data async for m in stream_reads.messages(js, "BATCHES", config, batch=batch)]
    assert data == [b"1", b"3", b"5", b"7", b"9"]
    assert asked == [0, 3]
    assert await stream_reads.pending(js, "BATCHES", stream_reads.ephemeral(["b.0"], start_seq=5)) == 3
