"""One terminal's WebSocket session: the gateway's adapter of the terminal link (``TerminalLink`` of
``hedgebridge.common.terminal_link``).

It owns what a terminal connection is beyond the bus side: writing frames (a terminal that does not read
within ``send_timeout_ms`` is closed with 1008 "slow consumer"), closing (4002 when replaced, 1001 on stop…),
the rate bucket and the last frame's time, the liveness report's WebSocket Ping (it rides on the next frame
written to the terminal: one write, one system call), and each frame read: a bad frame is answered with an ERROR frame,
a HEARTBEAT with its reply, and the terminal's events go to the bus side to be published — a trade report
only when a command (or its reason, for an outside close) explains it (``reports.py``), and a terminal's ERROR
only when it is about a command (``refType``): the terminal did not execute it (``hb.ea.<account>.refused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from hedgebridge.common import logs
from hedgebridge.common.obs import metrics
from hedgebridge.common.terminal_link import REPLACED, Delivery, TerminalBus, refuse_late, rules
from hedgebridge.protocol import (
    COMMAND_TYPES,
    FROM_TERMINAL,
    REPORT_TYPES,
    ClosedEvent,
    Command,
    ErrorMessage,
    Heartbeat,
    Message,
    ModifiedEvent,
    OpenedEvent,
    ProtocolError,
    Report,
    SyncCommand,
    TerminalStatus,
    decode_frame,
    encode_frame,
    errors,
    type_name,
    utcnow,
)
from hedgebridge.protocol.errors import CloseCode

from . import telemetry
from .config import GatewayConfig
from .handshake import Accept
from .limits import TokenBucket
from .outgoing import wire
from .reports import ReportCheck, Verdict, refusal

SLOW_CONSUMER = "slow consumer"
COMMAND_NAMES = frozenset(type_name(c) for c in COMMAND_TYPES)
CLOSE_TIMEOUT_S = 5.0
CONNECTION_CLOSED = "terminal connection closed"
FRAME_HEADER_MAX = 10  # bytes of a server frame's header (no mask)
PING_HEAD = bytes((0x89, 4))  # FIN + opcode PING, a payload of 4 bytes (unmasked: a server's)
PING_ID = struct.Struct("!I")
# the events a terminal sends that need no command to explain them: published once their account is checked
PLAIN_EVENTS = frozenset(c for c in FROM_TERMINAL if c not in REPORT_TYPES and c not in (Heartbeat, ErrorMessage))

log = logs.get("gateway")

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class TerminalSession:
    """One terminal's live connection (slots: an idle terminal costs as little memory as it can)."""

    __slots__ = (
        "__weakref__",
        "_bus",
        "_nats",
        "_reports",
        "_send_timeout_s",
        "_spawn",
        "_welcome_waiter",
        "account_id",
        "bucket",
        "close_reason",
        "connected_at",
        "connection",
        "last_seen",
        "ping_due",
        "pong",
        "principal",
        "remote",
        "session_id",
        "subscription",
        "telemetry",
        "version",
        "welcome_sent",
    )

    def __init__(
        self,
        connection: ServerConnection,
        accept: Accept,
        config: GatewayConfig,
        bus: TerminalBus[TerminalSession],
        spawn: Spawn,
        reports: ReportCheck,
    ) -> None:
        self.connection = connection
        self.account_id = accept.principal.subject
        self.principal = accept.principal
        self.bucket = TokenBucket(config.message_rate, config.message_burst)
        self.version = accept.version
        self.session_id = uuid.uuid4().hex
        self.connected_at = time.time()
        self.subscription: Subscription | None = None
        self.welcome_sent = False  # WELCOME went out: commands may follow it
        self._welcome_waiter: asyncio.Event | None = None  # made only when a command waits for WELCOME
        self.close_reason = ""
        self.last_seen = asyncio.get_running_loop().time()
        remote = connection.remote_address
        self.remote = accept.client or (f"{remote[0]}:{remote[1]}" if remote else "")  # behind a proxy: the client
        self._send_timeout_s = config.send_timeout_ms / 1000
        self._bus = bus
        self._nats = bus.nats  # the gateway's NATS client: connected before any session, drained after the last
        self._spawn = spawn
        self._reports = reports
        self.telemetry = telemetry.state_of(self)  # its metrics state, without a lookup per frame
        self.ping_due = False  # the liveness report asked for a Ping: it goes with the next frame written
        self.pong: asyncio.Future[float] | None = None  # the last Ping's round trip, once its Pong came

    def next_ping(self) -> float | None:
        """For the liveness report: the round trip of the last Ping once its Pong came, in seconds (None: no
        Ping, or no Pong before the connection ended), and a new Ping asked for, which goes out with the next
        frame written to the terminal. A Ping still waiting for its Pong is left alone (None): one at a time."""
        pong = self.pong
        if pong is not None and not pong.done():
            return None
        self.pong, self.ping_due = None, True
        if pong is None or pong.cancelled() or pong.exception() is not None:
            return None
        latency_s = pong.result()
        telemetry.round_trip(latency_s)
        return latency_s

    async def send(self, message: Message) -> None:
        """Write one frame; a terminal that does not take it within the send timeout is closed (1008).

        A frame the socket takes at once (the connection open, no other message being written, and the write
        buffer still under its high-water mark with the frame in it, so websockets does not wait for a drain)
        is written without the timeout: it cannot wait, and an ``asyncio.timeout`` per heartbeat reply is a
        timer handle per terminal and second that stays in the loop's heap until its deadline. Without
        compression it goes to the socket as its wire bytes in one ``write`` (``outgoing.wire``, as the
        client fan-out writes), with the Ping the liveness report asked for, if any."""
        telemetry.frame_out("ea", type_name(message))
        connection, data = self.connection, encode_frame(message)
        if _taken_at_once(connection, len(data)):
            if connection.protocol.extensions:
                await connection.send(data, text=True)  # JSON is UTF-8 already
                await self._ping_alone()
            elif self.ping_due:
                self.ping_due = False
                ping, self.pong = _ping(connection)
                connection.transport.write(wire(data) + ping)
            else:
                connection.transport.write(wire(data))
            return
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await connection.send(data, text=True)
                await self._ping_alone()
        except TimeoutError:
            if not self.close_reason:
                log.warning("slow consumer closed", account=self.account_id, session=self.session_id)
                self._spawn(self.retire(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER))
            raise

    async def _ping_alone(self) -> None:
        """The Ping asked for, through websockets, where the frame did not go as wire bytes."""
        if self.ping_due:
            self.ping_due = False
            pong = await self.connection.ping()
            self.pong = pong if isinstance(pong, asyncio.Future) else None  # websockets' is one

    async def send_error(self, code: str, message: str, **fields: str | None) -> None:
        await self.send(ErrorMessage(code=code, message=message, timestamp=utcnow(), **fields))

    async def retire(self, code: CloseCode, reason: str) -> None:
        """Stop taking commands at once, then close the socket with ``code``. A peer that does not read (the
        close frame waits behind what it has not taken) is cut off after ``CLOSE_TIMEOUT_S``."""
        self.close_reason = reason
        await self.unsubscribe()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.connection.close(code, reason)
        except TimeoutError:
            self.connection.transport.abort()

    async def unsubscribe(self) -> None:
        sub, self.subscription = self.subscription, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # --- the terminal link ------------------------------------------------------------------------------------

    def unavailable(self) -> str | None:
        if self.connection.state is not State.OPEN or self.subscription is None:
            return CONNECTION_CLOSED
        return None

    def mark_welcomed(self) -> None:
        self.welcome_sent = True
        if self._welcome_waiter is not None:
            self._welcome_waiter.set()

    async def wait_ready(self) -> bool:
        """Subscribed a moment ago: a command goes after WELCOME, which must go out within the send timeout."""
        if self.welcome_sent:
            return True
        if self._welcome_waiter is None:
            self._welcome_waiter = asyncio.Event()
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._welcome_waiter.wait()
        except TimeoutError:
            return False
        return True

    async def deliver(self, command: Command, msg: Msg) -> Delivery:
        """Write a command from NATS to the terminal."""
        command = telemetry.command_received(self, msg, command)  # its trace context and timing
        if rules.fenced(command, utcnow()):  # checked last: nothing awaited from here to the socket's write
            return refuse_late(log, self.account_id, command)
        self._reports.sent(command)  # its report is explained, whenever and wherever it comes
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self.send(command)
        except (ConnectionClosed, TimeoutError) as exc:
            # the frame may already be on its way: the caller must reconcile, not resend
            log.warning("command delivery uncertain", account=self.account_id, error=type(exc).__name__)
            return Delivery.UNCERTAIN
        log.debug("command delivered", account=self.account_id, type=type_name(command))
        telemetry.command_written(self, command)
        return Delivery.DELIVERED

    async def request_sync(self, reason: str) -> None:
        if self.welcome_sent:  # a newer session sends its snapshots right after WELCOME anyway
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                await self.send(SyncCommand(timestamp=utcnow(), account_id=self.account_id, reason=reason))

    async def replaced(self, by: TerminalStatus) -> None:
        await self.retire(CloseCode.SESSION_REPLACED, REPLACED)

    # --- frames from the terminal -----------------------------------------------------------------------------

    async def handle_frame(self, data: str | bytes) -> None:
        try:
            message = decode_frame(data)
        except ProtocolError as exc:
            await self.send_error(exc.code, exc.message, field=exc.field, ref_type=exc.ref_type, ref_id=exc.ref_id)
            return
        telemetry.terminal_frame_in(self.telemetry, message)
        if type(message) in PLAIN_EVENTS:  # the bulk (prices, account and position updates): straight to NATS
            if getattr(message, "account_id", None) == self.account_id:
                subject, payload = self._bus.event_payload(self.account_id, message)
                await self._nats.publish(subject, payload)
                return
        elif isinstance(message, Heartbeat):
            if not message.reply:
                await self.send(Heartbeat(timestamp=utcnow(), seq=message.seq, reply=True))
            return
        kind = type_name(message)
        if not isinstance(message, FROM_TERMINAL):
            await self.send_error(errors.UNEXPECTED_TYPE, f"terminals do not send {kind}", ref_type=kind)
            return
        if isinstance(message, ErrorMessage):
            log.warning("terminal reported an error", account=self.account_id, code=message.code, text=message.message)
            if message.ref_type in COMMAND_NAMES:  # a command it did not execute: the executor answers at once
                await self._bus.publish_refusal(self.account_id, message)
            return
        claimed = getattr(message, "account_id", None)
        if claimed != self.account_id:
            await self.send_error(
                errors.ACCOUNT_MISMATCH,
                f"this connection is authorised for account {self.account_id}, not {claimed}",
                field="accountId",
                ref_type=kind,
                ref_id=getattr(message, "action_id", None) or getattr(message, "position_id", None),
            )
            return
        if isinstance(message, OpenedEvent | ClosedEvent | ModifiedEvent):  # in HB_EVENTS: a repeat is dropped there
            verdict = await self._reports.check(message)
            if verdict in (Verdict.UNSOLICITED, Verdict.UNCHECKED):
                await self._refuse_report(message, verdict)
                return
            with telemetry.report(self, message, rules.report_headers(message)) as headers:
                await self._bus.publish_event(self.account_id, message, headers)
            return
        await self._bus.publish_event(self.account_id, message)

    async def _refuse_report(self, report: Report, verdict: Verdict) -> None:
        """A report no command explains is not a trade: an ERROR to the terminal, a warning, and nothing else."""
        kind = type_name(report)
        metrics.UNSOLICITED_REPORTS.labels(kind).inc()
        log.warning(
            "report refused", account=self.account_id, type=kind, action=report.action_id, verdict=verdict.value
        )
        await self.send_error(
            errors.UNSOLICITED_REPORT if verdict is Verdict.UNSOLICITED else errors.INTERNAL,
            refusal(report, verdict),
            ref_type=kind,
            ref_id=report.action_id or report.position_id,
        )


def _taken_at_once(connection: ServerConnection, size: int) -> bool:
    """Whether writing a frame of ``size`` bytes returns without waiting: websockets waits only while a
    fragmented message is being sent, when the connection is not open, or for a drain once the write buffer
    passes its high-water mark."""
    if connection.state is not State.OPEN or connection.paused or connection.send_in_progress is not None:
        return False
    transport = connection.transport
    return transport.get_write_buffer_size() + size + FRAME_HEADER_MAX <= transport.get_write_buffer_limits()[1]


def _ping(connection: ServerConnection) -> tuple[bytes, asyncio.Future[float]]:
    """A Ping frame to write now, and the future its Pong resolves with the round trip: registered with the
    connection as its own ``ping()`` does, so websockets matches the Pong and sets ``connection.latency``."""
    pending = connection.pending_pings
    data = PING_ID.pack(random.getrandbits(32))
    while data in pending:
        data = PING_ID.pack(random.getrandbits(32))
    pong: asyncio.Future[float] = connection.loop.create_future()
    pending[data] = (pong, connection.loop.time())
    return PING_HEAD + data, pong
