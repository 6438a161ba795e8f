"""Test helpers: waiting with a deadline, a raw EA client, order requests over NATS, collecting what NATS
carries, the CLI's command."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hedgebridge.common import auth
from hedgebridge.protocol import (
    DeliveryAck,
    Frame,
    Heartbeat,
    Message,
    OpenCommand,
    OpenMetadata,
    OrderRequest,
    OrderResult,
    decode_frame,
    encode_frame,
    pack,
    subjects,
    subprotocol,
    unpack,
    utcnow,
)


def hedgebridge_command() -> list[str]:
    """How to run the ``hedgebridge`` command of this environment."""
    script = Path(sysconfig.get_path("scripts")) / "hedgebridge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hedgebridge.cli"]


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    what: str | Callable[[], str],
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
) -> None:
    """Poll ``predicate`` until it is true; fail the test with ``what`` (or what it returns) at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what if isinstance(what, str) else what()}"
            )
        await asyncio.sleep(interval_s)


class RawEa:
    """A bare EA written from the protocol description: a websockets client and JSON frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, token: str | None, *, protocol: str | None = None) -> RawEa:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        ws = await connect(
            url,
            additional_headers=headers,
            subprotocols=[protocol or subprotocol()],  # type: ignore[list-item]
            ping_interval=None,
            open_timeout=5,
        )
        return cls(ws)

    async def send(self, message: Message) -> None:
        await self.ws.send(encode_frame(message).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout_s: float = 5.0) -> Frame:
        return decode_frame(await asyncio.wait_for(self.ws.recv(), timeout_s))

    async def recv_type(self, kind: type[Message], timeout_s: float = 5.0) -> Frame:
        """The next frame of ``kind``, skipping others (e.g. heartbeat replies)."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = await self.recv(max(deadline - time.monotonic(), 0.01))
            if isinstance(frame, kind):
                return frame

    def keep_alive(self, interval_s: float = 0.2) -> asyncio.Task[None]:
        """Send HEARTBEAT every ``interval_s`` in the background (cancel the task to stop)."""

        async def beat() -> None:
            while True:
                await self.send(Heartbeat(timestamp=utcnow(), seq=0))
                await asyncio.sleep(interval_s)

        return asyncio.create_task(beat())

    async def closed(self, timeout_s: float = 10.0) -> int | None:
        """Read until the gateway closes the connection; returns the close code."""
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(ConnectionClosed):
            while time.monotonic() < deadline:
                await self.recv(max(deadline - time.monotonic(), 0.01))
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


def ea_token(secret: str, account: str, ttl_s: float = 86_400.0, now: float | None = None) -> str:
    return auth.mint_token(secret, role="ea", subject=account, ttl_s=ttl_s, now=now)


async def deliver(nc: NatsClient, account: str, command: Message, timeout_s: float = 2.0) -> DeliveryAck:
    """Publish a command on the account's subject as the executor does, asking again while NATS says
    "no responders" (a new subscription's interest can take a moment to reach other connections)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reply = await nc.request(subjects.command(account), pack(command), timeout=timeout_s)
        except NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
            continue
        return unpack(reply.data, DeliveryAck)


async def order(nc: NatsClient, request: OrderRequest, timeout_s: float = 15.0) -> OrderResult:
    reply = await nc.request(subjects.ORDER_REQUEST, pack(request), timeout=timeout_s)
    return unpack(reply.data, OrderResult)


T = TypeVar("T")


async def collect(nc: NatsClient, subject: str, decode: Callable[[Msg], T]) -> list[T]:
    """Every message on ``subject`` from now on (subscribed and flushed before it returns), decoded, in order."""
    seen: list[T] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(decode(msg))

    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    return seen


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET on 127.0.0.1:port; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), None
    )
    return status, body if length is None else body[:length]


def open_command(account: str, position: str = "p-1") -> OpenCommand:
    """An OPEN for ``account`` (its action id follows the position's)."""
    return OpenCommand(
        timestamp=utcnow(),
        account_id=account,
        position_id=position,
        action_id=f"a-{position}",
        symbol="EURUSD",
        side="BUY",
        volume=0.1,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u1"),
    )
