"""The search for orders nobody owns: an executor that dies after creating an order's record and before writing
its lease leaves a record that is not final and has no mark in ``hb_inflight``. The lease upkeep never sees
it (it reads ``hb_inflight``); a caller that repeats the actionId would (``Leases.orphaned``), but a caller
may be gone too. This search finds such an order without the caller.

Every ``lease_ms`` each replica reads the records whose last write fell in the stretch of time that has just
become old enough for an order to be orphaned (older than ``lease_after_ms + lease_ms``, ``may_be_orphaned``).
The bucket keeps one revision per key, so an order that ended shows only its final write, and a stretch read
once holds few records that are not final: orders still running (with a lease: the upkeep's) and the
orphans. Those are taken over by ``Leases.orphaned`` (compare-and-set on the missing mark: one replica wins)
and reconciled. A record not old enough by its own clock (``updatedAt``, written by another host) is looked at
again at the next search. The first search of a replica looks back ``orphan_lookback_ms``.

``Window`` is the pure part (which stretch to read next, which records to look at); ``OrphanSearch`` reads.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError

from hedgebridge.common import logs, stream_reads, tasks
from hedgebridge.protocol import FINAL_STATUSES, OrderRecord, ProtocolError, subjects, unpack, utcnow

from .leases import Leases

log = logs.get("executor")

STREAM = f"KV_{subjects.ORDERS_BUCKET}"
PREFIX = f"$KV.{subjects.ORDERS_BUCKET}."


def unfinished(record: OrderRecord) -> bool:
    """Whether a record's order has no final result yet."""
    return record.result is None or record.result.status not in FINAL_STATUSES


class Window:
    """Which stretch of the records' stream to read next (epoch seconds of the stored writes), and the records
    to look at again. ``age_s``: how old a write must be before its order may be orphaned."""

    def __init__(self, age_s: float, lookback_s: float) -> None:
        self.age_s = age_s
        self.lookback_s = lookback_s
        self.read_up_to: float | None = None  # the end of the last stretch read
        self.again: set[str] = set()  # actionIds not old enough when last looked at

    def next(self, now: float) -> tuple[float, float]:
        """The stretch ``[since, until)`` to read at ``now`` (empty when nothing new became old enough)."""
        until = now - self.age_s
        since = until - self.lookback_s if self.read_up_to is None else min(self.read_up_to, until)
        return since, until

    def read(self, until: float) -> None:
        self.read_up_to = until if self.read_up_to is None else max(self.read_up_to, until)


class OrphanSearch:
    def __init__(self, js: JetStreamContext, leases: Leases, lookback_ms: int) -> None:
        """``leases``: this replica's (its records, the orders it runs, how it takes one over, its timings)."""
        self.js = js
        self.leases = leases
        self.records = leases.records
        self.running = leases.running
        self.take_over = leases.take_over
        self.interval_s = leases.lease_ms / 1000
        self.window = Window((leases.lease_after_ms + leases.lease_ms) / 1000, lookback_ms / 1000)
        self.suspects = 0  # unfinished records looked at
        self.found = 0  # orders this replica took over through the search

    async def keep(self) -> None:
        """Search every ``lease_ms`` (the first search at once)."""
        await tasks.every(self.interval_s, self.search, log, "search for orders nobody owns failed")

    async def search(self, now: float | None = None) -> int:
        """One search: the orders taken over."""
        since, until = self.window.next(time.time() if now is None else now)
        suspects = set(self.window.again)
        if until > since:
            suspects |= await self._unfinished_in(since, until)
        again: set[str] = set()
        taken = 0
        for action_id in suspects:
            self.suspects += 1
            if action_id in self.running:
                continue
            stored = await self.records.get(action_id)
            if stored is None or not unfinished(stored.record):
                continue
            revision = await self.leases.orphaned(stored, utcnow())
            if revision is not None:
                log.warning("taking over an order nobody owns", action=action_id, owner=stored.record.owner)
                self.take_over(stored, revision)
                taken += 1
            elif not await self._leased(action_id):
                again.add(action_id)  # not old enough by its own clock yet
        self.window.again = again
        self.window.read(until)
        self.found += taken
        return taken

    async def _unfinished_in(self, since: float, until: float) -> set[str]:
        start = await stream_reads.first_seq_at(self.js, STREAM, datetime.fromtimestamp(since, UTC))
        config = stream_reads.ephemeral([f"{PREFIX}>"], start_seq=start)
        found: set[str] = set()
        async with contextlib.aclosing(stream_reads.messages(self.js, STREAM, config)) as stored:
            async for msg in stored:
                if msg.metadata.timestamp.timestamp() >= until:
                    break
                if not msg.data:  # a deleted or purged key
                    continue
                try:
                    record = unpack(msg.data, OrderRecord)
                except ProtocolError:
                    continue
                if unfinished(record):
                    found.add(msg.subject.removeprefix(PREFIX))
        return found

    async def _leased(self, action_id: str) -> bool:
        try:
            entry = await self.leases.inflight.get(action_id)
        except KeyNotFoundError:  # none, or a deleted one
            return False
        return bool(entry.value)
