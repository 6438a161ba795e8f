"""The gateway's liveness report: every ``liveness_interval_ms`` it publishes GATEWAY_LIVENESS on
``hb.gw.liveness`` (the terminals it holds, how long each has been silent, and each one's last round trip),
then sends every terminal a WebSocket Ping frame (RFC 6455). The terminal's WebSocket layer answers with a
Pong by itself (the EA's socket code, the DLL, any WebSocket library), so the round trip is measured without
a protocol message the terminal has to handle; it is reported at the next interval. A terminal whose Pong has
not come is reported without ``rttMs`` and gets no second Ping until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping, Sized
from datetime import UTC, datetime
from typing import Protocol

from hedgebridge.common import logs
from hedgebridge.common.tasks import cancel_and_wait
from hedgebridge.protocol import GatewayLiveness, TerminalLiveness, pack, subjects, utcnow

from .config import GatewayConfig

log = logs.get("gateway")
PING_SEND_TIMEOUT_S = 1.0


class Pingable(Protocol):
    async def ping(self) -> Awaitable[float]: ...


class Terminal(Protocol):
    """What the report reads of a terminal session (``subscription`` None: not taking commands yet, or any more)."""

    @property
    def account_id(self) -> str: ...

    @property
    def session_id(self) -> str: ...

    @property
    def connected_at(self) -> float: ...

    @property
    def last_seen(self) -> float: ...

    @property
    def subscription(self) -> object | None: ...

    @property
    def connection(self) -> Pingable: ...


class Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes) -> None: ...


class Clients(Protocol):
    @property
    def sessions(self) -> Sized: ...


class Reported(Protocol):
    """What the liveness report reads of the gateway."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def gateway_id(self) -> str: ...

    @property
    def sessions(self) -> Mapping[str, Terminal]: ...

    @property
    def clients(self) -> Clients: ...

    @property
    def nats(self) -> Publisher: ...


class Liveness:
    """The periodic GATEWAY_LIVENESS report and the WebSocket Pings behind its round trips."""

    def __init__(self, gateway: Reported) -> None:
        self.gateway = gateway
        self._pongs: dict[str, Awaitable[float]] = {}  # session id -> the pong of the last ping sent
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self._pongs = {}

    async def _run(self) -> None:
        interval_s = self.gateway.config.liveness_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.publish_once()
            except Exception:
                log.exception("liveness report failed")

    def _rtt_ms(self, session_id: str) -> float | None:
        """The round trip of the last ping to the session, when its pong came."""
        pong = self._pongs.get(session_id)
        if not isinstance(pong, asyncio.Future) or not pong.done() or pong.cancelled() or pong.exception():
            return None
        latency_s: float = pong.result()
        return round(latency_s * 1000, 3)

    async def publish_once(self) -> None:
        now = asyncio.get_running_loop().time()
        sessions = [s for s in self.gateway.sessions.values() if s.subscription is not None]
        report = GatewayLiveness(
            timestamp=utcnow(),
            gateway_id=self.gateway.gateway_id,
            interval_ms=self.gateway.config.liveness_interval_ms,
            terminals=[
                TerminalLiveness(
                    account_id=s.account_id,
                    session_id=s.session_id,
                    connected_at=datetime.fromtimestamp(s.connected_at, UTC),
                    idle_ms=round(max(now - s.last_seen, 0.0) * 1000, 3),
                    rtt_ms=self._rtt_ms(s.session_id),
                )
                for s in sessions
            ],
            clients=len(self.gateway.clients.sessions),
        )
        await self.gateway.nats.publish(subjects.GATEWAY_LIVENESS, pack(report))
        pongs: dict[str, Awaitable[float]] = {}
        for session in sessions:
            waiting = self._pongs.get(session.session_id)
            if isinstance(waiting, asyncio.Future) and not waiting.done():
                pongs[session.session_id] = waiting  # one ping at a time: its pong, however late, is the figure
                continue
            with contextlib.suppress(Exception):  # a connection going away is the disconnect's business
                async with asyncio.timeout(PING_SEND_TIMEOUT_S):
                    pongs[session.session_id] = await session.connection.ping()
        self._pongs = pongs
