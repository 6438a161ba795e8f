"""The handshake decisions for terminal and client connections (pure code, no I/O).

A terminal connects to ``/ea`` with ``Authorization: Bearer <JWT>`` (role ``ea``, ``sub`` = account id) and
offers the subprotocol ``hedgebridge.v<N>`` for the protocol version it speaks.

A system or admin client connects to ``/client`` with the same subprotocol and either the header
``Authorization: Bearer <JWT>`` (role ``system`` or ``admin``) or no header at all, in which case its first
frame must be ``AUTH`` (browsers cannot set headers). A bad token is refused with 401, a valid token of
another role with 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from hedgebridge.common.auth import AuthError, Principal, authorize_terminal, bearer_token, check_client, verify_token
from hedgebridge.protocol import SUPPORTED_SUBPROTOCOLS, SUPPORTED_VERSIONS, parse_subprotocol

EA_PATH = "/ea"
CLIENT_PATH = "/client"


@dataclass(frozen=True, slots=True)
class Accept:
    principal: Principal
    version: int


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


def authenticate_client(token: str, secret: str) -> Principal | Refuse:
    """Check a client's token (from the header or an AUTH frame): 401 when it is not valid, 403 when it is
    valid but its role may not use the client API."""
    try:
        principal = verify_token(token, secret)
    except AuthError as exc:
        return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
    try:
        return check_client(principal)
    except AuthError as exc:
        return Refuse(HTTPStatus.FORBIDDEN, exc.reason)


def decide_client(authorization: str | None, subprotocols: list[str], secret: str) -> ClientAccept | Refuse:
    principal: Principal | None = None
    if authorization is not None:
        try:
            token = bearer_token(authorization)
        except AuthError as exc:
            return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
        checked = authenticate_client(token, secret)
        if isinstance(checked, Refuse):
            return checked
        principal = checked
    version = _version(subprotocols)
    if isinstance(version, Refuse):
        return version
    return ClientAccept(principal, version)


def decide(
    path: str, authorization: str | None, subprotocols: list[str], secret: str
) -> Accept | ClientAccept | Refuse:
    route = path.split("?", 1)[0]
    if route == CLIENT_PATH:
        return decide_client(authorization, subprotocols, secret)
    if route != EA_PATH:
        return Refuse(HTTPStatus.NOT_FOUND, f"no such endpoint; terminals connect to {EA_PATH}")
    try:
        principal = authorize_terminal(authorization, secret)
    except AuthError as exc:
        return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
    version = _version(subprotocols)
    if isinstance(version, Refuse):
        return version
    return Accept(principal, version)
