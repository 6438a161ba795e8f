"""The gateway's composition root: one websockets server for terminals (``/ea``) and clients (``/client``),
bridged to NATS. It listens, routes each request (health and metrics, the handshake limits, the admin pages,
the handshake decision) and hands an accepted connection to its side: ``terminal_sessions.py`` for terminals,
``client_hub.py`` for clients; it starts and stops them.

What the gateway does for terminals (``terminal_sessions.py``, ``terminal_link_ws.py`` and the shared bus
side in ``hedgebridge.common.terminal_link``):

- Terminal frames are validated (``decode_frame``); a bad frame is answered with an ERROR frame and the
  connection stays up. Valid events are published as msgpack on ``hb.ea.<account>.evt.<type>``.
- Commands published on ``hb.ea.<account>.cmd`` are written to that account's socket; the gateway replies
  with a DeliveryAck. Only the gateway holding the account's live connection subscribes, so a request with
  no responders means the account is offline and the command was not sent.
- One live connection per account: a newer connection replaces the older one (closed with 4002), on this
  replica directly and on others through the TERMINAL_STATUS events every replica listens to.
- A terminal silent for longer than the heartbeat timeout is closed with 4001; every connect and disconnect
  is published as TERMINAL_STATUS.
- OPENED/CLOSED reports carry a de-duplication id (``Nats-Msg-Id``): HB_EVENTS keeps each report once. A
  report that answers no command sent to the account (and is no outside close with a reason) is refused
  with ERROR UNSOLICITED_REPORT and not published (``reports.py``).
- Terminal events are published in canonical symbols (each account's symbol map, ``hb_symbol_map``, mirrored
  through a watch; the broker's name kept as ``brokerSymbol``).
- ``hb.gw.sync`` makes every gateway send SYNC to all its terminals (the cache is being rebuilt).
- At start it makes sure the streams clients resume from exist (HB_EVENTS, HB_ALERTS, HB_SNAPSHOTS; created
  with the defaults when absent, never changed when present).
- Security (see SECURITY.md): wss when given a certificate; tokens checked with the configured keys
  (``keys.py``) and the revocation list; a session whose token expires or is revoked is closed with 1008;
  a handshake must finish within ``handshake_timeout_ms``; handshakes are limited per client address (the
  refused and unauthenticated ones: 429), per gateway (valid tokens: 503 with Retry-After) and per account
  (429; ``limits.py``), the client address being the peer unless it is a trusted proxy (``proxies.py``:
  X-Forwarded-For, the PROXY protocol in ``listener.py``); the kernel queues ``listen_backlog`` connections;
  a connection sending more than its frame rate is closed with 1008 "rate limit"; a terminal that does not
  read what it is sent within ``send_timeout_ms`` is closed with 1008 "slow consumer"; permessage-deflate
  is off, so the frame size limit bounds the memory of every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ssl
import time
import weakref
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any

from nats.aio.client import Client as NatsClient
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hedgebridge.common import auth, bus, logs, streams
from hedgebridge.common.symbol_maps import MapMirror
from hedgebridge.protocol import SUPPORTED_SUBPROTOCOLS

from . import admin, http_routes, telemetry
from .client_hub import ClientHub
from .config import GatewayConfig
from .errors import CannotListen
from .handshake import Accept, ClientAccept, Refuse, decide
from .keys import KeyProvider, Revocations
from .limits import HandshakeLimits
from .listener import ProxiedConnection, connection_class
from .liveness import Liveness
from .proxies import forwarded_hops
from .terminal_sessions import TerminalSessions

log = logs.get("gateway")
_NO_HEADERS = Headers()  # what an open connection keeps of its request's headers


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.gateway_id = config.gateway_id
        self.symbol_maps = MapMirror()  # every account's symbol map (hb_symbol_map), for events and client requests
        self.terminals = TerminalSessions(
            config, lambda: self.nats, self.spawn, self._terminal_connected, self.symbol_maps
        )
        self.sessions = self.terminals.sessions  # the live terminal session of each account
        self._accepted: weakref.WeakKeyDictionary[ServerConnection, Accept | ClientAccept] = weakref.WeakKeyDictionary()
        self.clients = ClientHub(config, lambda: self.nats)  # the /client endpoint (client_hub.py)
        self._nats: NatsClient | None = None
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.liveness = Liveness(self)  # GATEWAY_LIVENESS reports (liveness.py)
        self.health = http_routes.readiness(self)  # /healthz, /readyz and /metrics on this port
        telemetry.register(self)
        self.key_provider = KeyProvider(config)
        self.revocations = Revocations(self._on_revoked)
        self.limits = HandshakeLimits.of(
            address_rate=config.ip_connect_rate,
            address_burst=config.ip_connect_burst,
            gateway_rate=config.connect_rate,
            gateway_burst=config.connect_burst,
            account_rate=config.account_connect_rate,
            account_burst=config.account_connect_burst,
        )
        self.proxies = config.proxies
        self.clients.keys = lambda: self.key_provider.keys
        self.clients.revoked = self.revocations

    @property
    def nats_client(self) -> NatsClient | None:
        """The NATS connection, None before start and after stop (readiness reads it)."""
        return self._nats

    @property
    def subscribed(self) -> bool:
        """Subscribed to terminal statuses (hand-overs) and sync requests (readiness reads it)."""
        return self.terminals.bus.status_sub is not None

    @property
    def listening(self) -> bool:
        return self._server is not None and bool(self._server.sockets)

    def _terminal_connected(self, account_id: str) -> None:
        telemetry.terminal_connected(self, account_id)

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
            self.config.nats_url,
            name=self.gateway_id,
            startup_timeout_s=self.config.nats_startup_timeout_s,
            on_reconnect=self._nats_reconnected,
        )
        try:
            await self.revocations.start(self.nats, self.config.stream_replicas)
            await self.symbol_maps.start(self.nats, self.config.stream_replicas)
            await streams.when_ready(self.config.nats_startup_timeout_s, self._ensure_streams)
        except BaseException:
            await self.revocations.stop()
            await self.symbol_maps.stop()
            await self.nats.close()
            await self.key_provider.stop()
            raise
        await self.terminals.start()  # terminal statuses (hand-overs), then sync requests
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

    async def _nats_reconnected(self) -> None:
        """A restarted NATS lost the in-memory HB_SNAPSHOTS: create it again (in the background)."""
        self.spawn(self._ensure_streams_quietly())

    async def _ensure_streams_quietly(self) -> None:
        try:
            await self._ensure_streams()
        except Exception as exc:  # JetStream not ready yet: the next reconnect or stream read tries again
            log.warning("streams not ensured after a reconnect", error=repr(exc))

    async def _ensure_streams(self) -> None:
        """The streams clients resume from: created with the defaults when no service created them yet."""
        js, replicas = self.nats.jetstream(), self.config.stream_replicas
        for config in (
            streams.events_stream(replicas),
            streams.alerts_stream(replicas),
            streams.snapshots_stream(replicas),
        ):
            await streams.ensure_present(js, config)

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
            create_connection=connection_class(self.proxies, self.config.proxy_protocol),
            backlog=self.config.listen_backlog,
        )

    async def stop(self) -> None:
        """Close every terminal with 1001 (reconnect elsewhere), publish their disconnects, drain NATS."""
        await self.liveness.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close(close_connections=False)
            await self.terminals.stop()
            await self.clients.stop()
            await self._server.wait_closed()
            self._server = None
        await self.revocations.stop()
        await self.symbol_maps.stop()
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
        now, address = time.monotonic(), self._client_address(connection, request)
        authorization = request.headers.get("Authorization")
        limited = self.limits.before(address, authorization is not None, now)  # a flood costs no more than this
        if limited is not None:
            return self._refuse(connection, request, limited, address)
        page = admin.respond(connection, request)  # the admin dashboard (admin.py): static files at /admin
        if page is not None:
            limited = self.limits.unauthenticated(address, now)
            return page if limited is None else self._refuse(connection, request, limited, address)
        verdict = decide(
            request.path,
            authorization,
            request.headers.get_all("Sec-WebSocket-Protocol"),
            self.key_provider.keys,
            revoked=self.revocations,
            origin=request.headers.get("Origin"),
            allowed_origins=self.config.origins,
        )
        if isinstance(verdict, Refuse) and verdict.reason == "token key id unknown":
            self.key_provider.unknown_kid()
        limited = self.limits.after(verdict, address, now)
        if limited is not None:
            return self._refuse(connection, request, limited, address)
        if isinstance(verdict, Refuse):
            return self._refuse(connection, request, verdict, address)
        peer = connection.remote_address
        if isinstance(verdict, Accept) and peer and address != str(peer[0]):
            verdict = dataclasses.replace(verdict, client=address)  # its TERMINAL_STATUS names the real client
        self._accepted[connection] = verdict
        return None

    def _client_address(self, connection: ServerConnection, request: Request) -> str:
        """The address the limits apply to: the peer, or whom the trusted proxies in front of it name."""
        remote = connection.remote_address
        peer = str(remote[0]) if remote else ""
        if not self.proxies:
            return peer
        proxied = connection.proxied_source if isinstance(connection, ProxiedConnection) else None
        return self.proxies.client_address(peer, forwarded_hops(request.headers.get_all("X-Forwarded-For")), proxied)

    def _refuse(self, connection: ServerConnection, request: Request, refusal: Refuse, address: str) -> Response:
        log.info(
            "handshake refused",
            status=int(refusal.status),
            reason=refusal.reason,
            path=request.path.split("?")[0],
            address=address,
        )
        telemetry.handshake_refused(refusal.status)
        response = connection.respond(refusal.status, refusal.reason + "\n")
        if refusal.status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="hedgebridge"'
        if refusal.retry_after_s is not None:
            response.headers["Retry-After"] = str(refusal.retry_after_s)
        return response

    async def _handle(self, connection: ServerConnection) -> None:
        accept = self._accepted.pop(connection)
        if connection.request is not None:  # decided: the handshake's headers (the token among them) are not kept
            connection.request.headers = _NO_HEADERS
        if connection.response is not None:  # sent: nothing reads them again (≈ 1.6 KB a connection)
            connection.response.headers = _NO_HEADERS
        if isinstance(accept, ClientAccept):
            await self.clients.serve(connection, accept)
            return
        await self.terminals.serve(connection, accept)

    async def _sweep_silent(self) -> None:
        """Close terminals that sent nothing within the heartbeat timeout (one timer for all sessions)."""
        timeout_s = self.config.heartbeat_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(timeout_s / 4, 0.25))
            wall = time.time()
            self.terminals.sweep(loop.time(), wall, self.revocations.revoked)
            self.clients.end_sessions(functools.partial(self._session_end, wall))

    def _session_end(self, wall: float, principal: auth.Principal) -> str | None:
        return auth.session_end_reason(principal, wall, self.revocations)

    def _on_revoked(self, jti: str) -> None:
        """Close at once every session of a token that was just revoked."""
        self.terminals.revoked(jti)
        self.clients.end_sessions(lambda p: "token revoked" if p.token_id == jti else None)
