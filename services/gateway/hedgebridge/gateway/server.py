"""The gateway's I/O layer: a websockets server for terminals, bridged to NATS.

- Terminal frames are validated (``decode_frame``); a bad frame is answered with an ERROR frame and the
  connection stays up. Valid events are published as msgpack on ``hb.ea.<account>.evt.<type>``.
- Commands published on ``hb.ea.<account>.cmd`` are written to that account's socket; the gateway replies
  with a DeliveryAck. Only the gateway holding the account's live connection subscribes, so a request with
  no responders means the account is offline and the command was not sent.
- One live connection per account: a newer connection replaces the older one (closed with 4002), on this
  replica directly and on others through the TERMINAL_STATUS events every replica listens to.
- A terminal silent for longer than the heartbeat timeout is closed with 4001; every connect and disconnect
  is published as TERMINAL_STATUS.
- OPENED/CLOSED reports carry a de-duplication id (``Nats-Msg-Id``): HB_EVENTS keeps each report once.
- ``hb.gw.sync`` makes every gateway send SYNC to all its terminals (the cache is being rebuilt).
- Security (see SECURITY.md): wss when given a certificate; tokens checked with the configured keys
  (``keys.py``) and the revocation list; a session whose token expires or is revoked is closed with 1008;
  a handshake must finish within ``handshake_timeout_ms``; too many new connections from one IP get 429;
  a connection sending more than its frame rate is closed with 1008 "rate limit"; a terminal that does not
  read what it is sent within ``send_timeout_ms`` is closed with 1008 "slow consumer"; permessage-deflate
  is off, so the frame size limit bounds the memory of every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
import uuid
import weakref
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from hedgebridge.common import auth, bus, logs
from hedgebridge.protocol import (
    FROM_TERMINAL,
    PROTOCOL_VERSION,
    SUPPORTED_SUBPROTOCOLS,
    ClosedEvent,
    DeliveryAck,
    ErrorMessage,
    Heartbeat,
    Message,
    OpenedEvent,
    ProtocolError,
    SyncCommand,
    TerminalStatus,
    Welcome,
    decode_frame,
    encode_frame,
    errors,
    pack,
    subjects,
    type_name,
    unpack,
    unpack_command,
    utcnow,
)
from hedgebridge.protocol.errors import CloseCode

from . import admin, http_routes, telemetry
from .clients import ClientHub
from .config import GatewayConfig
from .errors import CannotListen
from .handshake import Accept, ClientAccept, decide
from .keys import KeyProvider, Revocations
from .limits import RATE_LIMIT, IpLimiter, TokenBucket
from .liveness import Liveness

SLOW_CONSUMER = "slow consumer"
CLOSE_TIMEOUT_S = 5.0

log = logs.get("gateway")


class TerminalSession:
    """One terminal's live connection."""

    def __init__(self, gateway: Gateway, connection: ServerConnection, accept: Accept) -> None:
        self.gateway = gateway
        self.connection = connection
        self.account_id = accept.principal.subject
        self.principal = accept.principal
        self.bucket = TokenBucket(gateway.config.message_rate, gateway.config.message_burst)
        self.version = accept.version
        self.session_id = uuid.uuid4().hex
        self.connected_at = time.time()
        self.subscription: Subscription | None = None
        self.welcomed = asyncio.Event()  # WELCOME went out: commands may follow it
        self.close_reason = ""
        self.last_seen = asyncio.get_running_loop().time()
        remote = connection.remote_address
        self.remote = f"{remote[0]}:{remote[1]}" if remote else ""

    async def send(self, message: Message) -> None:
        """Write one frame; a terminal that does not take it within the send timeout is closed (1008)."""
        telemetry.frame_out("ea", type_name(message))
        try:
            async with asyncio.timeout(self.gateway.config.send_timeout_ms / 1000):
                await self.connection.send(encode_frame(message).decode())
        except TimeoutError:
            if not self.close_reason:
                log.warning("slow consumer closed", account=self.account_id, session=self.session_id)
                self.gateway.spawn(self.retire(CloseCode.POLICY_VIOLATION, SLOW_CONSUMER))
            raise

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

    async def on_command(self, msg: Msg) -> None:
        """Write a command from NATS to the terminal and acknowledge delivery."""
        try:
            command = unpack_command(msg.data)
        except ProtocolError as exc:
            await self._ack(msg, DeliveryAck(delivered=False, reason=f"invalid command: {exc.message}"))
            return
        if command.account_id != self.account_id:
            await self._ack(msg, DeliveryAck(delivered=False, reason="command names another account"))
            return
        if self.gateway.sessions.get(self.account_id) is not self:
            return  # replaced: the current session answers, so a stale "not delivered" never wins the race
        if self.connection.state is not State.OPEN or self.subscription is None:
            await self._ack(msg, DeliveryAck(delivered=False, reason="terminal connection closed"))
            return
        if not self.welcomed.is_set():  # subscribed a moment ago: the command goes after WELCOME
            try:
                async with asyncio.timeout(self.gateway.config.send_timeout_ms / 1000):
                    await self.welcomed.wait()
            except TimeoutError:
                await self._ack(msg, DeliveryAck(delivered=False, reason="terminal session not ready"))
                return
        command = telemetry.command_received(self, msg, command)  # its trace context and timing
        try:
            async with asyncio.timeout(self.gateway.config.send_timeout_ms / 1000):
                await self.send(command)
        except (ConnectionClosed, TimeoutError) as exc:
            # the frame may already be on its way: the caller must reconcile, not resend
            log.warning("command delivery uncertain", account=self.account_id, error=type(exc).__name__)
            reason = "connection lost while sending; the terminal may have the command"
            await self._ack(msg, DeliveryAck(delivered=False, uncertain=True, reason=reason))
            return
        log.debug("command delivered", account=self.account_id, type=type_name(command))
        telemetry.command_written(self, command)
        await self._ack(msg, DeliveryAck(delivered=True, session_id=self.session_id))

    async def _ack(self, msg: Msg, ack: DeliveryAck) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(ack))

    async def handle_frame(self, data: str | bytes) -> None:
        try:
            message = decode_frame(data)
        except ProtocolError as exc:
            await self.send_error(exc.code, exc.message, field=exc.field, ref_type=exc.ref_type, ref_id=exc.ref_id)
            return
        telemetry.frame_in("ea", message, self)
        if isinstance(message, Heartbeat):
            if not message.reply:
                await self.send(Heartbeat(timestamp=utcnow(), seq=message.seq, reply=True))
            return
        kind = type_name(message)
        if not isinstance(message, FROM_TERMINAL):
            await self.send_error(errors.UNEXPECTED_TYPE, f"terminals do not send {kind}", ref_type=kind)
            return
        if isinstance(message, ErrorMessage):
            log.warning("terminal reported an error", account=self.account_id, code=message.code, text=message.message)
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
        if isinstance(message, OpenedEvent | ClosedEvent):  # kept in HB_EVENTS: a repeat is dropped there
            with telemetry.report(self, message, {"Nats-Msg-Id": _report_id(message)}) as headers:
                await self.gateway.nats.publish(subjects.event(self.account_id, kind), pack(message), headers=headers)
            return
        await self.gateway.nats.publish(subjects.event(self.account_id, kind), pack(message))


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.gateway_id = config.gateway_id
        self.sessions: dict[str, TerminalSession] = {}
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, Accept | ClientAccept] = weakref.WeakKeyDictionary()
        self.clients = ClientHub(config, lambda: self.nats)  # the /client endpoint (clients.py)
        self._nats: NatsClient | None = None
        self._server: Server | None = None
        self._status_sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.liveness = Liveness(self)  # GATEWAY_LIVENESS reports (liveness.py)
        self.health = http_routes.readiness(self)  # /healthz, /readyz and /metrics on this port
        telemetry.register(self)
        self.key_provider = KeyProvider(config)
        self.revocations = Revocations(self._on_revoked)
        self.ip_limiter = IpLimiter(config.ip_connect_rate, config.ip_connect_burst)
        self.clients.keys = lambda: self.key_provider.keys
        self.clients.revoked = self.revocations

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "gateway not started"
        return self._nats

    @property
    def port(self) -> int:
        assert self._server is not None, "gateway not started"
        sockets = self._server.sockets
        port: int = sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        await self.key_provider.start()
        self._nats = await bus.connect(
            self.config.nats_url, name=self.gateway_id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        try:
            await self.revocations.start(self.nats, self.config.stream_replicas)
        except BaseException:
            await self.nats.close()
            await self.key_provider.stop()
            raise
        self._status_sub = await self.nats.subscribe(subjects.ALL_STATUS, cb=self._on_status)
        await self.nats.subscribe(subjects.GATEWAY_SYNC, cb=self._on_sync_all)
        try:
            self._server = await self._listen()
        except OSError as exc:
            await self.nats.close()
            raise CannotListen(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None
        self._sweeper = asyncio.create_task(self._sweep_silent())
        self.clients.start()
        self.liveness.start()
        log.info("listening", host=self.config.host, port=self.port, gateway=self.gateway_id, tls=self.config.tls)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise CannotListen(f"cannot load the TLS certificate or key: {exc}") from None
        return context

    async def _listen(self) -> Server:
        return await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            subprotocols=list(SUPPORTED_SUBPROTOCOLS),  # type: ignore[arg-type]
            max_size=self.config.max_frame_bytes,
            ping_interval=None,  # liveness is the protocol's HEARTBEAT
            compression="deflate" if self.config.compression else None,  # throughput profile; max_size bounds
            # the inflated frame as well (websockets stops decompressing there)
            open_timeout=self.config.handshake_timeout_ms / 1000,
            ssl=self._ssl_context(),
            server_header="hedgebridge-gateway",
        )

    async def stop(self) -> None:
        """Close every terminal with 1001 (reconnect elsewhere), publish their disconnects, drain NATS."""
        await self.liveness.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close(close_connections=False)
            await asyncio.gather(
                *(s.retire(CloseCode.GOING_AWAY, "gateway shutting down") for s in list(self.sessions.values())),
                return_exceptions=True,
            )
            await self.clients.stop()
            await self._server.wait_closed()
            self._server = None
        await self.revocations.stop()
        await self.key_provider.stop()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()
            self._nats = None
        telemetry.unregister(self)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        routed = http_routes.route(self, connection, request)  # /healthz, /readyz, /metrics: plain HTTP
        if routed is not None:
            return routed
        remote = connection.remote_address
        if remote and not self.ip_limiter.allow(str(remote[0]), time.monotonic()):
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many connections from this address\n")
        page = admin.respond(connection, request)  # the admin dashboard (admin.py): static files at /admin
        if page is not None:
            return page
        verdict = decide(
            request.path,
            request.headers.get("Authorization"),
            request.headers.get_all("Sec-WebSocket-Protocol"),
            self.key_provider.keys,
            revoked=self.revocations,
            origin=request.headers.get("Origin"),
            allowed_origins=self.config.origins,
        )
        if isinstance(verdict, Accept | ClientAccept):
            self._accepted[connection] = verdict
            return None
        if verdict.reason == "token key id unknown":
            self.key_provider.unknown_kid()
        log.info(
            "handshake refused", status=int(verdict.status), reason=verdict.reason, path=request.path.split("?")[0]
        )
        response = connection.respond(verdict.status, verdict.reason + "\n")
        if verdict.status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="hedgebridge"'
        return response

    async def _handle(self, connection: ServerConnection) -> None:
        accept = self._accepted.pop(connection)
        if isinstance(accept, ClientAccept):
            await self.clients.serve(connection, accept)
            return
        session = TerminalSession(self, connection, accept)
        account = session.account_id
        previous = self.sessions.get(account)
        if previous is not None:
            await previous.retire(CloseCode.SESSION_REPLACED, "replaced by a newer connection for this account")
        self.sessions[account] = session
        telemetry.terminal_connected(self, account)
        try:
            subscription = await self.nats.subscribe(subjects.command(account), cb=session.on_command)
            if session.close_reason:  # replaced while subscribing: the newer session takes the commands
                await subscription.unsubscribe()
                return
            session.subscription = subscription
            await self._publish_status(session, "CONNECTED")
            await self.nats.flush()  # once WELCOME is sent, commands for the account reach this socket
            log.info("terminal connected", account=account, session=session.session_id, remote=session.remote)
            await session.send(
                Welcome(
                    protocol_version=min(session.version, PROTOCOL_VERSION),
                    account_id=account,
                    session_id=session.session_id,
                    heartbeat_interval_ms=self.config.heartbeat_interval_ms,
                    heartbeat_timeout_ms=self.config.heartbeat_timeout_ms,
                    max_frame_bytes=self.config.max_frame_bytes,
                    server_time=utcnow(),
                )
            )
            session.welcomed.set()
            await self._read_loop(session)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("terminal session failed", account=account)
            session.close_reason = session.close_reason or "internal error"
            with contextlib.suppress(Exception):
                await connection.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            await session.unsubscribe()
            if self.sessions.get(account) is session:
                del self.sessions[account]
            reason = session.close_reason or _close_description(connection)
            log.info("terminal disconnected", account=account, session=session.session_id, reason=reason)
            with contextlib.suppress(Exception):
                await self._publish_status(session, "DISCONNECTED", reason)

    async def _read_loop(self, session: TerminalSession) -> None:
        loop = asyncio.get_running_loop()
        async for data in session.connection:
            if session.close_reason:  # closing: frames still arriving are dropped, so the close handshake completes
                continue
            session.last_seen = loop.time()
            if not session.bucket.take(session.last_seen):
                log.warning("rate limit exceeded", account=session.account_id, session=session.session_id)
                self.spawn(session.retire(CloseCode.POLICY_VIOLATION, RATE_LIMIT))
                continue
            try:
                await session.handle_frame(data)
            except TimeoutError:  # the terminal does not read: closed as a slow consumer (see send)
                return

    async def _sweep_silent(self) -> None:
        """Close terminals that sent nothing within the heartbeat timeout (one timer for all sessions)."""
        timeout_s = self.config.heartbeat_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(timeout_s / 4, 0.25))
            now = loop.time()
            wall = time.time()
            for session in list(self.sessions.values()):
                if session.close_reason:
                    continue
                ended = auth.session_end_reason(session.principal, wall, self.revocations)
                if ended is not None:
                    self.spawn(session.retire(CloseCode.POLICY_VIOLATION, ended))
                elif now - session.last_seen > timeout_s:
                    self.spawn(session.retire(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout"))
            self.clients.end_sessions(functools.partial(self._session_end, wall))

    def _session_end(self, wall: float, principal: auth.Principal) -> str | None:
        return auth.session_end_reason(principal, wall, self.revocations)

    def _on_revoked(self, jti: str) -> None:
        """Close at once every session of a token that was just revoked."""
        for session in list(self.sessions.values()):
            if session.principal.token_id == jti and not session.close_reason:
                self.spawn(session.retire(CloseCode.POLICY_VIOLATION, "token revoked"))
        self.clients.end_sessions(lambda p: "token revoked" if p.token_id == jti else None)

    async def _publish_status(self, session: TerminalSession, status: str, reason: str = "") -> None:
        event = TerminalStatus(
            timestamp=utcnow(),
            account_id=session.account_id,
            status="CONNECTED" if status == "CONNECTED" else "DISCONNECTED",
            session_id=session.session_id,
            gateway_id=self.gateway_id,
            reason=reason,
            protocol_version=session.version,
            remote=session.remote,
        )
        await self.nats.publish(subjects.status(session.account_id), pack(event))

    async def _on_sync_all(self, msg: Msg) -> None:
        """Ask every terminal held here for fresh snapshots (the cache is being rebuilt)."""
        reason = msg.data.decode(errors="replace")[:200] or "sync requested"
        for session in list(self.sessions.values()):
            if session.welcomed.is_set():  # a newer session sends its snapshots right after WELCOME anyway
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    await session.send(SyncCommand(timestamp=utcnow(), account_id=session.account_id, reason=reason))
        log.info("snapshots requested", terminals=len(self.sessions), reason=reason)

    async def _on_status(self, msg: Msg) -> None:
        """Another replica accepted a newer connection for an account held here: hand it over."""
        try:
            event = unpack(msg.data, TerminalStatus)
        except ProtocolError:
            return
        if event.status != "CONNECTED" or event.gateway_id == self.gateway_id:
            return
        session = self.sessions.get(event.account_id)
        if session is not None and session.connected_at <= event.timestamp.timestamp():
            await session.retire(CloseCode.SESSION_REPLACED, "replaced by a newer connection for this account")


def _report_id(event: OpenedEvent | ClosedEvent) -> str:
    """The de-duplication id of a trade report: the same report sent twice (after a reconnect) is one."""
    key = event.action_id or event.position_id
    outcome = f"{event.status}:{event.error_code or ''}"
    return f"{event.account_id}:{type_name(event)}:{key}:{event.mt_ticket or ''}:{outcome}"


def _close_description(connection: ServerConnection) -> str:
    code = connection.close_code
    if code is None or code == 1006:  # no closing handshake: the network or the terminal went away
        return "connection lost"
    reason = connection.close_reason or ""
    return f"closed {code} {reason}".strip()
