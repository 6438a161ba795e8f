"""The handshake decision for a terminal connection (pure code, no I/O).

A terminal connects to ``/ea`` with ``Authorization: Bearer <JWT>`` (role ``ea``, ``sub`` = account id) and
offers the subprotocol ``hedgebridge.v<N>`` for the protocol version it speaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from hedgebridge.common.auth import AuthError, Principal, authorize_terminal
from hedgebridge.protocol import SUPPORTED_SUBPROTOCOLS, SUPPORTED_VERSIONS, parse_subprotocol

EA_PATH = "/ea"


@dataclass(frozen=True, slots=True)
class Accept:
    principal: Principal
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


def decide(path: str, authorization: str | None, subprotocols: list[str], secret: str) -> Accept | Refuse:
    if path.split("?", 1)[0] != EA_PATH:
        return Refuse(HTTPStatus.NOT_FOUND, f"no such endpoint; terminals connect to {EA_PATH}")
    try:
        principal = authorize_terminal(authorization, secret)
    except AuthError as exc:
        return Refuse(HTTPStatus.UNAUTHORIZED, exc.reason)
    supported = [v for v in offered_versions(subprotocols) if v in SUPPORTED_VERSIONS]
    if not supported:
        return Refuse(
            HTTPStatus.BAD_REQUEST,
            "state the protocol version with the header Sec-WebSocket-Protocol: " + " or ".join(SUPPORTED_SUBPROTOCOLS),
        )
    return Accept(principal, max(supported))
