"""Driving one action (I/O): performs what its ``ActionRun`` returns and feeds it what happens.

A ``Drive`` owns the asyncio side of one action this replica drives: the queue its events arrive on (the
executor's answers to the order requests it sent, results on ``hb.exec.result.*`` routed here by the
service), the event a waiting request is answered on, and the tasks that ask the executor. Each order request
goes through ``executor_client.ask`` (the one way to ask the executor), in the action's span when tracing is
on. A record write that finds the record changed (another replica took the action over) ends the drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient

from hedgebridge.common import executor_client, logs
from hedgebridge.common.executor_client import Silence, UnreadableAnswer
from hedgebridge.common.obs import tracing
from hedgebridge.protocol import ActionState, OrderResult, errors

from .errors import LeaseLost
from .run import (
    Action,
    ActionRun,
    Answered,
    Ask,
    AskFailed,
    Event,
    Finished,
    NoExecutor,
    NoReply,
    Note,
    Publish,
    Record,
    Reported,
    RepublishIfMissing,
    Respond,
    Unreadable,
)
from .store import ActionStore

log = logs.get("coordinator")


class Drive:
    """One action driven here: ``await drive()`` runs it until it is final, taken over, or cancelled."""

    def __init__(self, run: ActionRun, revision: int, store: ActionStore, nats: Callable[[], NatsClient]) -> None:
        self.run = run
        self.revision = revision
        self.state: ActionState = run.state  # the latest state written to the record
        self.answered = asyncio.Event()  # final, or its timeout passed: a waiting request is answered
        self._store = store
        self._nats = nats
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._asks: set[asyncio.Task[None]] = set()

    def report(self, result: OrderResult) -> None:
        """A result on ``hb.exec.result.*`` for one of the action's orders."""
        self._events.put_nowait(Reported(result))

    async def drive(self) -> None:
        fields = {"action": self.run.action_id, "kind": self.run.state.kind}
        try:
            await self._perform(self.run.begin(time.time()))
            while not self.run.done:
                events = await self._next_events()
                await self._perform(self.run.feed(events, time.time()))
        except LeaseLost:
            log.warning("action taken over by another coordinator", **fields)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("action driver failed; its lease will lapse and it will be taken over", **fields)
            # a waiting caller learns that the outcome is not known yet (never a stale RUNNING); the record
            # keeps the last state written, which the coordinator that takes the action over resumes from
            self.state = msgspec.structs.replace(
                self.state,
                state="UNSETTLED",
                code=errors.INTERNAL,
                message="internal coordinator error: the outcome is not known; ask again with the same actionId",
            )
        finally:
            for task in self._asks:
                task.cancel()
            self.answered.set()

    async def _next_events(self) -> list[Event]:
        """Whatever arrived; else wait for something until the run wants to look again."""
        if self._events.empty():
            now = time.time()
            try:
                first = await asyncio.wait_for(self._events.get(), max(self.run.wake_at(now) - now, 0.0))
            except TimeoutError:
                return []
            events = [first]
        else:
            events = []
        while not self._events.empty():
            events.append(self._events.get_nowait())
        return events

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Record):
                self.revision = await self._store.update(action.record, self.revision)
                self.state = action.record.state
            elif isinstance(action, Publish):
                await self._store.publish_state(action.state)
            elif isinstance(action, Ask):
                task = asyncio.create_task(self._ask(action))
                self._asks.add(task)
                task.add_done_callback(self._asks.discard)
            elif isinstance(action, Respond):
                self.answered.set()
            elif isinstance(action, Finished):
                with contextlib.suppress(Exception):  # a leftover entry is dropped by the next takeover scan
                    await self._store.unlist(action.state.action_id)
            elif isinstance(action, RepublishIfMissing):
                await self._store.republish_if_missing(action.state)
            else:
                _note(action)

    async def _ask(self, ask: Ask) -> None:
        """One order request; what came of it goes to the run."""
        order_id = ask.order.action_id or ""
        event: Event
        try:
            headers = tracing.headers()  # the action's span, when tracing is on
            answer = await executor_client.ask(self._nats(), ask.order, ask.timeout_s, headers=headers)
        except asyncio.CancelledError:
            raise
        except UnreadableAnswer as exc:
            event = Unreadable(order_id, exc.detail)
        except Exception as exc:
            event = AskFailed(order_id, f"{type(exc).__name__}: {exc}")
        else:
            if answer.silence is Silence.NO_EXECUTOR:
                event = NoExecutor(order_id)
            elif answer.silence is Silence.NO_REPLY:
                event = NoReply(order_id)
            else:
                event = Answered(order_id, answer.result)
        self._events.put_nowait(event)


def _note(note: Note) -> None:
    write: Callable[..., Any] = getattr(log, note.level)
    write(note.event, **note.fields)
