"""The fixed parts of an order run (``order_run``): the limits it keeps and the phases it goes through."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto


@dataclass(frozen=True, slots=True)
class Limits:
    """The time limits and attempt bound a run keeps (from the executor's configuration)."""

    delivery_timeout_s: float
    max_attempts: int
    retry_base_ms: int
    reconcile_timeout_s: float
    sync_timeout_s: float
    lease_after_s: float  # an order older than this may have been taken over: hold its lease before a send
    queued_grace_s: float = 0.0  # a first send with no lease put yet holds none until lease_after_s plus this
    lease_s: float = 0.0  # another replica takes an order over once its lease lapsed this long (0: no fence)
    fence_margin_s: float = 0.0  # a command's notAfter is this long before the earliest take-over (clock skew)


class Phase(Enum):
    IDLE = auto()
    DELIVERING = auto()  # a Send is out
    DELIVERY_PAUSE = auto()  # no gateway held the account: ask again
    HOLDING_LEASE = auto()  # a HoldLease is out; a send follows when it holds
    AWAITING_REPORT = auto()
    RETRY_PAUSE = auto()
    RECORDING = auto()  # answered; the record is being written
    SYNCING = auto()  # a SendSync is out
    AWAITING_SNAPSHOT = auto()
    RECONCILE_PAUSE = auto()
    READING_VOLUME = auto()
    DONE = auto()
