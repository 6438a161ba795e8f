"""Gateway configuration: the ``GatewayConfig`` Struct, read from ``HEDGEBRIDGE_GATEWAY_*`` and the shared
``HEDGEBRIDGE_*`` settings (``hedgebridge.common.config.ServiceConfig``), the latency/throughput profile's
defaults, and the checks of its values. /healthz, /readyz and /metrics are served on the gateway's own port
(http_routes.py).

Every field carries its meaning. The table of the variables, their defaults and meanings is generated from
the Struct: at the end of this docstring (at import), and in README.md, "Configuration" (``python -m
hedgebridge.cli.config_tables``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated

from hedgebridge.common import auth, profiles
from hedgebridge.common.config import ConfigError, ServiceConfig, check_stream_replicas, load, setting
from hedgebridge.common.config_docs import with_table

from .proxies import PROXY_MODES, TrustedProxies

PREFIX = "HEDGEBRIDGE_GATEWAY_"


class GatewayConfig(ServiceConfig, frozen=True, kw_only=True):
    jwt_secret: Annotated[
        str,
        setting(
            "HS256 key that signs tokens (at least 32 bytes); also read by hedgebridge token and sim",
            default="(required for HS256)",
        ),
    ] = ""
    stream_replicas: Annotated[
        int, setting("replicas of the hb_revoked bucket: 1, or 3 (5) on a three-node (five-node) cluster")
    ] = 1
    profile: Annotated[
        str, setting("latency or throughput: the defaults of the settings whose default names a profile")
    ] = "latency"
    jwt_algorithm: Annotated[str, setting("the one accepted algorithm: HS256, RS256 or ES256")] = "HS256"
    jwt_public_key_file: Annotated[str, setting("RS256/ES256: PEM public key file")] = ""
    jwt_jwks_url: Annotated[
        str, setting("RS256/ES256: JWKS URL (keys chosen by kid, fetched again on an unknown kid)")
    ] = ""
    jwt_jwks_refresh_s: Annotated[float, setting("how often the JWKS is fetched again")] = 300.0
    jwt_leeway_s: Annotated[float, setting("clock skew tolerated on exp, iat and nbf")] = 5.0
    tls_cert: Annotated[str, setting("PEM certificate chain: serve wss (with TLS_KEY)")] = ""
    tls_key: Annotated[str, setting("PEM key of TLS_CERT")] = ""
    handshake_timeout_ms: Annotated[int, setting("a connection must finish its WebSocket handshake within this")] = (
        10_000
    )
    message_rate: Annotated[
        float, setting("frames per second one connection may send; more: closed 1008 'rate limit'; 0: no limit")
    ] = 500.0
    message_burst: Annotated[int, setting("burst of MESSAGE_RATE")] = 2000
    ip_connect_rate: Annotated[
        float,
        setting(
            "refused or credential-less handshakes per second from one client address (valid tokens do not count);"
            " more: HTTP 429; 0: no limit"
        ),
    ] = 10.0
    ip_connect_burst: Annotated[int, setting("burst of IP_CONNECT_RATE")] = 100
    connect_rate: Annotated[
        float,
        setting("handshakes with a valid token per second, all addresses together; more: HTTP 503 with Retry-After"),
    ] = 500.0
    connect_burst: Annotated[int, setting("burst of CONNECT_RATE")] = 2000
    account_connect_rate: Annotated[
        float, setting("terminal handshakes per second with one account's valid token; more: HTTP 429; 0: no limit")
    ] = 5.0
    account_connect_burst: Annotated[int, setting("burst of ACCOUNT_CONNECT_RATE")] = 30
    trusted_proxies: Annotated[
        str,
        setting(
            "comma-separated CIDRs of the load balancers and proxies whose X-Forwarded-For or PROXY header names the"
            " client (empty: none; other peers' headers are ignored)"
        ),
    ] = ""
    proxy_protocol: Annotated[
        str,
        setting(
            "off, v1, v2 or any: connections from TRUSTED_PROXIES start with a PROXY protocol header of that version"
            " (not with TLS yet)"
        ),
    ] = "off"
    listen_backlog: Annotated[
        int, setting("connections the kernel queues before the gateway accepts them (capped by net.core.somaxconn)")
    ] = 4096
    allowed_origins: Annotated[
        str,
        setting(
            "comma-separated Origins browsers may use on /client (empty: any; requests without Origin always pass)"
        ),
    ] = ""
    host: Annotated[str, setting("listen address (the image sets 0.0.0.0)")] = "127.0.0.1"
    port: Annotated[int, setting("listen port (also /healthz, /readyz and /metrics)")] = 8765
    id: Annotated[str, setting("this replica's name in status events", default="gw-<host>-<pid>")] = ""
    heartbeat_interval_ms: Annotated[int, setting("how often terminals send HEARTBEAT (asked in WELCOME)")] = 1000
    heartbeat_timeout_ms: Annotated[int, setting("silence after which a terminal is dropped")] = 3500
    max_frame_bytes: Annotated[
        int, setting("larger frames close the connection with 1009 (also bounds an inflated frame)")
    ] = 1_048_576
    send_timeout_ms: Annotated[
        int, setting("a terminal that does not take a frame within this is closed 1008 'slow consumer'")
    ] = 2000
    client_auth_timeout_ms: Annotated[int, setting("a /client connection without a header must send AUTH by then")] = (
        5000
    )
    client_queue_max: Annotated[int, setting("frames waiting for one client; beyond, closed 1008 'slow consumer'")] = (
        10_000
    )
    client_queue_high_water_pct: Annotated[
        int, setting("share (%) of CLIENT_QUEUE_MAX waiting at which a client gets SLOW_CONSUMER (warned once)")
    ] = 80
    client_replay_max: Annotated[
        int, setting("events replayed at most for one topic of a resuming client; more: RESYNC TOO_FAR_BEHIND")
    ] = 100_000
    client_max_in_flight: Annotated[int, setting("requests one client may have running")] = 256
    client_request_timeout_ms: Annotated[int, setting("an order's timeout when the request has none")] = 10_000
    client_action_timeout_ms: Annotated[int, setting("an action's timeout when the request has none")] = 30_000
    client_request_margin_ms: Annotated[
        int, setting("added to a request's timeout for the transport to the backend")
    ] = 5000
    liveness_interval_ms: Annotated[
        int, setting("GATEWAY_LIVENESS reports every interval; each asks every terminal for a WebSocket Ping")
    ] = 5000
    compression: Annotated[bool, setting("permessage-deflate on /ea and /client")] = False
    client_batch_max: Annotated[int, setting("frames written to a client per write")] = 1
    client_priority: Annotated[bool, setting("results and action states go to a client before prices")] = True

    def check_shared(self) -> None:
        super().check_shared()
        check_stream_replicas(self.stream_replicas)

    @property
    def gateway_id(self) -> str:
        return self.id or f"gw-{socket.gethostname()}-{os.getpid()}"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.trusted_proxies)


def from_env(environ: Mapping[str, str] | None = None) -> GatewayConfig:
    profile = profiles.current(environ)  # its defaults fill in the variables not set
    return check(load(GatewayConfig, PREFIX, profiles.with_defaults(environ, profile.gateway_defaults())))


def check(cfg: GatewayConfig) -> GatewayConfig:
    """Raise ConfigError (naming the variable) for values that cannot work."""
    if cfg.jwt_algorithm not in auth.ALGORITHMS:
        raise ConfigError(f"{PREFIX}JWT_ALGORITHM must be one of {', '.join(auth.ALGORITHMS)}")
    if cfg.jwt_algorithm == "HS256":
        if cfg.jwt_public_key_file or cfg.jwt_jwks_url:
            raise ConfigError(f"{PREFIX}JWT_PUBLIC_KEY_FILE / _JWT_JWKS_URL need JWT_ALGORITHM RS256 or ES256")
        try:
            auth.check_secret(cfg.jwt_secret)
        except ValueError as exc:
            raise ConfigError(f"HEDGEBRIDGE_JWT_SECRET: {exc}") from None
    elif bool(cfg.jwt_public_key_file) == bool(cfg.jwt_jwks_url):
        raise ConfigError(f"{cfg.jwt_algorithm} needs one of {PREFIX}JWT_PUBLIC_KEY_FILE or {PREFIX}JWT_JWKS_URL")
    if cfg.jwt_jwks_url and not cfg.jwt_jwks_url.startswith(("https://", "http://")):
        raise ConfigError(f"{PREFIX}JWT_JWKS_URL must be an http(s) URL")
    if not 0 <= cfg.jwt_leeway_s <= 300 or cfg.jwt_jwks_refresh_s < 1:
        raise ConfigError(f"{PREFIX}JWT_LEEWAY_S is 0-300 and {PREFIX}JWT_JWKS_REFRESH_S at least 1")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY go together")
    if cfg.handshake_timeout_ms < 100:
        raise ConfigError(f"{PREFIX}HANDSHAKE_TIMEOUT_MS must be at least 100")
    rates = (cfg.message_rate, cfg.ip_connect_rate, cfg.connect_rate, cfg.account_connect_rate)
    bursts = (cfg.message_burst, cfg.ip_connect_burst, cfg.connect_burst, cfg.account_connect_burst)
    if min(rates) < 0 or min(bursts) < 1:
        raise ConfigError(f"{PREFIX}*_RATE must not be negative (0: no limit) and *_BURST at least 1")
    _check_proxies(cfg)
    if not 1 <= cfg.listen_backlog <= 65535:
        raise ConfigError(f"{PREFIX}LISTEN_BACKLOG must be between 1 and 65535")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_PORT: not a port number")
    if cfg.heartbeat_timeout_ms <= cfg.heartbeat_interval_ms:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS must exceed the heartbeat interval")
    if cfg.max_frame_bytes < 1024:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_MAX_FRAME_BYTES must be at least 1024")
    if not 1 <= cfg.client_batch_max <= 1000:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX must be between 1 and 1000")
    if min(cfg.client_auth_timeout_ms, cfg.client_queue_max, cfg.client_max_in_flight, cfg.client_replay_max) < 1:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_CLIENT_* limits must be at least 1")
    if not 1 <= cfg.client_queue_high_water_pct <= 100:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_CLIENT_QUEUE_HIGH_WATER_PCT must be between 1 and 100")
    if cfg.liveness_interval_ms < 100:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_LIVENESS_INTERVAL_MS must be at least 100")
    return cfg


def _check_proxies(cfg: GatewayConfig) -> None:
    try:
        proxies = cfg.proxies
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}TRUSTED_PROXIES: {exc}") from None
    if cfg.proxy_protocol not in PROXY_MODES:
        raise ConfigError(f"{PREFIX}PROXY_PROTOCOL must be one of {', '.join(PROXY_MODES)}")
    if cfg.proxy_protocol != "off" and not proxies:
        raise ConfigError(f"{PREFIX}PROXY_PROTOCOL needs {PREFIX}TRUSTED_PROXIES (the balancers that send it)")
    if cfg.proxy_protocol != "off" and cfg.tls:
        raise ConfigError(
            f"{PREFIX}PROXY_PROTOCOL with TLS on the same listener is not supported yet: terminate TLS at the"
            " balancer, or use X-Forwarded-For"
        )


__doc__ = with_table(__doc__, GatewayConfig, PREFIX)
