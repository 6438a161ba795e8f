"""The fence of an order command (``notAfter``): the moment until which no other replica may take the order over,
less a margin for clock skew. The terminal link (gateway or MT5 bridge) writes a command to its terminal only
before it, else refuses it unsent (``hedgebridge.common.terminal_link.rules.fenced``), so a command of a replica
that was paused between its lease check and its send can no longer reach the terminal after another replica took
the order over and asked the terminal for the snapshot it reconciles from.

Another replica may take an order over (``leases``) once its lease lapsed (``InflightMark.leaseUntil``, by the
take-over of lapsed leases and by the search for orphans, which both leave a lease that holds alone), or, when it
has no lease, once its record is ``lease_after_ms + lease_ms`` old (``may_be_orphaned``). So:

- a send made under a lease just held (``HoldLease``): the ``leaseUntil`` that hold wrote (its lower bound, taken
  before the write), less the margin;
- a send with no lease held yet (a young order): the record's time plus ``lease_after_ms + lease_ms``, less the
  margin. A lease put meanwhile by the lease timer (started after the record was written, ``lease_after_ms``
  or more later) runs until no earlier than that.

Pure: the times come in as arguments (wall-clock: ``notAfter`` is compared with the terminal link's clock).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hedgebridge.protocol import FENCED, DeliveryAck

from . import run_actions as act
from .run_phases import Limits


def under_lease(limits: Limits, lease_until: float | None) -> datetime | None:
    """The fence of a send made under a lease just held until ``lease_until`` (epoch seconds; None: unknown, no
    fence)."""
    if limits.lease_s <= 0 or lease_until is None:
        return None
    return datetime.fromtimestamp(lease_until, UTC) - timedelta(seconds=limits.fence_margin_s)


def unleased(limits: Limits, recorded_at: datetime | None) -> datetime | None:
    """The fence of a send with no lease held, of an order recorded at ``recorded_at`` (None: unknown, no
    fence): the moment the search for orphans may take it over, less the margin."""
    if limits.lease_s <= 0 or recorded_at is None:
        return None
    return recorded_at + timedelta(seconds=limits.lease_after_s + limits.lease_s - limits.fence_margin_s)


def refused(ack: DeliveryAck | None, fields: dict[str, str]) -> list[act.Action]:
    """The log of a send the terminal link refused unsent past its notAfter (none for any other ack): the run
    asks again, under a lease held again, or stops when the order is no longer its own."""
    if ack is None or ack.reason != FENCED:
        return []
    return [act.Log("warning", "command refused unsent past its notAfter: sending again under the lease", fields)]
