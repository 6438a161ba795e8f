"""The monitor's I/O: listens to every terminal status and event, answers ``hb.monitor.status``."""

from __future__ import annotations

import contextlib

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common import bus, logs
from hedgebridge.protocol import ProtocolError, TerminalStatus, pack, subjects, unpack, unpack_event, utcnow

from .config import MonitorConfig
from .picture import Picture

log = logs.get("monitor")
QUEUE = "hb-monitor"


class Monitor:
    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.picture = Picture(started_at=utcnow())
        self.unreadable = 0
        self._nats: NatsClient | None = None

    async def start(self) -> None:
        self._nats = nc = await bus.connect(
            self.config.nats_url, name="monitor", startup_timeout_s=self.config.nats_startup_timeout_s
        )
        await nc.subscribe(subjects.ALL_STATUS, cb=self._on_status)
        await nc.subscribe(subjects.ALL_EVENTS, cb=self._on_event)
        await nc.subscribe(subjects.MONITOR_STATUS, queue=QUEUE, cb=self._on_request)
        await nc.flush()
        log.info("ready")

    async def stop(self) -> None:
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()
            self._nats = None

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = unpack(msg.data, TerminalStatus)
        except ProtocolError:
            self.unreadable += 1
            return
        self.picture.on_status(status)
        log.info(
            "terminal " + status.status.lower(),
            account=status.account_id,
            gateway=status.gateway_id,
            reason=status.reason,
        )

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError:
            self.unreadable += 1
            return
        self.picture.on_event(event, utcnow())

    async def _on_request(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(pack(self.picture.snapshot()))
