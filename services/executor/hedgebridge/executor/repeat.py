"""A repeated actionId, as a pure object: what to answer from the first request's record (no I/O).

The service reads the record (every ``POLL_S`` while the first order runs) and feeds it to ``Repeat``, which
says: the first one's result (``duplicate``), IN_FLIGHT once the caller's timeout is over, DUPLICATE_MISMATCH
for a different request, or read again; and whether the running order may have lost its owner (then the
service checks its lease and takes the order over).

An order that EXPIRED was never executed (never delivered, or only refused), and nothing of it is pending, so
a request that comes after it expired runs it afresh under the same actionId (``Rerun``): EXPIRED means the
same to a caller whether the executor recorded it or the gateway answered it for want of an executor — ask
again with the same actionId. A request that came while the first one still ran gets the first one's result.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from hedgebridge.protocol import FINAL_STATUSES, OrderRecord, OrderRequest, errors

from . import orders
from .run_actions import Answer

POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class CheckOrphan:
    """The order is not over: check whether its owner is gone (and take it over if so)."""

    record: OrderRecord


@dataclass(frozen=True, slots=True)
class Poll:
    """Read the record again after ``delay_s``, then feed ``on_record``."""

    delay_s: float = POLL_S


@dataclass(frozen=True, slots=True)
class Rerun:
    """The order expired before this request came: run it again (the service replaces the record by
    compare-and-set, so of two such requests one runs and the other repeats it)."""

    record: OrderRecord


RepeatAction = Answer | CheckOrphan | Poll | Rerun


@dataclass(slots=True)
class Repeat:
    action_id: str
    request: OrderRequest
    started: float  # when the repeated request came (perf_counter seconds)
    deadline: float  # answer from the record (or IN_FLIGHT) after this
    first_read: bool = True

    def on_record(self, record: OrderRecord | None, now: float) -> list[RepeatAction]:
        """The record as read now (None: it expired from the bucket between the create and the read)."""
        first, self.first_read = self.first_read, False
        if record is None:
            return [Answer(orders.failure("INVALID", errors.DUPLICATE_MISMATCH, "actionId already used", None, 0))]
        elapsed_ms = (now - self.started) * 1000
        if not orders.same_request(record.request, self.request):
            message = f"actionId {self.action_id} was already used for a different request"
            return [Answer(orders.failure("INVALID", errors.DUPLICATE_MISMATCH, message, record.command, elapsed_ms))]
        result = record.result
        if first and result is not None and result.status == "EXPIRED":
            return [Rerun(record)]
        final = result is not None and result.status in FINAL_STATUSES
        actions: list[RepeatAction] = [] if final else [CheckOrphan(record)]
        over = now > self.deadline
        if result is not None and (final or over):
            actions.append(Answer(msgspec.structs.replace(result, duplicate=True, elapsed_ms=elapsed_ms)))
        elif over:
            message = "an order with this actionId is running; ask again for its result"
            failure = orders.failure(
                "IN_FLIGHT", errors.IN_FLIGHT, message, record.command, elapsed_ms, state=record.state
            )
            actions.append(Answer(failure))
        else:
            actions.append(Poll())
        return actions
