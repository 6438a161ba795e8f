"""The gateway's liveness report: every ``liveness_interval_ms`` it publishes GATEWAY_LIVENESS on
``hb.gw.liveness`` (the terminals it holds, how long each has been silent, and each one's last heartbeat round
trip), then sends every terminal a HEARTBEAT; the terminal's reply (same ``seq``, ``reply`` true) gives the
round trip reported next time. A terminal that did not answer is reported without ``rttMs``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hedgebridge.common import logs
from hedgebridge.protocol import GatewayLiveness, Heartbeat, TerminalLiveness, pack, subjects, utcnow

if TYPE_CHECKING:
    from .server import Gateway, TerminalSession

log = logs.get("gateway")


class Liveness:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._seq = 0
        self._sent: dict[str, tuple[int, float]] = {}  # session id -> (seq, loop time sent)
        self._rtt: dict[str, float] = {}  # session id -> round trip of the last answered ping (ms)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def on_reply(self, session: TerminalSession, seq: int) -> None:
        """A terminal answered a heartbeat: when it is this gateway's last ping, note the round trip."""
        sent = self._sent.get(session.session_id)
        if sent is not None and sent[0] == seq:
            del self._sent[session.session_id]
            self._rtt[session.session_id] = (asyncio.get_running_loop().time() - sent[1]) * 1000

    async def _run(self) -> None:
        interval_s = self.gateway.config.liveness_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.publish_once()
            except Exception:
                log.exception("liveness report failed")

    async def publish_once(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
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
                    rtt_ms=None if (rtt := self._rtt.pop(s.session_id, None)) is None else round(rtt, 3),
                )
                for s in sessions
            ],
            clients=len(self.gateway.clients.sessions),
        )
        await self.gateway.nats.publish(subjects.GATEWAY_LIVENESS, pack(report))
        self._sent = {}
        self._rtt = {}
        for session in sessions:
            self._seq += 1
            self._sent[session.session_id] = (self._seq, loop.time())
            with contextlib.suppress(Exception):  # a connection going away is the disconnect's business
                await session.send(Heartbeat(timestamp=utcnow(), seq=self._seq))
