"""The handshake decisions for terminal and client connections (pure code, no I/O).

A terminal connects to ``/ea`` with ``Authorization: Bearer <JWT>`` (role ``ea``, ``sub`` = account id) and
offers the subprotocol ``hedgebridge.v<N>`` for the protocol version it speaks.

A system or admin client connects to ``/client`` with the same subprotocol and either the header
``Authorization: Bearer <JWT>`` (role ``system`` or ``admin``) or no header at all, in which case its first
frame must be ``AUTH`` (browsers cannot set headers). A bad token is refused with 401, a valid token of
another role with 403.

Tokens are checked against the configured key set (``auth.KeySet``), their claims against the rules every
name follows (``hedgebridge.protocol.names``: a scope naming ``*`` or ``>`` is 401, never a wildcard), and the
revocation list (a revoked ``jti`` is 401 "token revoked"). A browser on ``/client`` sends ``Origin``: it must
be on the allow-list when one is configured (else 403); requests without ``Origin`` (terminals, SDKs,
servers) are not browsers and are not checked. What a handshake may cost (per client address, per gateway,
per account) is decided around this decision, in ``limits.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Container
from dataclasses import dataclass
from http import HTTPStatus

from hedgebridge.common.auth import (
    AuthError,
    Keys,
    Principal,
    authorize_terminal,
    bearer_token,
    check_client,
    check_revoked,
    verify_token,
)
from hedgebridge.protocol import SUPPORTED_SUBPROTOCOLS, SUPPORTED_VERSIONS, parse_subprotocol

EA_PATH = "/ea"
CLIENT_PATH = "/client"


@dataclass(frozen=True, slots=True)
class Accept:
    principal: Principal
    version: int
    client: str = ""  # the client's address when trusted proxies named it (set by the server), else empty


@dataclass(frozen=True, slots=True)
class ClientAccept:
    """A ``/client`` handshake that may proceed. ``principal`` is None when the client will authenticate
    with an AUTH frame (no Authorization header)."""

    principal: Principal | None
    version: int


@dataclass(frozen=True, slots=True)
class Refuse:
    status: HTTPStatus
    reason: str
    retry_after_s: int | None = None  # sent as Retry-After (503: the gateway is busy)


def offered_versions(header_values: list[str]) -> list[int]:
    versions: list[int] = []
    for value in header_values:
        for item in value.split(","):
            version = parse_subprotocol(item.strip())
            if version is not None:
                versions.append(version)
    return versions


def _version(subprotocols: list[str]) -> int | Refuse:
    supported = [v for v in offered_versions(subprotocols) if v in SUPPORTED_VERSIONS]
    if not supported:
        return Refuse(
            HTTPStatus.BAD_REQUEST,
            "state the protocol version with the header Sec-WebSocket-Protocol: " + " or ".join(SUPPORTED_SUBPROTOCOLS),
        )
    return max(supported)


NO_REVOCATIONS: frozenset[str] = frozenset()


def check_origin(origin: str | None, allowed: Collection[str]) -> Refuse | None:
    """A browser's ``Origin`` must be on the allow-list (when there is one); no ``Origin``: not a browser."""
    if origin is None or not allowed or "*" in allowed:
        return None
    if origin.rstrip("/") in allowed:
        return None
    return Refuse(HTTPStatus.FORBIDDEN, "origin not allowed")


def authenticate_client(token: str, keys: Keys, revoked: Container[str] = NO_REVOCATIONS) -> Principal | Refuse:
    """Check a client's token (from the header or an AUTH frame): 401 when it is not valid or revoked, 403
    when it is valid but its role may not use the client API."""
    try:
        principal = check_revoked(verify_token(token, keys), revoked)
    except AuthError as exc:
        return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
    try:
        return check_client(principal)
    except AuthError as exc:
        return Refuse(HTTPStatus.FORBIDDEN, exc.reason)


def decide_client(
    authorization: str | None,
    subprotocols: list[str],
    keys: Keys,
    *,
    revoked: Container[str] = NO_REVOCATIONS,
    origin: str | None = None,
    allowed_origins: Collection[str] = (),
) -> ClientAccept | Refuse:
    refused = check_origin(origin, allowed_origins)
    if refused is not None:
        return refused
    principal: Principal | None = None
    if authorization is not None:
        try:
            token = bearer_token(authorization)
        except AuthError as exc:
            return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
        checked = authenticate_client(token, keys, revoked)
        if isinstance(checked, Refuse):
            return checked
        principal = checked
    version = _version(subprotocols)
    if isinstance(version, Refuse):
        return version
    return ClientAccept(principal, version)


def decide(
    path: str,
    authorization: str | None,
    subprotocols: list[str],
    keys: Keys,
    *,
    revoked: Container[str] = NO_REVOCATIONS,
    origin: str | None = None,
    allowed_origins: Collection[str] = (),
) -> Accept | ClientAccept | Refuse:
    route = path.split("?", 1)[0]
    if route == CLIENT_PATH:
        return decide_client(
            authorization, subprotocols, keys, revoked=revoked, origin=origin, allowed_origins=allowed_origins
        )
    if route != EA_PATH:
        return Refuse(HTTPStatus.NOT_FOUND, f"no such endpoint; terminals connect to {EA_PATH}")
    try:
        principal = check_revoked(authorize_terminal(authorization, keys), revoked)
    except AuthError as exc:
        return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
    version = _version(subprotocols)
    if isinstance(version, Refuse):
        return version
    return Accept(principal, version)
