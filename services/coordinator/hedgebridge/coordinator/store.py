"""The coordinator's JetStream state (I/O): action records, the list of running actions, the action sync
channel, the book and the conflicts stream.

- ``hb_actions`` (KV, key = actionId): the ActionRecord; created atomically (a repeated actionId never runs
  twice) and updated by compare-and-set on its revision, so only the owner writes (``LeaseLost`` otherwise).
- the running list (KV): every action not final yet, listed before its record exists, so a takeover scan
  never misses one.
- ``hb.action.<actionId>`` through JetStream (kept in HB_EVENTS) with ``Nats-Msg-Id = <actionId>:<seq>``.
- ``hb_book`` (KV, key = ``<account>.<ticket>``): read by the consistency checker, and deleted from under
  DROP_MISSING; conflicts go to ``hb.consistency.conflict`` with ``Nats-Msg-Id = kind:account:ticket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hedgebridge.common import logs, streams
from hedgebridge.protocol import ActionState, BookEntry, Conflict, ProtocolError, pack, subjects, unpack

from . import consistency, telemetry
from .errors import LeaseLost
from .model import ActionRecord

log = logs.get("coordinator")

_PUBLISH_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ActionStore:
    state: streams.State

    # --- records --------------------------------------------------------------------------------------------

    async def load(self, action_id: str) -> tuple[ActionRecord, int] | None:
        """The record and its revision; None when there is none (or it does not decode)."""
        try:
            entry = await self.state.actions.get(action_id)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        try:
            return unpack(entry.value, ActionRecord), entry.revision
        except ProtocolError:
            log.error("unreadable action record", action=action_id)
            return None

    async def create(self, record: ActionRecord) -> int | None:
        """Create the record; None when one exists already."""
        try:
            return await self.state.actions.create(record.state.action_id, pack(record))
        except KeyWrongLastSequenceError:
            return None

    async def update(self, record: ActionRecord, last: int) -> int:
        """Replace revision ``last``; raises LeaseLost when the record changed since (another replica)."""
        try:
            return await self.state.actions.update(record.state.action_id, pack(record), last=last)
        except KeyWrongLastSequenceError:
            raise LeaseLost(f"action {record.state.action_id} was taken over") from None

    async def take(self, record: ActionRecord, last: int) -> int | None:
        """Take an action over: replace revision ``last``; None when another replica was quicker."""
        try:
            return await self.state.actions.update(record.state.action_id, pack(record), last=last)
        except KeyWrongLastSequenceError:
            return None

    # --- the running list -----------------------------------------------------------------------------------

    async def list_running(self, action_id: str) -> None:
        await self.state.running_actions.put(action_id, repr(time.time()).encode())

    async def unlist(self, action_id: str) -> None:
        await self.state.running_actions.delete(action_id)

    async def running(self) -> dict[str, float]:
        """Every listed action and when it was listed (epoch seconds)."""
        listed = await read_bucket(self.state.running_actions, ">")
        return {key: _seconds(value) for key, (value, _) in listed.items()}

    # --- the action sync channel ----------------------------------------------------------------------------

    async def publish_state(self, state: ActionState) -> None:
        """Publish one state on the action sync channel (kept in HB_EVENTS, de-duplicated by actionId:seq)."""
        headers = {"Nats-Msg-Id": f"{state.action_id}:{state.seq}"}
        started = time.perf_counter()
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                await self.state.js.publish(subjects.action(state.action_id), pack(state), headers=headers)
                telemetry.state_published(time.perf_counter() - started)
                return
            except Exception as exc:
                if attempt == _PUBLISH_ATTEMPTS - 1:
                    log.error("action state not published", action=state.action_id, seq=state.seq, error=repr(exc))
                    telemetry.state_not_published()
                    return
                await asyncio.sleep(0.05 * (attempt + 1))

    async def republish_if_missing(self, state: ActionState) -> None:
        """A previous owner may have died between writing a state and publishing it: publish it unless the
        stream has it (core subscribers would otherwise see a state twice)."""
        try:
            last = await self.state.js.get_last_msg(subjects.EVENTS_STREAM, subjects.action(state.action_id))
            if last.data is not None and unpack(last.data, ActionState).seq >= state.seq:
                return
        except NotFoundError:
            pass
        except Exception as exc:
            log.warning("cannot read the last published state", action=state.action_id, error=repr(exc))
        await self.publish_state(state)

    # --- the book and conflicts -----------------------------------------------------------------------------

    async def read_book(self, account: str | None) -> dict[str, list[BookEntry]]:
        """The book by account (one account's, or everything)."""
        entries = await read_bucket(self.state.book, f"{account}.*" if account else ">")
        book: dict[str, list[BookEntry]] = {}
        for value, _revision in entries.values():
            try:
                entry = unpack(value, BookEntry)
            except ProtocolError:
                continue
            book.setdefault(entry.account_id, []).append(entry)
        return book

    async def drop_from_book(self, key: str) -> None:
        await self.state.book.delete(key)

    async def publish_conflict(self, conflict: Conflict) -> None:
        try:
            await self.state.js.publish(
                subjects.CONFLICTS, pack(conflict), headers={"Nats-Msg-Id": consistency.conflict_id(conflict)}
            )
        except Exception as exc:
            log.error("conflict not published", error=repr(exc), kind=conflict.kind, account=conflict.account_id)


async def read_bucket(kv: KeyValue, keys: str) -> dict[str, tuple[bytes, int]]:
    """The current value and revision of every key matching ``keys`` (deleted keys left out)."""
    watcher = await kv.watch(keys, ignore_deletes=True)
    found: dict[str, tuple[bytes, int]] = {}
    try:
        while True:
            entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
            if entry is None:
                break
            if entry.value is not None and entry.revision is not None:
                found[entry.key] = (entry.value, entry.revision)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return found


def _seconds(value: bytes) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
