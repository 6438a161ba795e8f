"""JWT authentication decisions (pure code, no I/O).

Tokens are HS256 JWTs with the claims ``sub`` (for the ``ea`` role: the MT5 account id), ``role``
(``ea``, ``system`` or ``admin``), ``iss`` and ``aud`` (both ``hedgebridge``), ``iat``, ``exp`` and ``jti``.
A ``system`` token also names its scope: ``accounts`` (the MT5 accounts it may trade and watch) and
optionally ``users`` (whose actions it may watch). An ``admin`` token may do everything.
The accepted algorithm is pinned, so ``alg: none`` and algorithm confusion are refused.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

ALGORITHM = "HS256"
ISSUER = "hedgebridge"
AUDIENCE = "hedgebridge"
ROLES = ("ea", "system", "admin")
Role = Literal["ea", "system", "admin"]
MIN_SECRET_BYTES = 32
DEFAULT_LEEWAY_S = 5.0
_ACCOUNT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AuthError(Exception):
    """The credentials are refused. ``reason`` is safe to show to the client (never echoes the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: str
    token_id: str
    expires_at: float
    accounts: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_use(self, account_id: str) -> bool:
        """Whether this principal may trade on and watch ``account_id``."""
        return self.is_admin or account_id in self.accounts or (self.role == "ea" and account_id == self.subject)

    def may_watch_user(self, user_id: str) -> bool:
        return self.is_admin or (bool(user_id) and user_id in self.users)


def new_secret() -> str:
    return secrets.token_urlsafe(MIN_SECRET_BYTES)


def check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes long")


def mint_token(
    secret: str,
    *,
    role: Role,
    subject: str,
    ttl_s: float = 86_400.0,
    now: float | None = None,
    accounts: list[str] | tuple[str, ...] = (),
    users: list[str] | tuple[str, ...] = (),
) -> str:
    check_secret(secret)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "ea" and not _ACCOUNT.match(subject):
        raise ValueError("an ea token's subject is an account id: 1-64 of A-Z a-z 0-9 _ -")
    bad = [a for a in accounts if not _ACCOUNT.match(a)]
    if bad:
        raise ValueError(f"not valid account ids: {', '.join(bad)}")
    if role == "system" and not accounts and not users:
        raise ValueError("a system token names the accounts (or users) it may act for")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(issued),
        "exp": int(issued + ttl_s),
        "jti": uuid.uuid4().hex,
    }
    if accounts:
        claims["accounts"] = list(accounts)
    if users:
        claims["users"] = list(users)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str, *, leeway_s: float = DEFAULT_LEEWAY_S) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=leeway_s,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError("token algorithm not allowed") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token lacks the {exc.claim!r} claim") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token not yet valid") from None
    except jwt.InvalidTokenError:
        raise AuthError("token invalid") from None
    role = claims.get("role")
    if role not in ROLES:
        raise AuthError("token has no valid role")
    return Principal(
        subject=str(claims["sub"]),
        role=str(role),
        token_id=str(claims.get("jti", "")),
        expires_at=float(claims["exp"]),
        accounts=_names(claims.get("accounts"), "accounts"),
        users=_names(claims.get("users"), "users"),
    )


def _names(value: object, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 128 for v in value):
        raise AuthError(f"token claim {claim!r} must be a list of names")
    return frozenset(value)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def authorize_terminal(authorization: str | None, secret: str) -> Principal:
    """Decide whether a terminal's handshake may proceed. Returns the principal; ``subject`` is the account."""
    principal = verify_token(bearer_token(authorization), secret)
    if principal.role != "ea":
        raise AuthError("token role is not 'ea'")
    if not _ACCOUNT.match(principal.subject):
        raise AuthError("token subject is not a valid account id")
    return principal


def authorize_client(authorization: str | None, secret: str) -> Principal:
    """Decide whether a system or admin client may connect (the ``/client`` endpoint)."""
    return check_client(verify_token(bearer_token(authorization), secret))


def check_client(principal: Principal) -> Principal:
    if principal.role not in ("system", "admin"):
        raise AuthError("token role is not 'system' or 'admin'")
    if principal.role == "system" and not principal.accounts and not principal.users:
        raise AuthError("a system token must name the accounts or users it may act for")
    return principal
