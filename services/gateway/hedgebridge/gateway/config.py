"""Gateway configuration, from environment variables (prefix ``HEDGEBRIDGE_GATEWAY_``).

| variable                                  | default                  | meaning                                     |
|-------------------------------------------|--------------------------|---------------------------------------------|
| HEDGEBRIDGE_NATS_URL                      | nats://127.0.0.1:4222    | NATS server(s), comma-separated             |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S | 30 | give up (exit 69) when NATS is unreachable at start |
| HEDGEBRIDGE_JWT_SECRET                    | (required for HS256)     | HS256 key that signs tokens (>= 32 bytes)   |
| HEDGEBRIDGE_STREAM_REPLICAS               | 1                        | replicas of the hb_revoked bucket           |
| HEDGEBRIDGE_GATEWAY_JWT_ALGORITHM         | HS256                    | the accepted algorithm: HS256/RS256/ES256   |
| HEDGEBRIDGE_GATEWAY_JWT_PUBLIC_KEY_FILE   | (none)                   | RS256/ES256: PEM public key file            |
| HEDGEBRIDGE_GATEWAY_JWT_JWKS_URL          | (none)                   | RS256/ES256: JWKS URL (keys by kid)         |
| HEDGEBRIDGE_GATEWAY_JWT_JWKS_REFRESH_S    | 300                      | how often the JWKS is fetched again         |
| HEDGEBRIDGE_GATEWAY_JWT_LEEWAY_S          | 5                        | clock skew tolerated on exp/iat/nbf         |
| HEDGEBRIDGE_GATEWAY_TLS_CERT / _TLS_KEY   | (none)                   | PEM certificate chain and key: serve wss    |
| HEDGEBRIDGE_GATEWAY_HANDSHAKE_TIMEOUT_MS  | 10000                    | a connection must finish its handshake by   |
| HEDGEBRIDGE_GATEWAY_MESSAGE_RATE / _BURST | 500 / 2000               | frames/s per connection; more: 1008         |
| HEDGEBRIDGE_GATEWAY_IP_CONNECT_RATE / _BURST | 10 / 100              | connections/s per client IP; more: 429      |
| HEDGEBRIDGE_GATEWAY_ALLOWED_ORIGINS       | (none: any)              | Origins browsers may use on /client (a,b)   |
| HEDGEBRIDGE_GATEWAY_HOST                  | 127.0.0.1                | listen address                              |
| HEDGEBRIDGE_GATEWAY_PORT                  | 8765                     | listen port                                 |
| HEDGEBRIDGE_GATEWAY_ID                    | gw-<host>-<pid>          | this replica's name in status events        |
| HEDGEBRIDGE_GATEWAY_HEARTBEAT_INTERVAL_MS | 1000                     | how often terminals send HEARTBEAT          |
| HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS  | 3500                     | silence after which a terminal is dropped   |
| HEDGEBRIDGE_GATEWAY_MAX_FRAME_BYTES       | 1048576                  | larger frames close the connection (1009)   |
| HEDGEBRIDGE_GATEWAY_SEND_TIMEOUT_MS       | 2000                     | limit for writing a command to a terminal   |
| HEDGEBRIDGE_GATEWAY_CLIENT_AUTH_TIMEOUT_MS | 5000                    | /client without a header: AUTH must come by |
| HEDGEBRIDGE_GATEWAY_CLIENT_QUEUE_MAX      | 10000                    | frames queued for one client; more: 1008    |
| HEDGEBRIDGE_GATEWAY_CLIENT_MAX_IN_FLIGHT  | 256                      | requests one client may have running        |
| HEDGEBRIDGE_GATEWAY_CLIENT_REQUEST_TIMEOUT_MS | 10000                | an order's timeout when the request has none |
| HEDGEBRIDGE_GATEWAY_CLIENT_ACTION_TIMEOUT_MS | 30000                 | an action's timeout when the request has none |
| HEDGEBRIDGE_GATEWAY_CLIENT_REQUEST_MARGIN_MS | 5000                  | added to a request's timeout for transport  |
| HEDGEBRIDGE_GATEWAY_LIVENESS_INTERVAL_MS | 5000                      | GATEWAY_LIVENESS reports and heartbeat pings |
| HEDGEBRIDGE_GATEWAY_COMPRESSION           | profile (false)          | permessage-deflate on /ea and /client       |
| HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX      | profile (1)              | frames written to a client per write        |
| HEDGEBRIDGE_GATEWAY_CLIENT_PRIORITY       | profile (true)           | results and action states go before prices  |
| HEDGEBRIDGE_PROFILE                       | latency                  | latency or throughput: defaults of the four |
|                                           |                          | settings above and of the heartbeat ones    |
|                                           |                          | (hedgebridge.common.profiles)               |
| HEDGEBRIDGE_TRACING                       | false                    | OpenTelemetry spans (no export)             |
| HEDGEBRIDGE_OTLP_ENDPOINT                 | (none)                   | export spans over OTLP/HTTP (tracing on)    |
| HEDGEBRIDGE_LOG_LEVEL / HEDGEBRIDGE_LOG_FORMAT | INFO / json         | logging                                     |

/healthz, /readyz and /metrics are served on the gateway's own port (http_routes.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import msgspec

from hedgebridge.common import auth, profiles
from hedgebridge.common.config import ConfigError, load

PREFIX = "HEDGEBRIDGE_GATEWAY_"


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: float = 30.0
    jwt_secret: str = ""
    stream_replicas: int = 1
    jwt_algorithm: str = "HS256"
    jwt_public_key_file: str = ""
    jwt_jwks_url: str = ""
    jwt_jwks_refresh_s: float = 300.0
    jwt_leeway_s: float = 5.0
    tls_cert: str = ""
    tls_key: str = ""
    handshake_timeout_ms: int = 10_000
    message_rate: float = 500.0
    message_burst: int = 2000
    ip_connect_rate: float = 10.0
    ip_connect_burst: int = 100
    allowed_origins: str = ""
    host: str = "127.0.0.1"
    port: int = 8765
    id: str = ""
    heartbeat_interval_ms: int = 1000
    heartbeat_timeout_ms: int = 3500
    max_frame_bytes: int = 1_048_576
    send_timeout_ms: int = 2000
    client_auth_timeout_ms: int = 5000
    client_queue_max: int = 10_000
    client_max_in_flight: int = 256
    client_request_timeout_ms: int = 10_000
    client_action_timeout_ms: int = 30_000
    client_request_margin_ms: int = 5000
    liveness_interval_ms: int = 5000
    compression: bool = False
    client_batch_max: int = 1
    client_priority: bool = True
    profile: str = "latency"
    tracing: bool = False
    otlp_endpoint: str = ""
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def gateway_id(self) -> str:
        return self.id or f"gw-{socket.gethostname()}-{os.getpid()}"

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


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
    if cfg.message_rate < 0 or cfg.ip_connect_rate < 0 or cfg.message_burst < 1 or cfg.ip_connect_burst < 1:
        raise ConfigError(f"{PREFIX}*_RATE must not be negative (0: no limit) and *_BURST at least 1")
    if cfg.stream_replicas not in (1, 3, 5):
        raise ConfigError("HEDGEBRIDGE_STREAM_REPLICAS must be 1, 3 or 5")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_PORT: not a port number")
    if cfg.heartbeat_timeout_ms <= cfg.heartbeat_interval_ms:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS must exceed the heartbeat interval")
    if cfg.max_frame_bytes < 1024:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_MAX_FRAME_BYTES must be at least 1024")
    if not 1 <= cfg.client_batch_max <= 1000:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX must be between 1 and 1000")
    if min(cfg.client_auth_timeout_ms, cfg.client_queue_max, cfg.client_max_in_flight) < 1:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_CLIENT_* limits must be at least 1")
    if cfg.liveness_interval_ms < 100:
        raise ConfigError("HEDGEBRIDGE_GATEWAY_LIVENESS_INTERVAL_MS must be at least 100")
    return cfg
