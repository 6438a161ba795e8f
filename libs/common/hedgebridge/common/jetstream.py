"""JetStream writes and requests with less client work on a hot path (the executor's records, leases, results,
book and commands).

``LeanJetStream.publish`` sends the message with a reply subject on one wildcard subscription of its own and
waits for the PubAck there (a future and a loop timer per write, the ack decoded by msgspec into a small struct)
instead of nats.py's request machinery and its JSON-to-dataclass path. The durability is the same: a write
returns only once the server's PubAck says the message is stored, and it fails the same ways (``APIError`` and
its kinds from the ack's error, ``NoStreamResponseError`` when no stream takes the subject, ``TimeoutError``).
A KeyValue from its ``key_value`` writes through it (create, update, put, delete); everything else (reads,
watches, stream management) is nats.py's own.

``send`` is ``publish`` in two halves: the message is in the connection's outgoing buffer when it returns (so
writes started one after the other in one step leave in one socket write), the PubAck is the future it returns.
``request`` is a plain NATS request on the same reply subscription (``NoRespondersError`` when nobody
subscribes to the subject, ``TimeoutError``), without nats.py's per-request token, ``wait_for`` and callback.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NoStreamResponseError

NO_RESPONDERS = "503"  # the status of the server's answer when nothing subscribes to the subject


class _Error(msgspec.Struct):
    code: int = 0
    err_code: int | None = None
    description: str | None = None


class _Ack(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    domain: str | None = None
    duplicate: bool | None = None
    error: _Error | None = None


_decode_ack = msgspec.json.Decoder(_Ack).decode


def _no_responders(msg: Msg) -> bool:
    return bool(msg.headers) and msg.headers.get(api.Header.STATUS) == NO_RESPONDERS  # type: ignore[union-attr]


def _pub_ack(msg: Msg) -> api.PubAck:
    if _no_responders(msg):
        raise NoStreamResponseError
    ack = _decode_ack(msg.data)
    if ack.error is not None:
        APIError.from_error(msgspec.structs.asdict(ack.error))  # raises the error's kind
        raise APIError(code=ack.error.code, description=ack.error.description, err_code=ack.error.err_code)
    return api.PubAck(stream=ack.stream, seq=ack.seq, domain=ack.domain, duplicate=ack.duplicate)


def _reply(msg: Msg) -> Msg:
    if _no_responders(msg):
        raise nats.errors.NoRespondersError
    return msg


class LeanJetStream(JetStreamContext):
    def __init__(self, conn: NatsClient, timeout: float = 5) -> None:
        super().__init__(conn, timeout=timeout)
        # token -> what waits for its answer: the future, its timer, what the answer is turned into
        self._waiting: dict[str, tuple[asyncio.Future[Any], asyncio.TimerHandle, Callable[[Msg], Any]]] = {}
        self._inbox: str | None = None
        self._tokens = itertools.count()
        self._subscribing = asyncio.Lock()

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,  # noqa: ASYNC109 (the signature of the method it replaces)
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
        msg_ttl: float | None = None,
    ) -> api.PubAck:
        """Publish to JetStream and wait for the PubAck (nats.py's ``JetStreamContext.publish``, leaner)."""
        return await (await self.send(subject, payload, timeout, stream=stream, headers=headers, msg_ttl=msg_ttl))

    async def send(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,  # noqa: ASYNC109 (the PubAck's, as ``publish``)
        *,
        stream: str | None = None,
        headers: dict[str, Any] | None = None,
        msg_ttl: float | None = None,
    ) -> asyncio.Future[api.PubAck]:
        """Publish to JetStream now and return the future of its PubAck (it fails as ``publish`` does)."""
        if stream is not None:
            headers = {**(headers or {}), api.Header.EXPECTED_STREAM: stream}
        if msg_ttl is not None:
            headers = {**(headers or {}), api.Header.MSG_TTL: str(int(msg_ttl))}
        return await self._ask(subject, payload, self._timeout if timeout is None else timeout, headers, _pub_ack)

    async def request(
        self,
        subject: str,
        payload: bytes,
        timeout: float,  # noqa: ASYNC109 (as nats.py's request)
        headers: dict[str, Any] | None = None,
    ) -> Msg:
        """A NATS request/reply (nats.py's ``Client.request``, leaner)."""
        reply: Msg = await (await self._ask(subject, payload, timeout, headers, _reply))
        return reply

    async def reply_subject(self, timeout: float) -> tuple[str, asyncio.Future[Msg]]:  # noqa: ASYNC109
        """A reply subject on this context's inbox and the future of the first answer to it (NoRespondersError,
        or nats' TimeoutError after ``timeout``): ``request`` without its publish, for a caller that publishes
        a request (once or again) itself."""
        token, waiter = await self._expect(timeout, _reply)
        assert self._inbox is not None
        return self._inbox + token, waiter

    async def _ask(
        self,
        subject: str,
        payload: bytes,
        timeout: float,  # noqa: ASYNC109
        headers: dict[str, Any] | None,
        answer: Callable[[Msg], Any],
    ) -> asyncio.Future[Any]:
        token, waiter = await self._expect(timeout, answer)
        assert self._inbox is not None
        try:
            await self._nc.publish(subject, payload, reply=self._inbox + token, headers=headers)
        except BaseException:
            self._waiting.pop(token)[1].cancel()
            raise
        return waiter

    async def _expect(
        self,
        timeout: float,  # noqa: ASYNC109
        answer: Callable[[Msg], Any],
    ) -> tuple[str, asyncio.Future[Any]]:
        if self._inbox is None:
            await self._subscribe()
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiting[token] = (waiter, loop.call_later(timeout, self._expire, token), answer)
        return token, waiter

    async def _subscribe(self) -> str:
        async with self._subscribing:
            if self._inbox is None:
                inbox = f"{self._nc.new_inbox()}."
                await self._nc.subscribe(f"{inbox}*", cb=self._on_answer)
                self._inbox = inbox
            return self._inbox

    async def _on_answer(self, msg: Msg) -> None:
        assert self._inbox is not None
        waiting = self._waiting.pop(msg.subject[len(self._inbox) :], None)
        if waiting is None:
            return
        waiter, timer, answer = waiting
        timer.cancel()
        if waiter.done():  # cancelled by the one who waited
            return
        try:
            waiter.set_result(answer(msg))
        except Exception as exc:
            waiter.set_exception(exc)

    def _expire(self, token: str) -> None:
        waiting = self._waiting.pop(token, None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_exception(nats.errors.TimeoutError())
