"""The executor's I/O layer.

- Serves order requests on ``hb.exec.order`` (queue group: replicas share the work). For each request it
  sends the command to the account's command subject and waits for the terminal's OPENED/CLOSED, then
  replies with one definite OrderResult (see ``OrderResult`` for the statuses). It never hangs: after the
  order timeout the answer is OUTCOME_UNKNOWN, and the command is not resent.
- Projects terminal events (prices, positions, balances) into the realtime cache. The cache subscription is a
  queue group too, so each event is written once whatever the number of replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import bus, logs
from hedgebridge.common.cache import RealtimeCache, RedisCache
from hedgebridge.protocol import (
    ClosedEvent,
    Command,
    DeliveryAck,
    OpenedEvent,
    OrderRequest,
    OrderResult,
    ProtocolError,
    errors,
    pack,
    subjects,
    type_name,
    unpack,
    unpack_event,
    unpack_order_request,
    utcnow,
)

from . import orders
from .config import ExecutorConfig
from .errors import AccountOffline, DeliveryUnconfirmed, InvalidOrder

log = logs.get("executor")

CACHE_QUEUE = "hb-cache"
_RESULT_SUBJECTS = ("opened", "closed")


class Executor:
    def __init__(self, config: ExecutorConfig, cache: RealtimeCache | None = None) -> None:
        self.config = config
        self.cache: RealtimeCache = cache if cache is not None else RedisCache(config.redis_url)
        self._nats: NatsClient | None = None
        self._pending: dict[tuple[str, str], tuple[Command, asyncio.Future[OpenedEvent | ClosedEvent]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache_warned = 0.0
        self._requests: Subscription | None = None

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "executor not started"
        return self._nats

    async def start(self) -> None:
        self._nats = await bus.connect(
            self.config.nats_url, name=self.config.executor_id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        for kind in _RESULT_SUBJECTS:
            await self.nats.subscribe(f"{subjects.PREFIX}.ea.*.evt.{kind}", cb=self._on_result)
        await self.nats.subscribe(subjects.ALL_EVENTS, queue=CACHE_QUEUE, cb=self._on_event_for_cache)
        self._requests = await self.nats.subscribe(
            subjects.ORDER_REQUEST, queue=subjects.EXECUTOR_QUEUE, cb=self._on_request
        )
        await self.nats.flush()
        log.info("ready", executor=self.config.executor_id)

    async def stop(self) -> None:
        """Stop taking requests, answer the ones in flight (bounded by the order timeout), then disconnect."""
        if self._requests is not None:
            with contextlib.suppress(Exception):
                await self._requests.unsubscribe()
            self._requests = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.order_timeout_ms / 1000 + 1)
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()
            self._nats = None
        await self.cache.close()

    # --- order requests -------------------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            result = await self.execute_raw(msg.data, started)
        except Exception:
            log.exception("order failed inside the executor")
            result = orders.failure("OUTCOME_UNKNOWN", errors.INTERNAL, "internal executor error", None, _ms(started))
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(result))

    async def execute_raw(self, data: bytes, started: float) -> OrderResult:
        try:
            request = _parse(data)
        except InvalidOrder as exc:
            return orders.failure("INVALID", exc.code, str(exc), None, _ms(started))
        command = orders.build_command(request, utcnow())
        timeout_s = (request.timeout_ms or self.config.order_timeout_ms) / 1000
        return await self.execute(command, timeout_s, started)

    async def execute(self, command: Command, timeout_s: float, started: float) -> OrderResult:
        assert command.action_id is not None
        keys = [(command.account_id, command.action_id), (command.account_id, "pos:" + command.position_id)]
        if any(k in self._pending for k in keys):
            return orders.failure(
                "INVALID",
                errors.INVALID_REQUEST,
                "an order with this actionId or for this position is already in flight",
                command,
                _ms(started),
            )
        future: asyncio.Future[OpenedEvent | ClosedEvent] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._pending[key] = (command, future)
        fields = {"account": command.account_id, "action": command.action_id, "type": type_name(command)}
        try:
            try:
                reply = await self._deliver(command, timeout_s, started)
            except AccountOffline as exc:
                log.info("account offline, not sent", **fields)
                return orders.failure("NOT_SENT", exc.code, str(exc), command, _ms(started))
            except DeliveryUnconfirmed as exc:
                log.warning("delivery not confirmed", **fields)
                return orders.failure("OUTCOME_UNKNOWN", exc.code, str(exc), command, _ms(started))
            ack = unpack(reply.data, DeliveryAck)
            if ack.uncertain:
                log.warning("delivery uncertain", reason=ack.reason, **fields)
                return orders.failure("OUTCOME_UNKNOWN", errors.DELIVERY_FAILED, ack.reason, command, _ms(started))
            if not ack.delivered:
                log.info("not delivered", reason=ack.reason, **fields)
                return orders.failure(
                    "NOT_SENT", errors.ACCOUNT_OFFLINE, f"not sent: {ack.reason}", command, _ms(started)
                )
            remaining = timeout_s - (time.perf_counter() - started)
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    event = await future
            except TimeoutError:
                log.warning("no result in time", timeout_s=timeout_s, **fields)
                return orders.failure(
                    "OUTCOME_UNKNOWN",
                    errors.OUTCOME_UNKNOWN,
                    f"sent, but no result within {timeout_s:g}s; the outcome is unknown (reconcile, do not resend)",
                    command,
                    _ms(started),
                )
            result = orders.result_of(command, event, _ms(started))
            log.info("order done", status=result.status, elapsed_ms=round(result.elapsed_ms, 3), **fields)
            return result
        finally:
            for key in keys:
                if self._pending.get(key, (None, None))[1] is future:
                    del self._pending[key]

    async def _deliver(self, command: Command, timeout_s: float, started: float) -> Msg:
        """Send the command to the gateway holding the account and return its DeliveryAck message.

        "No responders" means no gateway received the command, so it is safe to ask again: for up to the
        offline grace an account whose terminal is reconnecting still gets the order, and NATS interest that
        is still propagating (a subscription made a moment ago) is waited for. Raises AccountOffline when the
        grace runs out, DeliveryUnconfirmed when a gateway took the command but did not answer in time."""
        subject = subjects.command(command.account_id)
        payload = pack(command)
        delivery_s = min(self.config.delivery_timeout_ms / 1000, timeout_s)
        grace_end = started + min(self.config.offline_grace_ms / 1000, timeout_s)
        pause = 0.01
        while True:
            try:
                return await self.nats.request(subject, payload, delivery_s)
            except NoRespondersError:
                if time.perf_counter() + pause > grace_end:
                    raise AccountOffline("account is not connected") from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.1)
            except NatsTimeoutError:
                raise DeliveryUnconfirmed(
                    "the gateway did not confirm delivery in time; reconcile before retrying"
                ) from None

    async def _on_result(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError as exc:
            log.warning("undecodable event", subject=msg.subject, error=exc.message)
            return
        if not isinstance(event, OpenedEvent | ClosedEvent):
            return
        key = (
            (event.account_id, event.action_id)
            if event.action_id is not None
            else (event.account_id, "pos:" + event.position_id)
        )
        entry = self._pending.get(key)
        if entry is None:
            return
        command, future = entry
        if orders.matches(command, event) and not future.done():
            future.set_result(event)

    # --- realtime cache -------------------------------------------------------------------------------------

    async def _on_event_for_cache(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError:
            return
        try:
            await self.cache.apply(event)
        except Exception as exc:  # the cache is rebuildable: a failed write must not stop the executor
            now = time.monotonic()
            if now - self._cache_warned > 5:
                self._cache_warned = now
                log.warning("cache write failed", error=f"{type(exc).__name__}: {exc}")


def _parse(data: bytes) -> OrderRequest:
    try:
        return unpack_order_request(data)
    except ProtocolError as exc:
        raise InvalidOrder(exc.message) from None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
