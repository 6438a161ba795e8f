"""The command subscriptions of the links a process holds, through one router instead of one nats-py
subscription machine per link.

Each held link still has its own interest at the NATS server (``SUB hb.ea.<account>.cmd``): only the process
holding the account receives its commands, and a command for an account nobody holds gets "no responders"
at once (the executor reads that as "not sent"; a wildcard subscription would turn it into a timeout, an
uncertain delivery to reconcile). What the router saves is the client side: nats-py gives every
subscription an ``asyncio.Queue`` and a task of its own (≈ 4.5 KB, the largest part of an idle terminal's
cost in a gateway). Here every interest is a ``Subscription`` without either: the client's reader hands
each message to the router (``put_nowait``), which finds the link by the subscription id and runs the
handler. A link's commands are handled one at a time, in the order they came (as nats-py does for a
subscription), by a task made when one arrives and ended when none is left: an idle link has no task.

nats-py keeps working on these subscriptions as on its own: it replays them after a reconnect, unsubscribes
and drains them (the router's queue is always empty, so draining waits for nothing queued).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import DEFAULT_SUB_PENDING_BYTES_LIMIT, Subscription

from .. import logs

K = TypeVar("K")
Handler = Callable[[K, Msg], Awaitable[None]]


class Interest(Subscription):
    """One link's subscription: registered with the client like any other, without a queue or task."""

    def __init__(self, router: CommandRouter[K], nats: NatsClient, sid: int, subject: str) -> None:
        # not Subscription.__init__: it makes the queue (and ``_start`` the task) this class exists to avoid
        self._conn = nats
        self._id = sid
        self._subject = subject
        self._queue = ""
        self._max_msgs = 0
        self._received = 0
        self._cb = None
        self._future = None
        self._closed = False
        self._pending_msgs_limit = 0
        self._pending_bytes_limit = DEFAULT_SUB_PENDING_BYTES_LIMIT
        self._pending_queue = router
        self._pending_next_msgs_calls = None  # type: ignore[assignment]  # as nats-py sets it with a callback
        self._pending_size = 0
        self._wait_for_msgs_task = None
        self._message_iterator = None
        self._jsi = None
        self._router = router

    async def unsubscribe(self, limit: int = 0) -> None:
        self._router.forget(self._id)
        await super().unsubscribe(limit)


class CommandRouter(asyncio.Queue[Msg], Generic[K]):
    """Routes the messages of every ``Interest`` to ``handler(link, msg)``. It is the queue nats-py puts
    each message in (``put_nowait``), and never holds one."""

    def __init__(self, handler: Handler[K], log: logs.Logger) -> None:
        super().__init__()
        self._handler = handler
        self._log = log
        self._links: dict[int, tuple[Interest, K]] = {}  # subscription id -> the subscription and its link
        self._waiting: dict[int, collections.deque[Msg]] = {}  # subscription id -> commands not handled yet
        self._workers: set[asyncio.Task[None]] = set()

    async def subscribe(self, nats: NatsClient, subject: str, link: K) -> Interest:
        """Interest in ``subject`` for ``link``, at the server once this returns (as ``nats.subscribe``)."""
        nats._sid += 1
        sid = nats._sid
        interest = Interest(self, nats, sid, subject)
        self._links[sid] = (interest, link)
        nats._subs[sid] = interest
        try:
            await nats._send_subscribe(interest)
        except BaseException:
            self.forget(sid)
            nats._subs.pop(sid, None)
            raise
        return interest

    def forget(self, sid: int) -> None:
        """No more messages for this subscription (the ones waiting are still handled)."""
        self._links.pop(sid, None)

    @property
    def held(self) -> int:
        """How many subscriptions route through here."""
        return len(self._links)

    @property
    def busy(self) -> int:
        """How many links have commands in hand (each has a task until it has handled them)."""
        return len(self._waiting)

    def put_nowait(self, item: Msg) -> None:
        sid = item.sid
        held = self._links.get(sid)
        if held is None:  # unsubscribed while the message was on its way
            return
        interest, link = held
        interest._pending_size = 0  # nats-py counts what waits in a subscription's queue: nothing waits here
        waiting = self._waiting.get(sid)
        if waiting is not None:  # a task is handling this link's commands: this one goes after them
            waiting.append(item)
            return
        self._waiting[sid] = collections.deque((item,))
        worker = asyncio.get_running_loop().create_task(self._work(sid, link))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _work(self, sid: int, link: K) -> None:
        waiting = self._waiting[sid]
        try:
            while waiting:
                msg = waiting.popleft()
                try:
                    await self._handler(link, msg)
                except Exception:
                    self._log.exception("command handling failed", subject=msg.subject)
        finally:
            del self._waiting[sid]

    async def stop(self) -> None:
        """Stop handling: the commands waiting are dropped (no ack: the requester reconciles)."""
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._waiting.clear()
