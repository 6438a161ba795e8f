"""Consistency (I/O): keeps the terminals' latest snapshots, runs the checker's passes and performs their
remedies.

Every POSITION_UPDATE (debounced per account) and every reconcile interval compares the book (``hb_book``)
with the terminal's snapshot (``consistency.check``, pure); new conflicts are published on
``hb.consistency.conflict`` (de-duplicated by ``kind:account:ticket``) and resolved per configuration (a close
asked of the executor through ``executor_client.ask``, or a book entry dropped), and a ConsistencyStatus is
published on ``hb.consistency.status`` after each pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import executor_client, logs
from hedgebridge.common.executor_client import Silence
from hedgebridge.protocol import (
    BookEntry,
    CloseOrder,
    Conflict,
    ConsistencyStatus,
    PositionUpdate,
    ProtocolError,
    pack,
    subjects,
    unpack,
    utcnow,
)

from . import consistency
from .config import CoordinatorConfig
from .snapshots import sync
from .store import ActionStore

log = logs.get("coordinator")

# what a close that met the bus's silence says (the text of the transport error it has always shown)
_SILENCE_TEXT = {Silence.NO_EXECUTOR: repr(NoRespondersError()), Silence.NO_REPLY: repr(NatsTimeoutError())}


class Reconciler:
    def __init__(
        self,
        config: CoordinatorConfig,
        nats: Callable[[], NatsClient],
        store: Callable[[], ActionStore],
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
    ) -> None:
        self.config = config
        self.snapshots: dict[str, PositionUpdate] = {}
        self.conflicts: dict[str, Conflict] = {}
        self.passes = 0
        self._nats = nats
        self._store = store
        self._spawn = spawn
        self._due: set[str] = set()
        self._lock = asyncio.Lock()

    async def on_snapshot(self, msg: Msg) -> None:
        try:
            snapshot = unpack(msg.data, PositionUpdate)
        except ProtocolError:
            return
        if not consistency.newer(self.snapshots.get(snapshot.account_id), snapshot):
            return
        self.snapshots[snapshot.account_id] = snapshot
        if snapshot.account_id not in self._due:
            self._due.add(snapshot.account_id)
            self._spawn(self._check_later(snapshot.account_id))

    async def _check_later(self, account: str) -> None:
        await asyncio.sleep(self.config.reconcile_debounce_ms / 1000)
        self._due.discard(account)
        try:
            await self.check([account])
        except Exception as exc:
            log.warning("consistency check failed", account=account, error=f"{type(exc).__name__}: {exc}")

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_interval_ms / 1000)
            try:
                await self.reconcile_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consistency pass failed", error=f"{type(exc).__name__}: {exc}")

    async def reconcile_all(self) -> ConsistencyStatus:
        """A full pass: ask every account the book or a snapshot names for a fresh snapshot (each answer is
        checked as it comes), and check every account with a snapshot now."""
        book = await self._store().read_book(None)
        accounts = sorted(set(book) | set(self.snapshots))
        await asyncio.gather(*(sync(self._nats(), account, "reconcile") for account in accounts))
        return await self.check(sorted(self.snapshots), book)

    async def check(self, accounts: Iterable[str], book: dict[str, list[BookEntry]] | None = None) -> ConsistencyStatus:
        """Compare ``accounts`` (those with a snapshot) with the book; report, resolve and publish."""
        async with self._lock:
            wanted = [a for a in accounts if a in self.snapshots]
            if book is None:
                book = {}
                for account in wanted:
                    book.update(await self._store().read_book(account))
            now = utcnow()
            grace = timedelta(milliseconds=self.config.orphan_grace_ms)
            step = consistency.check(book, self.snapshots, wanted, self.conflicts, now, grace)
            for conflict in step.new:
                outcome = await self._resolve(conflict)
                step.open[consistency.conflict_id(conflict)] = outcome
                await self._store().publish_conflict(outcome)
                log.warning(
                    "position conflict",
                    kind=outcome.kind,
                    account=outcome.account_id,
                    ticket=outcome.mt_ticket,
                    resolution=outcome.resolution,
                )
            for conflict in step.resolved:
                log.info(
                    "conflict resolved", kind=conflict.kind, account=conflict.account_id, ticket=conflict.mt_ticket
                )
            self.conflicts = step.open
            self.passes += 1
            status = step.status(now)
            with contextlib.suppress(Exception):
                await self._nats().publish(subjects.CONSISTENCY_STATUS, pack(status))
            return status

    async def _resolve(self, conflict: Conflict) -> Conflict:
        remedy = consistency.remedy(conflict, self.config.conflict_resolution, self.config.leg_timeout_ms)
        if isinstance(remedy, CloseOrder):
            try:
                answer = await executor_client.ask(self._nats(), remedy, self.config.leg_timeout_ms / 1000 + 7)
            except Exception as exc:
                return consistency.after_failure(conflict, "close", repr(exc))
            if answer.silence is not None:
                return consistency.after_failure(conflict, "close", _SILENCE_TEXT[answer.silence])
            return consistency.after_close(conflict, answer.result)
        if remedy is not None:
            try:
                await self._store().drop_from_book(remedy)
            except Exception as exc:
                return consistency.after_failure(conflict, "drop", repr(exc))
            return consistency.after_drop(conflict)
        return conflict
