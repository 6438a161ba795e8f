"""JWT authentication decisions (pure code, no I/O).

Tokens are JWTs with the claims ``sub`` (for the ``ea`` role: the MT5 account id), ``role``
(``ea``, ``system`` or ``admin``), ``iss`` and ``aud`` (both ``hedgebridge``), ``iat``, ``exp`` and ``jti``
(all required). A ``system`` token also names its scope: ``accounts`` (the MT5 accounts it may trade and
watch) and optionally ``users`` (whose actions it may watch). An ``admin`` token may do everything.

Keys (``KeySet``): HS256 with a shared secret by default (``hedgebridge token`` mints those), or RS256 /
ES256 with public keys for production — one PEM public key, or the keys of a JWKS document chosen by the
token's ``kid``. One algorithm is pinned per key set, so ``alg: none``, another algorithm and algorithm
confusion (an HS256 token "signed" with the RSA public key) are refused. A small clock skew (``leeway_s``)
is tolerated on ``exp``, ``iat`` and ``nbf``.

Fetching a JWKS document and watching the revocation list are I/O and live in the gateway; the decisions
on what they hold (``keys_from_jwks``, ``session_end_reason``) are here.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hedgebridge.protocol import names

ALGORITHM = "HS256"
ALGORITHMS = ("HS256", "RS256", "ES256")
Algorithm = Literal["HS256", "RS256", "ES256"]
ISSUER = "hedgebridge"
AUDIENCE = "hedgebridge"
ROLES = ("ea", "system", "admin")
Role = Literal["ea", "system", "admin"]
MIN_SECRET_BYTES = 32
DEFAULT_LEEWAY_S = 5.0


class AuthError(Exception):
    """The credentials are refused. ``reason`` is safe to show to the client (never echoes the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKeyId(AuthError):
    """The token names a ``kid`` the key set does not hold (a JWKS holder may fetch the document again)."""


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys tokens are verified with, and the one algorithm they must use.

    ``keys`` maps a key id to a key (an HS256 secret, or a public key object / PEM for RS256 and ES256). The
    key under ``None`` is used for tokens without ``kid`` (and for any ``kid`` when it is the only key and
    ``by_kid`` is False, as with a single configured key)."""

    algorithm: Algorithm
    keys: tuple[tuple[str | None, Any], ...]
    by_kid: bool = False

    def key_for(self, kid: object) -> Any:
        table = dict(self.keys)
        if isinstance(kid, str) and kid in table:
            return table[kid]
        if self.by_kid:
            if kid is None and len(table) == 1:
                return next(iter(table.values()))
            raise UnknownKeyId("token key id unknown")
        if None in table:
            return table[None]
        raise UnknownKeyId("token key id unknown")


def hs256(secret: str) -> KeySet:
    """The default key set: one shared HS256 secret (at least 32 bytes)."""
    check_secret(secret)
    return KeySet("HS256", ((None, secret),))


def public_key(algorithm: Algorithm, pem: bytes | str) -> KeySet:
    """One PEM public key for RS256 or ES256. Raises ValueError when the PEM is not a key of that kind."""
    if algorithm not in ("RS256", "ES256"):
        raise ValueError("a public key verifies RS256 or ES256 tokens")
    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        raise ValueError("give the public key, not the private key")
    loader = RSAAlgorithm(RSAAlgorithm.SHA256) if algorithm == "RS256" else ECAlgorithm(ECAlgorithm.SHA256)
    try:
        key = loader.prepare_key(data)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key for {algorithm}: {exc}") from None
    return KeySet(algorithm, ((None, key),))


def keys_from_jwks(algorithm: Algorithm, document: bytes | str | dict[str, Any]) -> KeySet:
    """The keys of a JWKS document usable with ``algorithm`` (RSA for RS256, EC P-256 for ES256), by ``kid``.
    Raises ValueError when the document is not a JWKS or holds no such key."""
    if algorithm not in ("RS256", "ES256"):
        raise ValueError("a JWKS verifies RS256 or ES256 tokens")
    try:
        parsed = document if isinstance(document, dict) else json.loads(document)
        if not isinstance(parsed, dict):
            raise ValueError("a JWKS is a JSON object with 'keys'")
        jwks = jwt.PyJWKSet.from_dict(parsed)
    except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError, TypeError) as exc:
        raise ValueError(f"not a usable JWKS document: {exc}") from None
    wanted = "RSA" if algorithm == "RS256" else "EC"
    keys = tuple(
        (k.key_id, k.key)
        for k in jwks.keys
        if k.key_type == wanted
        and k.public_key_use in (None, "sig")
        and k.algorithm_name in (algorithm, None, "")
        and (algorithm != "ES256" or (getattr(k.key, "curve", None) is not None and k.key.curve.name == "secp256r1"))
    )
    if not keys:
        raise ValueError(f"the JWKS holds no {wanted} signing key for {algorithm}")
    return KeySet(algorithm, keys, by_kid=True)


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
    """A random secret (URL-safe base64 of MIN_SECRET_BYTES bytes) that never begins with "-", so it can be given
    on a command line as ``--secret VALUE``."""
    while (secret := secrets.token_urlsafe(MIN_SECRET_BYTES)).startswith("-"):
        pass
    return secret


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
    if role == "ea" and not names.is_account_id(subject):
        raise ValueError("an ea token's subject is an account id: 1-64 of A-Z a-z 0-9 _ -")
    if role != "ea" and not names.is_user_name(subject):
        raise ValueError(f"a token's subject is 1-{names.USER_ID_MAX} characters")
    bad = [a for a in accounts if not names.is_account_id(a)]
    if bad:
        raise ValueError(f"not valid account ids: {', '.join(bad)}")
    bad = [u for u in users if not names.is_user_name(u)]
    if bad:
        raise ValueError(f"user names are 1-{names.USER_ID_MAX} characters")
    if max(len(accounts), len(users)) > names.SCOPE_MAX:
        raise ValueError(f"a token names at most {names.SCOPE_MAX} accounts and {names.SCOPE_MAX} users")
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


Keys = str | KeySet


def _key_set(keys: Keys) -> KeySet:
    return keys if isinstance(keys, KeySet) else KeySet("HS256", ((None, keys),))


def verify_token(token: str, keys: Keys, *, leeway_s: float = DEFAULT_LEEWAY_S) -> Principal:
    """Verify ``token`` with ``keys`` (an HS256 secret or a KeySet): signature, pinned algorithm, required
    claims, audience, issuer, and the times with ``leeway_s`` of clock skew."""
    key_set = _key_set(keys)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise AuthError("token invalid") from None
    if header.get("alg") != key_set.algorithm:
        raise AuthError("token algorithm not allowed")
    key = key_set.key_for(header.get("kid"))
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[key_set.algorithm],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=leeway_s,
            options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
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
    except jwt.InvalidAudienceError:
        raise AuthError("token audience not accepted") from None
    except jwt.InvalidIssuerError:
        raise AuthError("token issuer not accepted") from None
    except jwt.InvalidTokenError:
        raise AuthError("token invalid") from None
    return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    """The principal a verified token's claims describe. Every claim that names something is checked with the
    rules the rest of the system uses (``hedgebridge.protocol.names``), so no claim can name more than it
    says: ``accounts`` holds account ids (a ``*`` or ``>`` is not one), ``users`` and a client's ``sub``
    user names, an ``ea`` token's ``sub`` an account id, and ``jti`` a token id the revocation list can hold.
    Only a ``system`` token has a scope: ``accounts`` and ``users`` on an ``ea`` or ``admin`` token are
    checked but give it nothing."""
    role = claims.get("role")
    if role not in ROLES:
        raise AuthError("token has no valid role")
    subject = claims.get("sub")
    if role == "ea":
        if not names.is_account_id(subject):
            raise AuthError("token subject is not a valid account id")
    elif not names.is_user_name(subject):
        raise AuthError("token subject is not a valid user name")
    token_id = claims.get("jti")
    if not names.is_token_id(token_id):
        raise AuthError("token id (jti) is not valid: 1-128 of A-Z a-z 0-9 _ = - in parts joined by dots")
    accounts = _names(claims.get("accounts"), "accounts", names.is_account_id)
    users = _names(claims.get("users"), "users", names.is_user_name)
    scoped = role == "system"
    return Principal(
        subject=str(subject),
        role=str(role),
        token_id=str(token_id),
        expires_at=float(claims["exp"]),
        accounts=accounts if scoped else frozenset(),
        users=users if scoped else frozenset(),
    )


def _names(value: object, claim: str, valid: Callable[[object], bool]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or len(value) > names.SCOPE_MAX or not all(isinstance(v, str) for v in value):
        raise AuthError(f"token claim {claim!r} must be a list of names")
    bad = next((v for v in value if not valid(v)), None)
    if bad is not None:
        what = "account ids" if claim == "accounts" else "user names"
        raise AuthError(f"token claim {claim!r} holds a name that is not valid ({what} only)")
    return frozenset(value)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


def authorize_terminal(authorization: str | None, keys: Keys) -> Principal:
    """Decide whether a terminal's handshake may proceed. Returns the principal; ``subject`` is the account."""
    principal = verify_token(bearer_token(authorization), keys)
    if principal.role != "ea":
        raise AuthError("token role is not 'ea'")
    return principal


def authorize_client(authorization: str | None, keys: Keys) -> Principal:
    """Decide whether a system or admin client may connect (the ``/client`` endpoint)."""
    return check_client(verify_token(bearer_token(authorization), keys))


def check_client(principal: Principal) -> Principal:
    if principal.role not in ("system", "admin"):
        raise AuthError("token role is not 'system' or 'admin'")
    if principal.role == "system" and not principal.accounts and not principal.users:
        raise AuthError("a system token must name the accounts or users it may act for")
    return principal


def check_revoked(principal: Principal, revoked: Container[str]) -> Principal:
    """Refuse a token whose ``jti`` is on the revocation list."""
    if principal.token_id in revoked:
        raise AuthError("token revoked")
    return principal


def session_end_reason(principal: Principal, now: float, revoked: Container[str]) -> str | None:
    """Why a live session must end now (its token expired or was revoked), or None. The gateway closes such
    a session with 1008 and this reason."""
    if principal.token_id in revoked:
        return "token revoked"
    if now >= principal.expires_at:
        return "token expired"
    return None


def check_token_id(jti: str) -> str:
    """A ``jti`` usable as a key of the revocation bucket (exactly the ids a token may carry); ValueError
    otherwise."""
    if not names.is_token_id(jti):
        raise ValueError("a token id (jti) is 1-128 of A-Z a-z 0-9 _ = - in parts joined by single dots")
    return jti
