"""The gateway's abuse limits and security settings as pure decisions: token buckets, the per-key table, the
Origin allow-list, and the configuration checks."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from hedgebridge.common import auth
from hedgebridge.common.config import ConfigError
from hedgebridge.gateway.config import from_env
from hedgebridge.gateway.handshake import ClientAccept, Refuse, check_origin, decide
from hedgebridge.gateway.limits import KeyedLimiter, TokenBucket

SECRET = auth.new_secret()


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert all(bucket.take(100.0) for _ in range(5))
    assert not bucket.take(100.0)
    assert not bucket.take(100.05)  # half a token
    assert bucket.take(100.11)  # one token after 0.1 s at 10/s
    assert not bucket.take(100.11)
    assert all(bucket.take(200.0) for _ in range(5))  # refilled, never beyond the burst
    assert not bucket.take(200.0)
    unlimited = TokenBucket(rate=0, burst=1)
    assert all(unlimited.take(1.0) for _ in range(10_000))


def test_keyed_limiter_counts_per_key_and_stays_bounded() -> None:
    limiter = KeyedLimiter(rate=1, burst=3, max_keys=4)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("10.0.0.2", 0.0)  # another address has its own bucket
    assert limiter.allow("10.0.0.1", 1.0)  # one more after a second
    for i in range(100):
        limiter.allow(f"192.0.2.{i}", 2.0)
    assert len(limiter.buckets) <= 4
    assert KeyedLimiter(rate=0, burst=1).allow("x", 0.0)


def test_origin_allow_list() -> None:
    allowed = frozenset({"https://desk.example.com"})
    assert check_origin(None, allowed) is None  # not a browser
    assert check_origin("https://desk.example.com", allowed) is None
    assert check_origin("https://desk.example.com/", allowed) is None
    assert check_origin("https://evil.example.net", allowed) == Refuse(HTTPStatus.FORBIDDEN, "origin not allowed")
    assert check_origin("https://evil.example.net", frozenset()) is None  # no list: any origin
    token = auth.mint_token(SECRET, role="admin", subject="ops")
    refused = decide("/client", f"Bearer {token}", ["hedgebridge.v1"], SECRET, origin="null", allowed_origins=allowed)
    assert refused == Refuse(HTTPStatus.FORBIDDEN, "origin not allowed")
    accepted = decide(
        "/client", None, ["hedgebridge.v1"], SECRET, origin="https://desk.example.com", allowed_origins=allowed
    )
    assert accepted == ClientAccept(None, 1)


def test_revoked_tokens_are_refused_at_the_handshake() -> None:
    token = auth.mint_token(SECRET, role="ea", subject="A1")
    jti = auth.verify_token(token, SECRET).token_id
    assert decide("/ea", f"Bearer {token}", ["hedgebridge.v1"], SECRET, revoked={jti}) == Refuse(
        HTTPStatus.UNAUTHORIZED, "token revoked"
    )
    admin = auth.mint_token(SECRET, role="admin", subject="ops")
    admin_jti = auth.verify_token(admin, SECRET).token_id
    assert decide("/client", f"Bearer {admin}", ["hedgebridge.v1"], SECRET, revoked={admin_jti}) == Refuse(
        HTTPStatus.UNAUTHORIZED, "token revoked"
    )


def _env(**values: str) -> dict[str, str]:
    env = {"HEDGEBRIDGE_JWT_SECRET": SECRET}
    env.update({f"HEDGEBRIDGE_GATEWAY_{k.upper()}": v for k, v in values.items()})
    return env


def test_gateway_security_settings_are_checked() -> None:
    config = from_env(_env(allowed_origins="https://a.example, https://b.example/", message_rate="50"))
    assert config.origins == {"https://a.example", "https://b.example"}
    assert config.message_rate == 50
    assert not config.tls
    for values, message in (
        ({"jwt_algorithm": "none"}, "JWT_ALGORITHM must be one of"),
        ({"jwt_algorithm": "RS256"}, "needs one of"),
        ({"jwt_algorithm": "RS256", "jwt_public_key_file": "k.pem", "jwt_jwks_url": "https://x"}, "needs one of"),
        ({"jwt_jwks_url": "https://x/jwks"}, "need JWT_ALGORITHM RS256 or ES256"),
        ({"jwt_algorithm": "ES256", "jwt_jwks_url": "file:///etc/passwd"}, "http(s) URL"),
        ({"tls_cert": "cert.pem"}, "TLS_CERT and"),
        ({"handshake_timeout_ms": "10"}, "HANDSHAKE_TIMEOUT_MS"),
        ({"message_rate": "-1"}, "_RATE must not be negative"),
        ({"jwt_leeway_s": "3600"}, "JWT_LEEWAY_S"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            from_env(_env(**values))
    # RS256 needs no shared secret
    rs = from_env({"HEDGEBRIDGE_GATEWAY_JWT_ALGORITHM": "RS256", "HEDGEBRIDGE_GATEWAY_JWT_PUBLIC_KEY_FILE": "k.pem"})
    assert rs.jwt_algorithm == "RS256"
    with pytest.raises(ConfigError, match="HEDGEBRIDGE_STREAM_REPLICAS"):
        from_env({**_env(), "HEDGEBRIDGE_STREAM_REPLICAS": "2"})
