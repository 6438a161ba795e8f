"""JWT decisions: the attack matrix refused, the right tokens accepted, no token ever echoed."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from hedgebridge.common import auth
from hedgebridge.common.auth import AuthError

SECRET = auth.new_secret()


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "A1",
        "role": "ea",
        "iss": "hedgebridge",
        "aud": "hedgebridge",
        "iat": now,
        "exp": now + 60,
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(token: str) -> str:
    with pytest.raises(AuthError) as info:
        auth.authorize_terminal(f"Bearer {token}", SECRET)
    assert token not in info.value.reason
    return info.value.reason


def test_mint_and_verify() -> None:
    token = auth.mint_token(SECRET, role="ea", subject="A1", ttl_s=60)
    principal = auth.authorize_terminal(f"Bearer {token}", SECRET)
    assert (principal.subject, principal.role) == ("A1", "ea")
    assert principal.token_id
    assert principal.expires_at > time.time()
    admin = auth.verify_token(auth.mint_token(SECRET, role="admin", subject="ops"), SECRET)
    assert (admin.subject, admin.role) == ("ops", "admin")


def test_attack_matrix() -> None:
    assert _refused(auth.mint_token(SECRET, role="ea", subject="A1", ttl_s=10, now=time.time() - 3600)) == (
        "token expired"
    )
    assert _refused(auth.mint_token(auth.new_secret(), role="ea", subject="A1")) == "token signature invalid"
    unsigned = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(_claims()).encode())}."
    assert _refused(unsigned) == "token algorithm not allowed"
    assert _refused(jwt.encode(_claims(), SECRET * 2, algorithm="HS512")) == "token algorithm not allowed"
    assert _refused(jwt.encode(_claims(exp=None), SECRET, algorithm="HS256")) == "token lacks the 'exp' claim"
    assert _refused(jwt.encode(_claims(sub=None), SECRET, algorithm="HS256")) == "token lacks the 'sub' claim"
    assert _refused(jwt.encode(_claims(aud="other"), SECRET, algorithm="HS256")) == "token invalid"
    assert _refused(jwt.encode(_claims(iss="other"), SECRET, algorithm="HS256")) == "token invalid"
    assert _refused(jwt.encode(_claims(iat=int(time.time()) + 3600), SECRET, algorithm="HS256")) == (
        "token not yet valid"
    )
    assert _refused(jwt.encode(_claims(role="root"), SECRET, algorithm="HS256")) == "token has no valid role"
    assert _refused(auth.mint_token(SECRET, role="system", subject="A1", accounts=["A1"])) == "token role is not 'ea'"
    assert _refused(jwt.encode(_claims(sub="a.b"), SECRET, algorithm="HS256")) == (
        "token subject is not a valid account id"
    )
    assert _refused("garbage") == "token invalid"


def test_authorization_header_forms() -> None:
    for header, reason in (
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Basic abc", "Authorization must be 'Bearer <token>'"),
        ("Bearer ", "Authorization must be 'Bearer <token>'"),
    ):
        with pytest.raises(AuthError) as info:
            auth.authorize_terminal(header, SECRET)
        assert info.value.reason == reason
    token = auth.mint_token(SECRET, role="ea", subject="A1")
    assert auth.authorize_terminal(f"bearer  {token} ", SECRET).subject == "A1"


def test_minting_rules() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        auth.mint_token("short", role="ea", subject="A1")
    with pytest.raises(ValueError, match="role must be"):
        auth.mint_token(SECRET, role="root", subject="A1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="account id"):
        auth.mint_token(SECRET, role="ea", subject="not valid")
    assert len(auth.new_secret().encode()) >= auth.MIN_SECRET_BYTES
