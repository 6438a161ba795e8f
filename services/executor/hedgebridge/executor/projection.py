"""The book of positions the system believes open (``hb_book``) and the realtime cache, from terminal events.

- Trade reports (OPENED, CLOSED) keep the book: a filled OPEN puts its position, a CLOSE removes it or leaves
  the remaining volume; reconciled fills (which never came as reports) are applied by ``apply_reconciled``.
- SYMBOL_SPECS reports go to the symbols' rules (``symbols.SymbolBook.record``, bucket ``hb_symbols``).
- Every other event goes to the realtime cache through ``cache_writer`` (queued, written in pipelines by one
  task: the reader never waits for the cache; coalesced per key in the throughput profile). When the cache
  was flushed or restarted (no epoch), every terminal is asked for fresh snapshots (``hb.gw.sync``).

``opened_entry`` and ``reconciled_change`` are the pure rules; ``Projection`` is the thin I/O around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from hedgebridge.common import logs, profiles
from hedgebridge.common.cache import RealtimeCache
from hedgebridge.protocol import (
    BookEntry,
    CloseCommand,
    ClosedEvent,
    Event,
    ModifiedEvent,
    ModifyCommand,
    OpenCommand,
    OpenedEvent,
    OrderCommand,
    OrderResult,
    ProtocolError,
    SymbolSpecs,
    pack,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)

from . import orders
from .cache_writer import CacheWriter
from .records import Records

log = logs.get("executor")

CACHE_CHECK_TIMEOUT_S = 2.0


def opened_entry(event: OpenedEvent, command: OpenCommand | None) -> BookEntry | None:
    """The position a filled OPEN report leaves open; the command tells symbol and side when the EA does not."""
    if event.mt_ticket is None or event.price is None or event.volume is None:
        return None
    symbol, side = event.symbol, event.side
    if symbol is None or side is None:
        if command is None:
            return None
        symbol, side = command.symbol, command.side
    return BookEntry(
        account_id=event.account_id,
        mt_ticket=event.mt_ticket,
        position_id=event.position_id,
        action_id=event.action_id,
        symbol=symbol,
        side=side,
        volume=event.volume,
        open_price=event.price,
        opened_at=event.timestamp,
    )


@dataclass(frozen=True, slots=True)
class BookChange:
    key: str
    entry: BookEntry | None  # None: delete the key


def reconciled_change(command: OrderCommand, result: OrderResult, now: datetime) -> BookChange | None:
    """What a reconciled result changes in the book: a filled OPEN's position, a filled CLOSE's removal (a MODIFY's
    stops are not in the book: nothing)."""
    if result.status not in ("FILLED", "PARTIALLY_FILLED") or isinstance(command, ModifyCommand):
        return None
    if isinstance(command, OpenCommand):
        entry = orders.book_entry(result, command, now)
        return None if entry is None else BookChange(orders.book_key(entry.account_id, entry.mt_ticket), entry)
    if command.mt_ticket is not None and result.status == "FILLED":
        return BookChange(orders.book_key(command.account_id, command.mt_ticket), None)
    return None


class Projection:
    def __init__(
        self,
        cache: RealtimeCache,
        owner: str,
        book: Callable[[], KeyValue],
        records: Callable[[], Records],
        nats: Callable[[], NatsClient],
        command_of: Callable[[str], OrderCommand | None],
        on_specs: Callable[[SymbolSpecs], Awaitable[None]],
        *,
        coalesce: bool | None = None,  # None: as the profile says (profiles.Profile.coalesce_cache)
    ) -> None:
        self.cache = cache
        self.writer = CacheWriter(cache, coalesce=profiles.current().coalesce_cache if coalesce is None else coalesce)
        self._on_specs = on_specs
        self.owner = owner
        self._book = book
        self._records = records
        self._nats = nats
        self._command_of = command_of  # the command of an order this replica runs and awaits a report for
        self._warned = 0.0
        self.rebuilds = 0

    async def on_event(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError:
            return
        try:
            if isinstance(event, OpenedEvent | ClosedEvent):
                await self.book(event)
            elif isinstance(event, ModifiedEvent):  # stops are not in the book; the next snapshot shows them
                return
            elif isinstance(event, SymbolSpecs):
                await self._on_specs(event)
            else:
                self.writer.add(event)
        except Exception as exc:  # the cache is rebuildable: a failed write must not stop the executor
            self._warn("cache, book or symbol rules write failed", exc)

    async def book(self, event: Event) -> None:
        """Keep the book of positions the system believes open from the terminals' trade reports."""
        if isinstance(event, OpenedEvent) and event.status == "SUCCESS" and event.mt_ticket is not None:
            command = self._command_of(event.action_id or "")
            if isinstance(command, OpenCommand) or command is None:
                await self._book_open(event, command)
        elif isinstance(event, ClosedEvent) and event.status == "SUCCESS" and event.mt_ticket is not None:
            key = orders.book_key(event.account_id, event.mt_ticket)
            if event.remaining_volume:
                try:
                    entry = await self._book().get(key)
                except KeyNotFoundError:
                    return
                if entry.value:
                    book = unpack(entry.value, BookEntry)
                    await self._book().put(key, pack(msgspec.structs.replace(book, volume=event.remaining_volume)))
            else:
                await self._book().delete(key)

    async def _book_open(self, event: OpenedEvent, command: OpenCommand | None) -> None:
        if event.mt_ticket is None or event.price is None or event.volume is None:
            return
        if (event.symbol is None or event.side is None) and command is None:  # an EA that does not say: the record
            stored = await self._records().get(event.action_id or "")
            if stored is not None and isinstance(stored.record.command, OpenCommand):
                command = stored.record.command
        entry = opened_entry(event, command)
        if entry is not None:
            await self._book().put(orders.book_key(event.account_id, event.mt_ticket), pack(entry))

    async def apply_reconciled(self, command: OrderCommand, result: OrderResult) -> None:
        """Reconciled fills never came as reports, so the book learns of them here."""
        try:
            change = reconciled_change(command, result, utcnow())
            if change is None:
                return
            if change.entry is not None:
                await self._book().put(change.key, pack(change.entry))
            else:
                await self._book().delete(change.key)
        except Exception as exc:
            log.warning("book update failed", error=repr(exc))

    async def expected_volume(self, command: OrderCommand) -> float | None:
        """The volume of the position a CLOSE targets, as the book knows it (for reconciling a partial)."""
        if not isinstance(command, CloseCommand) or command.mt_ticket is None:
            return None
        try:
            entry = await self._book().get(orders.book_key(command.account_id, command.mt_ticket))
        except KeyNotFoundError:
            return None
        return unpack(entry.value, BookEntry).volume if entry.value else None

    async def position_symbol(self, command: CloseCommand) -> str | None:
        """The symbol of the position a CLOSE targets: the book's (by ticket), else the cache's positions."""
        if command.mt_ticket is not None:
            with contextlib.suppress(KeyNotFoundError):
                entry = await self._book().get(orders.book_key(command.account_id, command.mt_ticket))
                if entry.value:
                    return unpack(entry.value, BookEntry).symbol
        try:
            positions = await self.cache.positions(command.account_id)
        except Exception as exc:  # the cache is a projection: without it the terminal's own checks apply
            self._warn("cache read failed", exc)
            return None
        for p in positions or ():
            if p.mt_ticket == command.mt_ticket or (command.mt_ticket is None and p.position_id == command.position_id):
                return p.symbol
        return None

    async def watch_cache(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.check_cache()

    async def check_cache(self) -> None:
        """Notice a flushed or restarted cache and ask every terminal for fresh snapshots."""
        try:
            async with asyncio.timeout(CACHE_CHECK_TIMEOUT_S):
                rebuild = await self.cache.epoch() is None and await self.cache.mark_epoch(
                    f"{self.owner}:{time.time()}"
                )
            if rebuild:
                self.rebuilds += 1
                log.warning("cache empty: asking every terminal for snapshots", executor=self.owner)
                await self._nats().publish(subjects.GATEWAY_SYNC, b"cache rebuild")
                await self._nats().flush()
        except Exception as exc:
            self._warn("cache check failed", exc)

    def _warn(self, event: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 5:
            self._warned = now
            log.warning(event, error=f"{type(exc).__name__}: {exc}")
