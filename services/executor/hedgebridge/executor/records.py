"""Order records in JetStream KV (bucket ``hb_orders``, key = actionId): the executor's memory.

A record is created before the command is sent (``claim``: an atomic create, so of two requests with the same
actionId only one sends anything) and written again when the order ends. An order that runs longer than a
moment gets a mark in ``hb_inflight`` carrying its owner's lease: the owner renews it; once it lapses another
replica takes the order over (compare-and-set, so one replica wins) and reconciles it. An order whose owner
died before writing the mark is taken over the same way when its actionId is asked again. Every lease write is
compare-and-set on the revision its owner last wrote (a create for the first): a write that fails means another
replica holds the order now. A mark is purged from its stream when the order ends (``unmark``), not deleted:
a delete leaves a marker that every listing of the bucket streams until the bucket's day is over, so the
upkeep's listing would grow with the day's orders instead of the orders running now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hedgebridge.protocol import InflightMark, OrderRecord, ProtocolError, pack, subjects, unpack

INFLIGHT_STREAM = f"KV_{subjects.INFLIGHT_BUCKET}"


@dataclass(slots=True)
class Stored:
    record: OrderRecord
    revision: int


class Records:
    def __init__(
        self, kv: KeyValue, inflight: KeyValue, owner: str, lease_s: float, js: JetStreamContext | None = None
    ) -> None:
        self.kv = kv
        self.inflight = inflight
        self.js = js  # purges ended marks (None: they are deleted, leaving a marker)
        self.owner = owner
        self.lease_s = lease_s

    def lease(self) -> float:
        return time.time() + self.lease_s

    async def claim(self, record: OrderRecord) -> Stored | None:
        """Store a new record; None when the actionId is taken (the caller reads the existing one)."""
        try:
            revision = await self.kv.create(record.action_id, pack(record))
        except KeyWrongLastSequenceError:
            return None
        return Stored(record, revision)

    async def get(self, action_id: str) -> Stored | None:
        try:
            entry = await self.kv.get(action_id)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        try:
            return Stored(unpack(entry.value, OrderRecord), entry.revision)
        except ProtocolError:
            return None

    async def save(self, stored: Stored, **changes: object) -> Stored | None:
        """Write ``changes`` if nobody else wrote since ``stored`` was read; None when someone did."""
        record = msgspec.structs.replace(stored.record, **changes)
        try:
            revision = await self.kv.update(record.action_id, pack(record), last=stored.revision)
        except KeyWrongLastSequenceError:
            return None
        return Stored(record, revision)

    async def mark(self, action_id: str, account_id: str, last: int | None) -> int | None:
        """Renew this replica's lease written at revision ``last`` (None: put the first one); the new revision,
        or None when the mark is no longer the one written there (another replica took the order over)."""
        if last is None:
            return await self.claim_mark(action_id, account_id)
        mark = InflightMark(owner=self.owner, lease_until=self.lease(), account_id=account_id)
        try:
            return await self.inflight.update(action_id, pack(mark), last=last)
        except KeyWrongLastSequenceError:
            return None

    async def claim_mark(self, action_id: str, account_id: str) -> int | None:
        """Put this replica's lease on an order that has none; its revision, None when another replica was first."""
        mark = InflightMark(owner=self.owner, lease_until=self.lease(), account_id=account_id)
        try:
            return await self.inflight.create(action_id, pack(mark))
        except KeyWrongLastSequenceError:
            return None

    async def unmark(self, action_id: str) -> None:
        """The order's mark gone, nothing left of it in the bucket (a later create starts from none)."""
        if self.js is None:
            await self.inflight.delete(action_id)
            return
        await self.js.purge_stream(INFLIGHT_STREAM, subject=f"$KV.{subjects.INFLIGHT_BUCKET}.{action_id}")

    async def take_over(self, action_id: str, mark: InflightMark, revision: int) -> int | None:
        """Become the owner of an order whose lease lapsed: the revision of this replica's lease, None when the
        lease still holds or another replica was first."""
        if mark.lease_until > time.time():
            return None
        mine = InflightMark(owner=self.owner, lease_until=self.lease(), account_id=mark.account_id)
        try:
            return await self.inflight.update(action_id, pack(mine), last=revision)
        except KeyWrongLastSequenceError:
            return None
