"""JetStream writes with less client work on a hot path (the executor's records, leases, results and book).

``LeanJetStream.publish`` sends the message with a reply subject on one wildcard subscription of its own and
waits for the PubAck there (a future and a loop timer per write, the ack decoded by msgspec into a small struct)
instead of nats.py's request machinery and its JSON-to-dataclass path. The durability is the same: a write
returns only once the server's PubAck says the message is stored, and it fails the same ways (``APIError`` and
its kinds from the ack's error, ``NoStreamResponseError`` when no stream takes the subject, ``TimeoutError``).
A KeyValue from its ``key_value`` writes through it (create, update, put, delete); everything else (reads,
watches, stream management) is nats.py's own.
"""

from __future__ import annotations

import asyncio
import itertools
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


class LeanJetStream(JetStreamContext):
    def __init__(self, conn: NatsClient, timeout: float = 5) -> None:
        super().__init__(conn, timeout=timeout)
        self._waiting: dict[str, asyncio.Future[Msg]] = {}  # token -> the write waiting for its PubAck
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
        if stream is not None:
            headers = {**(headers or {}), api.Header.EXPECTED_STREAM: stream}
        if msg_ttl is not None:
            headers = {**(headers or {}), api.Header.MSG_TTL: str(int(msg_ttl))}
        inbox = self._inbox or await self._subscribe()
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = waiter
        timer = loop.call_later(self._timeout if timeout is None else timeout, _expire, waiter)
        try:
            await self._nc.publish(subject, payload, reply=inbox + token, headers=headers)
            msg = await waiter
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
        if msg.headers and msg.headers.get(api.Header.STATUS) == NO_RESPONDERS:
            raise NoStreamResponseError
        ack = _decode_ack(msg.data)
        if ack.error is not None:
            APIError.from_error(msgspec.structs.asdict(ack.error))  # raises the error's kind
            raise APIError(code=ack.error.code, description=ack.error.description, err_code=ack.error.err_code)
        return api.PubAck(stream=ack.stream, seq=ack.seq, domain=ack.domain, duplicate=ack.duplicate)

    async def _subscribe(self) -> str:
        async with self._subscribing:
            if self._inbox is None:
                inbox = f"{self._nc.new_inbox()}."
                await self._nc.subscribe(f"{inbox}*", cb=self._on_ack)
                self._inbox = inbox
            return self._inbox

    async def _on_ack(self, msg: Msg) -> None:
        assert self._inbox is not None
        waiter = self._waiting.get(msg.subject[len(self._inbox) :])
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)


def _expire(waiter: asyncio.Future[Msg]) -> None:
    if not waiter.done():
        waiter.set_exception(nats.errors.TimeoutError())
