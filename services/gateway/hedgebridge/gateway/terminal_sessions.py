"""The gateway's terminal side: the terminals' WebSocket sessions it holds, from the accepted handshake to
the end of the read loop.

- one live session per account: a newer connection on this replica replaces the older one (4002); the bus
  side (``hedgebridge.common.terminal_link``) hands an account over to a newer connection on another replica;
- subscribe to the account's commands (one router for every session's subscription, ``terminal_link/commands.py``
  in ``hedgebridge.common``) -> TERMINAL_STATUS CONNECTED -> flush -> WELCOME, then the read loop
  (frames over the rate are closed with 1008 "rate limit"), and DISCONNECTED with the reason when it ends;
- the sweep closes sessions silent past the heartbeat timeout (4001) or whose token ended (1008), a revoked
  token closes its sessions at once, and ``stop`` closes every session with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Container

from nats.aio.client import Client as NatsClient
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from hedgebridge.common import auth, logs
from hedgebridge.common.symbol_maps import MapMirror
from hedgebridge.common.terminal_link import REPLACED, TerminalBus
from hedgebridge.protocol import PROTOCOL_VERSION, Welcome, subjects, utcnow
from hedgebridge.protocol.errors import CloseCode

from .config import GatewayConfig
from .handshake import Accept
from .limits import RATE_LIMIT
from .reports import ReportCheck
from .terminal_link_ws import Spawn, TerminalSession

log = logs.get("gateway")


class TerminalSessions:
    def __init__(
        self,
        config: GatewayConfig,
        nats: Callable[[], NatsClient],
        spawn: Spawn,
        on_connected: Callable[[str], None],
        maps: MapMirror | None = None,
    ) -> None:
        self.config = config
        # events are published in canonical symbols (the symbol maps, ``maps``)
        self.bus: TerminalBus[TerminalSession] = TerminalBus(
            config.gateway_id, nats, log, status_subject=subjects.ALL_STATUS, maps=maps
        )
        self.sessions = self.bus.links  # the live session of each account
        self.reports = ReportCheck(nats)  # which trade reports answer a command (reports.py)
        self._spawn = spawn
        self._on_connected = on_connected

    async def start(self) -> None:
        await self.bus.start()

    async def stop(self) -> None:
        """Close every terminal with 1001 (reconnect elsewhere); their disconnects are published as they end."""
        await asyncio.gather(
            *(s.retire(CloseCode.GOING_AWAY, "gateway shutting down") for s in list(self.sessions.values())),
            return_exceptions=True,
        )
        await self.bus.stop()

    async def serve(self, connection: ServerConnection, accept: Accept) -> None:
        """One terminal connection, from the accepted handshake until it ends."""
        session = TerminalSession(connection, accept, self.config, self.bus, self._spawn, self.reports)
        account = session.account_id
        previous = self.sessions.get(account)
        if previous is not None:
            await previous.retire(CloseCode.SESSION_REPLACED, REPLACED)
        self.bus.hold(session)
        self._on_connected(account)
        try:
            subscription = await self.bus.subscribe_commands(session)
            if session.close_reason:  # replaced while subscribing: the newer session takes the commands
                await subscription.unsubscribe()
                return
            session.subscription = subscription
            await self.bus.announce(session)  # once WELCOME is sent, commands for the account reach this socket
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
            session.mark_welcomed()
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
            self.bus.drop(session)
            reason = session.close_reason or _close_description(connection)
            log.info("terminal disconnected", account=account, session=session.session_id, reason=reason)
            with contextlib.suppress(Exception):
                await self.bus.publish_status(session, "DISCONNECTED", reason)

    async def _read_loop(self, session: TerminalSession) -> None:
        loop = asyncio.get_running_loop()
        recv = session.connection.recv  # as ``async for`` over the connection, without its generator per frame
        while True:
            try:
                data = await recv()
            except ConnectionClosedOK:
                return
            if session.close_reason:  # closing: frames still arriving are dropped, so the close handshake completes
                continue
            session.last_seen = loop.time()
            if not session.bucket.take(session.last_seen):
                log.warning("rate limit exceeded", account=session.account_id, session=session.session_id)
                self._spawn(session.retire(CloseCode.POLICY_VIOLATION, RATE_LIMIT))
                continue
            try:
                await session.handle_frame(data)
            except TimeoutError:  # the terminal does not read: closed as a slow consumer (see send)
                return

    def sweep(self, now: float, wall: float, revoked: Container[str]) -> None:
        """Close the terminals that sent nothing within the heartbeat timeout (``now``: the loop's clock), or
        whose token ended (``wall``: the epoch)."""
        silent_since = now - self.config.heartbeat_timeout_ms / 1000
        for session in list(self.sessions.values()):
            if session.close_reason:
                continue
            ended = auth.session_end_reason(session.principal, wall, revoked)
            if ended is not None:
                self._spawn(session.retire(CloseCode.POLICY_VIOLATION, ended))
            elif session.last_seen < silent_since:
                self._spawn(session.retire(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout"))

    def revoked(self, jti: str) -> None:
        """Close at once every session of a token that was just revoked."""
        for session in list(self.sessions.values()):
            if session.principal.token_id == jti and not session.close_reason:
                self._spawn(session.retire(CloseCode.POLICY_VIOLATION, "token revoked"))


def _close_description(connection: ServerConnection) -> str:
    code = connection.close_code
    if code is None or code == 1006:  # no closing handshake: the network or the terminal went away
        return "connection lost"
    reason = connection.close_reason or ""
    return f"closed {code} {reason}".strip()
