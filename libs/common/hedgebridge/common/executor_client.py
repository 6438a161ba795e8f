"""Asking the executor over NATS: the one place that turns the bus's answers into typed results.

The CLI (``hedgebridge order``), the gateway's client API and the coordinator all ask through ``ask``.
Besides a reply, the bus answers in two ways, and each means one definite thing for the order:

- **no responders**: no executor took the request, so nothing was sent. The result is ``EXPIRED`` with code
  ``EXECUTOR_UNAVAILABLE`` (safe to ask again with the same actionId); ``silence`` is ``NO_EXECUTOR``.
- **no reply in time**: an executor may be running it. The result is ``OUTCOME_UNKNOWN`` (never resend
  blindly: asking again with the same actionId returns the recorded result); ``silence`` is ``NO_REPLY``.

A reply that does not decode raises ``UnreadableAnswer``. Other transport errors (a closed connection)
propagate unchanged: the caller decides whether the request may have left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar, overload

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.protocol import (
    BatchResult,
    CloseBatch,
    OpenOrder,
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

NOT_SENT_MESSAGE = "no executor answered; the request was not sent (safe to retry with the same actionId)"


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
    ``follow_on`` names where the caller can follow a reconciled result (in the no-reply message)."""
    batch = isinstance(body, CloseBatch)
    subject = subjects.BATCH_REQUEST if batch else subjects.ORDER_REQUEST
    try:
        reply = await nc.request(subject, pack(body), timeout=timeout_s, headers=headers)
    except NoRespondersError:
        return _silent(body, Silence.NO_EXECUTOR, errors.EXECUTOR_UNAVAILABLE, NOT_SENT_MESSAGE, "EXPIRED")
    except NatsTimeoutError:
        message = (
            f"no answer from the executor within {timeout_s:g}s: the outcome is unknown; the reconciled result "
            f"follows{' on ' + follow_on if follow_on else ''}, and a request with the same actionId returns it"
        )
        return _silent(body, Silence.NO_REPLY, errors.OUTCOME_UNKNOWN, message, "OUTCOME_UNKNOWN")
    try:
        if isinstance(body, CloseBatch):
            return ExecutorAnswer(unpack(reply.data, BatchResult))
        return ExecutorAnswer(unpack(reply.data, OrderResult))
    except ProtocolError as exc:
        raise UnreadableAnswer(exc.message) from None


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
