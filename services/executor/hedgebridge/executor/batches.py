"""CLOSE_BATCH on ``hb.exec.batch``: every item closed concurrently (one at a time per terminal), item ``i`` run as
``<actionId>-<i>`` through the executor's one order path, so each is exactly-once like any order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from hedgebridge.protocol import BatchResult, CloseBatch, OrderRequest, OrderResult, ProtocolError, errors, pack, unpack

from . import orders, telemetry

Execute = Callable[[OrderRequest, float], Awaitable[OrderResult]]


async def close_batch(execute: Execute, batch: CloseBatch, started: float) -> BatchResult:
    batch_id = batch.action_id or orders.new_id()
    requests = orders.batch_requests(batch, batch_id)
    results = await asyncio.gather(*(execute(r, started) for r in requests))
    return BatchResult(action_id=batch_id, results=list(results), elapsed_ms=(time.perf_counter() - started) * 1000)


async def serve(execute: Execute, msg: Msg) -> None:
    started = time.perf_counter()
    try:
        batch = unpack(msg.data, CloseBatch)
    except ProtocolError as exc:
        failure = orders.failure("INVALID", errors.INVALID_REQUEST, exc.message, None, 0)
        result = BatchResult(action_id="", results=[failure])
    else:
        result = await close_batch(execute, batch, started)
    telemetry.batch_done(result.results, started)
    if msg.reply:
        with contextlib.suppress(Exception):
            await msg.respond(pack(result))
