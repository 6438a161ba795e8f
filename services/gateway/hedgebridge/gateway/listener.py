"""The gateway's connections below HTTP: the PROXY protocol header a trusted balancer sends before the first
byte of HTTP (``proxies.py`` reads it; this connection class takes it off the stream).

With ``HEDGEBRIDGE_GATEWAY_PROXY_PROTOCOL`` set, a connection from a trusted proxy must start with a header of
the configured version: its source address is the connection's client (``proxied_source``), and a missing or
unreadable header drops the connection (logged). A connection from any other peer may start with a header
too (a balancer missing from ``TRUSTED_PROXIES``): it is read past and ignored, and the peer is the client.
Without the setting no byte is looked at.
"""

from __future__ import annotations

from typing import Any, ClassVar

from websockets.asyncio.server import ServerConnection

from hedgebridge.common import logs

from .proxies import (
    BadHeader,
    NeedMore,
    NotProxy,
    ProxyHeader,
    TrustedProxies,
    parse_address,
    parse_proxy_header,
    versions_of,
)

log = logs.get("gateway")


class ProxiedConnection(ServerConnection):
    """A server connection that reads a PROXY header first (when ``versions`` names any)."""

    trusted: ClassVar[TrustedProxies] = TrustedProxies()
    versions: ClassVar[tuple[int, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxied_source: str | None = None  # the client a trusted proxy named (None: the peer itself)
        self._pending: bytearray | None = bytearray() if self.versions else None

    def data_received(self, data: bytes) -> None:
        if self._pending is None:
            super().data_received(data)
            return
        self._pending += data
        peer = self.transport.get_extra_info("peername")
        trusted = bool(peer) and self.trusted.trusts(parse_address(str(peer[0])))
        parsed = parse_proxy_header(bytes(self._pending), self.versions if trusted else (1, 2))
        if isinstance(parsed, NeedMore):
            return
        if isinstance(parsed, BadHeader) or (trusted and isinstance(parsed, NotProxy)):
            reason = parsed.reason if isinstance(parsed, BadHeader) else "no PROXY protocol header"
            log.warning("connection dropped", peer=str(peer[0]) if peer else "", reason=reason)
            self._pending = None
            self.transport.abort()
            return
        rest = bytes(self._pending)
        self._pending = None
        if isinstance(parsed, ProxyHeader):
            rest = rest[parsed.consumed :]
            if trusted:
                self.proxied_source = parsed.source
        if rest:
            super().data_received(rest)


def connection_class(trusted: TrustedProxies, proxy_protocol: str) -> type[ProxiedConnection]:
    """The connection class of one gateway's listener (without PROXY headers: websockets' own reader, no
    call in between for every read)."""
    versions = versions_of(proxy_protocol)
    namespace: dict[str, object] = {"trusted": trusted, "versions": versions}
    if not versions:
        namespace["data_received"] = ServerConnection.data_received
    return type("GatewayConnection", (ProxiedConnection,), namespace)
