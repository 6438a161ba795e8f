"""The client API on ``/client``: systems and admins submit orders and actions and watch live events.

- Authentication: the handshake's ``Authorization: Bearer <JWT>`` (role ``system`` or ``admin``), or, without
  that header, an ``AUTH`` frame within ``client_auth_timeout_ms`` (else closed with 1008 and the reason).
  Then ``CLIENT_WELCOME``.
- ``REQUEST``: every account the body names must be in the token's scope, else an ERROR FORBIDDEN whose
  ``field`` names the offending field and whose ``refId`` is the requestId. Accepted requests go to NATS
  concurrently (up to ``client_max_in_flight`` per connection) and are answered with ``REPLY``. Symbol map
  requests (admin tokens only) are applied to ``hb_symbol_map`` here and answered with SYMBOL_MAPS.
- ``SUBSCRIBE``: live events, fanned out in-process from ONE NATS subscription per (topic, account) — or
  per topic for an admin's "everything" — shared by every client of this gateway and reference-counted.
- Every frame to a client goes through a queue of at most ``client_queue_max`` frames, written right after it
  was queued while the client's socket takes it (one write per client for all it got); a client whose queue
  reaches the high-water mark gets SLOW_CONSUMER first, one that lets it fill up is closed with 1008 "slow
  consumer" (the other clients are not slowed down).
- ``resume`` / ``recent`` in a SUBSCRIBE: the topics start from JetStream (history, snapshots) and hand over
  to live events without gap or duplicate (``client_streams``).
- A client silent for longer than the heartbeat timeout is closed with 4001; a bad frame is answered with a
  typed ERROR and the connection stays up.
- A client sending more frames than its rate (``message_rate``/``message_burst``) is closed with 1008
  "rate limit"; one whose token expires or is revoked is closed with 1008 and that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Container
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hedgebridge.common import executor_client, logs, symbol_maps
from hedgebridge.common.auth import Keys, Principal
from hedgebridge.common.obs import tracing
from hedgebridge.common.symbol_map import MapRefused
from hedgebridge.protocol import (
    ActionRequest,
    ActionState,
    BatchResult,
    OrderResult,
    ProtocolError,
    SymbolMaps,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)
from hedgebridge.protocol.client import Auth, decode_client_frame
from hedgebridge.protocol.errors import CloseCode

from . import outgoing
from .client_feeds import FeedRegistry
from .client_rules import (
    MapBody,
    Refusal,
    RequestBody,
    check_exit_target,
    close_reason,
    exit_target,
    request_timeout_s,
    welcome,
)
from .client_sessions import ClientSession
from .config import GatewayConfig
from .handshake import ClientAccept, Refuse, authenticate_client
from .limits import RATE_LIMIT

log = logs.get("gateway")


class ClientHub:
    """Every client session of this gateway: their authentication, silence sweep and shutdown, the shared
    feeds they subscribe through, and the backend they ask (the executor for orders, the coordinator for
    actions)."""

    def __init__(self, config: GatewayConfig, nats: Callable[[], NatsClient]) -> None:
        self.config = config
        self._nats = nats
        self.feeds = FeedRegistry(nats)
        self.flusher = outgoing.Flusher()  # writes the queues that got frames, once per turn of the loop
        self.sessions: set[ClientSession] = set()
        self.slow_consumers = 0
        self.slow_warnings = 0  # clients told their queue passed the high-water mark
        self._background: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.keys: Callable[[], Keys] = lambda: config.jwt_secret  # the gateway sets its key provider
        self.revoked: Container[str] = frozenset()

    @property
    def nats(self) -> NatsClient:
        return self._nats()

    def end_sessions(self, reason_for: Callable[[Principal], str | None]) -> None:
        """Close (1008) every session for which ``reason_for`` gives a reason (token expired or revoked)."""
        for session in list(self.sessions):
            reason = reason_for(session.principal)
            if reason is not None and session.close_code is None:
                log.info("client session ended", session=session.session_id, reason=reason)
                session.retire(CloseCode.POLICY_VIOLATION, reason)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_silent())

    async def stop(self) -> None:
        """Close every client with 1001 (reconnect, possibly to another replica) and drop the shared feeds."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for session in list(self.sessions):
            session.retire(CloseCode.GOING_AWAY, "gateway shutting down")
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.feeds.close()

    async def serve(self, connection: ServerConnection, accept: ClientAccept) -> None:
        principal = accept.principal
        if principal is None:
            principal = await self._authenticate(connection)
            if principal is None:
                return
        session = ClientSession(self, connection, principal, accept.version)
        self.sessions.add(session)
        log.info("client connected", session=session.session_id, subject=principal.subject, role=principal.role)
        session.start_writer()
        session.enqueue(welcome(principal, accept.version, session.session_id, self.config, utcnow()))
        loop = asyncio.get_running_loop()
        try:
            async for data in connection:
                if session.close_code is not None:  # closing: drop what still arrives so the close completes
                    continue
                session.last_seen = loop.time()
                if not session.bucket.take(session.last_seen):
                    log.warning("rate limit exceeded", session=session.session_id, subject=principal.subject)
                    session.retire(CloseCode.POLICY_VIOLATION, RATE_LIMIT)
                    continue
                await session.handle_frame(data)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("client session failed", session=session.session_id)
            session.retire(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.sessions.discard(session)
            await session.cleanup()
            log.info("client disconnected", session=session.session_id, reason=session.close_reason or "closed")

    async def _authenticate(self, connection: ServerConnection) -> Principal | None:
        """Read the AUTH frame of a client that sent no Authorization header; close 1008 when it fails."""
        timeout_ms = self.config.client_auth_timeout_ms
        reason: str
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                data = await connection.recv()
        except TimeoutError:
            reason = f"no AUTH frame within {timeout_ms} ms"
        except ConnectionClosed:
            return None
        else:
            try:
                frame = decode_client_frame(data)
            except ProtocolError as exc:
                frame = None
                reason = f"the first frame must be AUTH: {exc.message}"
            if isinstance(frame, Auth):
                verdict = authenticate_client(frame.token, self.keys(), self.revoked)
                if not isinstance(verdict, Refuse):
                    return verdict
                reason = f"{int(verdict.status)} {verdict.reason}"
            elif frame is not None:
                reason = "the first frame must be AUTH"
        log.info("client refused", reason=reason)
        with contextlib.suppress(Exception):
            await connection.close(CloseCode.POLICY_VIOLATION, close_reason(reason))
        return None

    async def _sweep_silent(self) -> None:
        timeout_s = self.config.heartbeat_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(timeout_s / 4, 0.25))
            now = loop.time()
            for session in list(self.sessions):
                if now - session.last_seen > timeout_s and not session.waiting:
                    session.retire(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")

    # forwarding to the backend

    async def forward(
        self, body: RequestBody, principal: Principal
    ) -> OrderResult | BatchResult | ActionState | SymbolMaps | Refusal:
        if isinstance(body, MapBody):
            return await self._symbol_maps(body, principal)
        timeout_s = request_timeout_s(body, self.config)
        if isinstance(body, ActionRequest):
            return await self._action(body, principal, timeout_s)
        try:
            answer = await executor_client.ask(
                self.nats, body, timeout_s, headers=tracing.headers(), follow_on="topic orders"
            )
        except executor_client.UnreadableAnswer as exc:
            return Refusal(errors.INTERNAL, str(exc))
        return answer.result

    async def _symbol_maps(self, body: MapBody, principal: Principal) -> SymbolMaps | Refusal:
        """A symbol map request, applied to the bucket (the checks are ``symbol_map``'s)."""
        try:
            kv = await symbol_maps.bucket(self.nats.jetstream(), self.config.stream_replicas)
            return await symbol_maps.handle(kv, body, principal.subject)
        except MapRefused as exc:
            return Refusal(exc.code, exc.message, f"body.{exc.field}" if exc.field else None)

    async def _action(self, body: ActionRequest, principal: Principal, timeout_s: float) -> ActionState | Refusal:
        target = exit_target(body, principal)
        if target is not None:
            refusal = check_exit_target(target, await self._recorded_action(target), principal)
            if refusal is not None:
                return refusal
        try:
            reply = await self.nats.request(
                subjects.ACTION_REQUEST, pack(body), timeout=timeout_s, headers=tracing.headers()
            )
        except NoRespondersError:
            return Refusal(
                errors.COORDINATOR_UNAVAILABLE,
                "no coordinator answered; the action was not started (safe to retry with the same actionId)",
            )
        except NatsTimeoutError:
            return Refusal(
                errors.OUTCOME_UNKNOWN,
                f"no answer from the coordinator within {timeout_s:g}s; follow action {body.action_id} "
                "on topic actions, or ask again with the same actionId",
            )
        try:
            return unpack(reply.data, ActionState)
        except ProtocolError as exc:
            return Refusal(errors.INTERNAL, f"unreadable answer from the coordinator: {exc.message}")

    async def _recorded_action(self, action_id: str) -> ActionState | None:
        """The action's last recorded state (None when none is recorded or it does not decode)."""
        try:
            stored = await self.nats.jetstream().get_last_msg(subjects.EVENTS_STREAM, subjects.action(action_id))
            return unpack(stored.data or b"", ActionState)
        except (NotFoundError, ProtocolError, ValueError):
            return None
