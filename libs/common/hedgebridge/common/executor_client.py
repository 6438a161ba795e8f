"""Asking the executor over NATS: the one place that turns the bus's answers into typed results.

The CLI (``hedgebridge order``), the gateway's client API and the coordinator all ask through ``ask``.
Besides a reply, the bus answers in two ways, and each means one definite thing for the order:

- **no responders**: no executor took the request, so nothing was sent. The result is ``EXPIRED`` with code
  ``EXECUTOR_UNAVAILABLE`` (safe to ask again with the same actionId); ``silence`` is ``NO_EXECUTOR``. Unless
  the order is recorded already (a repeat, after every executor went down): then it is the recorded result
  (``duplicate``), or ``OUTCOME_UNKNOWN`` with code ``EXECUTOR_UNAVAILABLE`` while it has none (it may have
  been executed) or when the records cannot be read.
- **no reply in time**: an executor may be running it. The result is ``OUTCOME_UNKNOWN`` (never resend
  blindly: asking again with the same actionId returns the recorded result); ``silence`` is ``NO_REPLY``.

An order with an actionId whose executor died before recording it would wait for nothing: while it waits,
``ask`` looks it up every ``RESEND_CHECK_S`` and sends it again while it has no record (see ``ask``).

A reply that does not decode raises ``UnreadableAnswer``. Other transport errors (a closed connection)
propagate unchanged: the caller decides whether the request may have left.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar, overload

import msgspec
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from hedgebridge.common.jetstream import LeanJetStream
from hedgebridge.protocol import (
    FINAL_STATUSES,
    BatchResult,
    CloseBatch,
    OpenOrder,
    OrderRecord,
    OrderRequest,
    OrderResult,
    ProtocolError,
    errors,
    order_kind,
    pack,
    subjects,
    unpack,
)
from hedgebridge.protocol.messages import OrderStatus

R = TypeVar("R", OrderResult, BatchResult)

RESEND_CHECK_S = 1.0  # an order not answered this long is looked up (and again at each such interval)

NOT_SENT_MESSAGE = "no executor answered; the request was not sent (safe to retry with the same actionId)"
UNKNOWN_MESSAGE = (
    "no executor answered, and the order is recorded (or its record cannot be read): its outcome is not known yet;"
    " ask again with the same actionId"
)


class Silence(StrEnum):
    """Why a result stands for the bus's silence instead of the executor's answer."""

    NO_EXECUTOR = "NO_EXECUTOR"  # no responders: nothing was sent
    NO_REPLY = "NO_REPLY"  # no reply in time: the outcome is unknown


@dataclass(frozen=True, slots=True)
class ExecutorAnswer(Generic[R]):
    """The executor's result, or (``silence`` set) the result its silence stands for."""

    result: R
    silence: Silence | None = None

    @property
    def answered(self) -> bool:
        return self.silence is None


class UnreadableAnswer(Exception):
    """The executor's reply did not decode (a version mismatch or a corrupted message); ``detail`` is the
    decoder's own message."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"unreadable answer from the executor: {detail}")
        self.detail = detail


@overload
async def ask(
    nc: NatsClient,
    body: OrderRequest,
    timeout_s: float,
    *,
    headers: dict[str, str] | None = None,
    follow_on: str = "",
) -> ExecutorAnswer[OrderResult]: ...


@overload
async def ask(
    nc: NatsClient,
    body: CloseBatch,
    timeout_s: float,
    *,
    headers: dict[str, str] | None = None,
    follow_on: str = "",
) -> ExecutorAnswer[BatchResult]: ...


async def ask(
    nc: NatsClient,
    body: OrderRequest | CloseBatch,
    timeout_s: float,
    *,
    headers: dict[str, str] | None = None,
    follow_on: str = "",
) -> ExecutorAnswer[OrderResult] | ExecutorAnswer[BatchResult]:
    """Send ``body`` to the executors' queue group and wait up to ``timeout_s`` for the answer.
    ``follow_on`` names where the caller can follow a reconciled result (in the no-reply message).

    A request is delivered to one executor and lost if that executor dies before it records the order. So an
    order with an actionId that is not answered within ``RESEND_CHECK_S`` is looked up (and again at each such
    interval): with no record it is sent again, to the same reply subject (the record's atomic create lets one
    delivery run it; a recorded order is left to its owner, or to the replica that takes it over, and both
    answer the recorded reply subject: this one)."""
    batch = isinstance(body, CloseBatch)
    subject = subjects.BATCH_REQUEST if batch else subjects.ORDER_REQUEST
    payload = pack(body)
    deadline = time.monotonic() + timeout_s
    resendable = None if isinstance(body, CloseBatch) else body.action_id
    inbox, answer = await _lean(nc).reply_subject(timeout_s)
    await nc.publish(subject, payload, reply=inbox, headers=headers)
    while not answer.done():
        await asyncio.wait((answer,), timeout=None if resendable is None else RESEND_CHECK_S)
        if answer.done() or resendable is None or time.monotonic() >= deadline:
            continue
        if not await _is_recorded(nc, resendable):
            await nc.publish(subject, payload, reply=inbox, headers=headers)
    try:
        reply = answer.result()
    except NoRespondersError:
        recorded = await _recorded(nc, body)
        if isinstance(recorded, BatchResult):
            return ExecutorAnswer(recorded, Silence.NO_EXECUTOR)
        if recorded is not None:
            return ExecutorAnswer(recorded, Silence.NO_EXECUTOR)
        return _silent(body, Silence.NO_EXECUTOR, errors.EXECUTOR_UNAVAILABLE, NOT_SENT_MESSAGE, "EXPIRED")
    except NatsTimeoutError:
        message = (
            f"no answer from the executor within {timeout_s:g}s: the outcome is unknown; the reconciled"
            f" result follows{' on ' + follow_on if follow_on else ''}, and a request with the same"
            " actionId returns it"
        )
        return _silent(body, Silence.NO_REPLY, errors.OUTCOME_UNKNOWN, message, "OUTCOME_UNKNOWN")
    try:
        if isinstance(body, CloseBatch):
            return ExecutorAnswer(unpack(reply.data, BatchResult))
        return ExecutorAnswer(unpack(reply.data, OrderResult))
    except ProtocolError as exc:
        raise UnreadableAnswer(exc.message) from None


def _lean(nc: NatsClient) -> LeanJetStream:
    """The connection's lean context (kept on the connection, so it goes with it): one reply inbox for all of
    its requests."""
    lean: LeanJetStream | None = getattr(nc, "_hedgebridge_lean", None)
    if lean is None:
        lean = LeanJetStream(nc)
        setattr(nc, "_hedgebridge_lean", lean)  # noqa: B010 (an attribute of nats-py's class, not declared)
    return lean


async def _record_says(nc: NatsClient, action_id: str) -> OrderResult | bool:
    """What the order's record says: its final result (as a duplicate), True while it has none or when the
    records cannot be read (it may have been sent), False when there is no record (nothing was ever sent)."""
    try:
        kv = await nc.jetstream().key_value(subjects.ORDERS_BUCKET)
        entry = await kv.get(action_id)
        record = unpack(entry.value or b"", OrderRecord)
    except (BucketNotFoundError, KeyNotFoundError):
        return False
    except Exception:  # JetStream unavailable too, or an unreadable record: the order may exist
        return True
    if record.result is not None and record.result.status in FINAL_STATUSES:
        return msgspec.structs.replace(record.result, duplicate=True)
    return True


async def _is_recorded(nc: NatsClient, action_id: str) -> bool:
    return await _record_says(nc, action_id) is not False


async def _recorded(nc: NatsClient, body: OrderRequest | CloseBatch) -> OrderResult | BatchResult | None:
    """With no executor to ask, what the records say: the final result (a duplicate), OUTCOME_UNKNOWN while an
    order has none or when the records cannot be read (it may have been sent), None when nothing is recorded
    (nothing was ever sent). A batch's items are looked up one by one (``<actionId>-<i>``)."""
    if not body.action_id:
        return None
    if isinstance(body, CloseBatch):
        said = [await _record_says(nc, f"{body.action_id}-{i}") for i in range(len(body.items))]
        if not any(s is not False for s in said):
            return None
        unsent = unsent_batch(body, errors.EXECUTOR_UNAVAILABLE, NOT_SENT_MESSAGE, "EXPIRED").results
        unknown = unsent_batch(body, errors.EXECUTOR_UNAVAILABLE, UNKNOWN_MESSAGE, "OUTCOME_UNKNOWN").results
        results = [s if isinstance(s, OrderResult) else (unknown[i] if s else unsent[i]) for i, s in enumerate(said)]
        return BatchResult(action_id=body.action_id, results=results)
    says = await _record_says(nc, body.action_id)
    if says is False:
        return None
    if isinstance(says, OrderResult):
        return says
    return unsent_order(body, errors.EXECUTOR_UNAVAILABLE, UNKNOWN_MESSAGE, "OUTCOME_UNKNOWN")


def _silent(
    body: OrderRequest | CloseBatch, silence: Silence, code: str, message: str, status: OrderStatus
) -> ExecutorAnswer[OrderResult] | ExecutorAnswer[BatchResult]:
    if isinstance(body, CloseBatch):
        return ExecutorAnswer(unsent_batch(body, code, message, status), silence)
    return ExecutorAnswer(unsent_order(body, code, message, status), silence)


def unsent_order(body: OrderRequest, code: str, message: str, status: OrderStatus = "EXPIRED") -> OrderResult:
    """The result of an order the executor did not answer (or, for ``EXPIRED``, never received)."""
    return OrderResult(
        status=status,
        code=code,
        message=message,
        kind=order_kind(body),
        account_id=body.account_id,
        action_id=body.action_id,
        position_id=None if isinstance(body, OpenOrder) else body.position_id,
        mt_ticket=None if isinstance(body, OpenOrder) else body.mt_ticket,
        symbol=body.symbol if isinstance(body, OpenOrder) else None,
        side=body.side if isinstance(body, OpenOrder) else None,
    )


def unsent_batch(body: CloseBatch, code: str, message: str, status: OrderStatus = "EXPIRED") -> BatchResult:
    """The result of a batch the executor did not answer: every item gets the same status."""
    action_id = body.action_id or ""
    return BatchResult(
        action_id=action_id,
        results=[
            OrderResult(
                status=status,
                code=code,
                message=message,
                kind="CLOSE",
                account_id=item.account_id,
                action_id=f"{action_id}-{i}",
                position_id=item.position_id,
                mt_ticket=item.mt_ticket,
            )
            for i, item in enumerate(body.items)
        ],
    )
