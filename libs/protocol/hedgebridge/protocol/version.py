"""Protocol versions spoken on the EA wire.

A terminal states the version it speaks at the WebSocket handshake by offering the subprotocol
``hedgebridge.v<N>`` (``Sec-WebSocket-Protocol``). The gateway answers with the same value or refuses
the handshake with HTTP 400 naming the versions it supports.
"""

from __future__ import annotations

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
SUBPROTOCOL_PREFIX = "hedgebridge.v"


def subprotocol(version: int = PROTOCOL_VERSION) -> str:
    return f"{SUBPROTOCOL_PREFIX}{version}"


SUPPORTED_SUBPROTOCOLS = tuple(subprotocol(v) for v in SUPPORTED_VERSIONS)


def parse_subprotocol(value: str) -> int | None:
    """Return the version named by ``hedgebridge.v<N>``, or None when ``value`` is not one."""
    if not value.startswith(SUBPROTOCOL_PREFIX):
        return None
    digits = value[len(SUBPROTOCOL_PREFIX) :]
    if not digits.isdigit() or len(digits) > 4:
        return None
    return int(digits)
