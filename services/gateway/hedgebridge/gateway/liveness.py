"""The gateway's liveness report: every ``liveness_interval_ms`` it publishes GATEWAY_LIVENESS on
``hb.gw.liveness`` (the terminals it holds, how long each has been silent, and each one's last round trip),
and asks every terminal for a WebSocket Ping frame (RFC 6455). The Ping rides on the next frame the gateway
writes to the terminal (the reply to its next heartbeat, within a heartbeat interval): one write, one system
call, and the Pings of thousands of terminals spread over that interval instead of one burst that would hold up
the event loop, and their round trips with it. The terminal's WebSocket layer answers with a Pong by itself
(the EA's socket code, the DLL, any WebSocket library), so the round trip is measured without a protocol
message the terminal has to handle; it is reported at the next interval, once. A terminal whose Pong has not
come is reported without ``rttMs`` and gets no second Ping until it does; so is one that was sent no frame
since the last report (it sent no heartbeat: the sweep closes it at the heartbeat timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sized
from datetime import UTC, datetime
from typing import Protocol

from hedgebridge.common import logs
from hedgebridge.common.tasks import cancel_and_wait
from hedgebridge.protocol import GatewayLiveness, TerminalLiveness, pack, subjects, utcnow

from .config import GatewayConfig

log = logs.get("gateway")


class Terminal(Protocol):
    """What the report reads of a terminal session (``subscription`` None: not taking commands yet, or any more)
    and how it asks for the next Ping (``next_ping``: the last one's round trip in seconds, or None)."""

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

    def next_ping(self) -> float | None: ...


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
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        interval_s = self.gateway.config.liveness_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.publish_once()
            except Exception:
                log.exception("liveness report failed")

    async def publish_once(self) -> None:
        now = asyncio.get_running_loop().time()
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
                    rtt_ms=None if (rtt_s := s.next_ping()) is None else round(rtt_s * 1000, 3),
                )
                for s in self.gateway.sessions.values()
                if s.subscription is not None
            ],
            clients=len(self.gateway.clients.sessions),
        )
        await self.gateway.nats.publish(subjects.GATEWAY_LIVENESS, pack(report))
