"""How an order request on NATS is answered: the order's span and metrics, one reply with its definite result.

``serve`` hands the request to the executor with an ``Answering`` callback: the result goes to the caller the
moment it is known (the executor writes the order's record after it, in the same task, so the reply and the
record's writes leave together); an order that fails inside the executor is answered OUTCOME_UNKNOWN, and one
whose lease was lost before its answer (``HandedOver``) is answered by the replica that took it over.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from hedgebridge.common import logs
from hedgebridge.protocol import OrderResult, errors, pack

from . import orders, telemetry

log = logs.get("executor")

Answering = Callable[[OrderResult], Awaitable[None]]  # gives an order's result to its caller
Submit = Callable[[bytes, float, str, Answering], Awaitable[OrderResult]]


class HandedOver(Exception):
    """The order's lease was lost before its caller was answered: the new owner answers the caller's inbox."""

    def __init__(self, result: OrderResult) -> None:
        super().__init__(result.message)
        self.result = result


async def serve(msg: Msg, submit: Submit) -> None:
    """Run the order request ``msg`` through ``submit`` (data, start, reply inbox, answer) and answer it once."""
    started = time.perf_counter()
    span = telemetry.order_started(msg)  # the order's span, current in this task (None: tracing off)
    answered = False

    async def answer(result: OrderResult) -> None:
        nonlocal answered
        answered = True
        telemetry.order_done(span, result, started)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(result))

    try:
        result = await submit(msg.data, started, msg.reply or "", answer)
    except HandedOver as handed:
        telemetry.order_done(span, handed.result, started)
        return
    except Exception:
        log.exception("order failed inside the executor")
        elapsed_ms = (time.perf_counter() - started) * 1000
        result = orders.failure("OUTCOME_UNKNOWN", errors.INTERNAL, "internal executor error", None, elapsed_ms)
    if not answered:
        await answer(result)
