"""The actions an order's run (``order_run.OrderRun``) asks its service to perform, and what to feed back.

Each is a plain value: the run never performs I/O itself; the service does what an action says and feeds the
run the outcome (the method named in the action's docstring), with the current time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hedgebridge.protocol import OrderCommand, OrderResult

from .lifecycle import OrderState


@dataclass(frozen=True, slots=True)
class Send:
    """Request ``command`` on its account's command subject (waiting ``timeout_s`` for the DeliveryAck); feed
    ``on_delivery`` with the ack (None: no responders) or ``on_unconfirmed`` when no ack came in time."""

    command: OrderCommand
    timeout_s: float


@dataclass(frozen=True, slots=True)
class SendSync:
    """Ask the terminal for a snapshot (SYNC ``sync_id``, reason "reconcile"); feed the ack as for Send."""

    account_id: str
    sync_id: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep ``delay_s``, then feed ``on_wake`` (reports and snapshots offered meanwhile are kept)."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait until ``until`` or until a report or snapshot is offered and accepted, then feed ``on_wake``."""

    until: float


@dataclass(frozen=True, slots=True)
class ReadVolume:
    """Read the book's volume of the position ``command`` closes; feed ``on_volume``."""

    command: OrderCommand


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the waiting caller with ``result`` (before the record is written); ``handed_over``: the run lost
    its lease and the order's new owner answers the caller's inbox, so nothing is sent to it here."""

    result: OrderResult
    handed_over: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """Publish ``result`` to a taken-over order's first caller (its inbox ``reply_to``)."""

    reply_to: str
    result: OrderResult


@dataclass(frozen=True, slots=True)
class Record:
    """Write the record (``state``, ``result``) and publish the result; end the lease unless ``keep_lease``
    (ask ``release_lease`` then); feed ``on_recorded``."""

    state: OrderState
    result: OrderResult
    keep_lease: bool


@dataclass(frozen=True, slots=True)
class PutLease:
    """Put (or renew) this replica's lease on the order in ``hb_inflight`` (compare-and-set: when another
    replica's mark is there, feed ``on_lease_lost``)."""

    account_id: str


@dataclass(frozen=True, slots=True)
class HoldLease:
    """Before a (re)send: renew this run's lease by compare-and-set; feed ``on_lease_held`` when it still holds,
    ``on_lease_lost`` when another replica's mark is there (or the order's record was written by another)."""

    account_id: str


@dataclass(frozen=True, slots=True)
class ApplyToBook:
    """Reconciled fills never came as reports: apply ``result`` of ``command`` to the book."""

    command: OrderCommand
    result: OrderResult


@dataclass(frozen=True, slots=True)
class Observe:
    """A hop's latency: ``hop`` is "delivery", "report" or "sync"."""

    hop: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Log:
    level: str  # "info", "warning", "error"
    event: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Done:
    """The run is over: this replica no longer runs the order."""


Action = (
    Send
    | SendSync
    | Pause
    | Wait
    | ReadVolume
    | Answer
    | Reply
    | Record
    | PutLease
    | HoldLease
    | ApplyToBook
    | Observe
    | Log
    | Done
)
