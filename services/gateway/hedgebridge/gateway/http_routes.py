"""Plain HTTP on the gateway's WebSocket port: ``/healthz``, ``/readyz`` and ``/metrics``.

The websockets server hands every request to ``Gateway._process_request`` before the handshake; ``route``
answers these paths there (an HTTP response instead of a WebSocket upgrade) and returns None for the others
(``/ea``, ``/client``), which go on to the handshake decision.

Readiness of the gateway: connected to NATS, subscribed to terminal statuses and sync requests, listening.
The gateway keeps no JetStream state and uses no cache, so neither is checked here.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Protocol

from nats.aio.client import Client as NatsClient
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from hedgebridge.common.obs import Health, metrics, nats_connected
from hedgebridge.common.obs.health import PATHS, Answer, error


class Served(Protocol):
    """What readiness reads of the gateway."""

    @property
    def nats_client(self) -> NatsClient | None: ...

    @property
    def subscribed(self) -> bool: ...

    @property
    def listening(self) -> bool: ...


class Routed(Protocol):
    """What the routes read of the gateway: its health checks."""

    @property
    def health(self) -> Health: ...


def readiness(gateway: Served) -> Health:
    """The gateway's checks; all synchronous (answered inside the handshake hook)."""

    health = Health("gateway")
    health.check("nats", nats_connected(lambda: gateway.nats_client))
    health.check("subscriptions", lambda: None if gateway.subscribed else "not subscribed to terminal statuses")
    health.check("listening", lambda: None if gateway.listening else "not listening")
    return health


def route(gateway: Routed, connection: ServerConnection, request: Request) -> Response | None:
    """The answer to a health or metrics request, or None for any other path."""
    path = request.path.split("?", 1)[0]
    if path not in PATHS:
        return None
    if request.headers.get("Upgrade", "").lower() == "websocket":
        answer = error(HTTPStatus.BAD_REQUEST, f"{path} is plain HTTP, not a WebSocket endpoint")
    else:
        answer = _answer(gateway, path)
    metrics.HTTP_REQUESTS.labels(path, str(int(answer.status))).inc()
    response = connection.respond(answer.status, answer.body.decode())
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = answer.content_type
    response.headers["Cache-Control"] = "no-store"
    return response


def _answer(gateway: Routed, path: str) -> Answer:
    health = gateway.health
    if path == "/healthz":
        # answered by the event loop that runs every connection: an answer proves it is not stuck
        asyncio.get_running_loop()
        return health.live()
    if path == "/readyz":
        return health.ready(health.readiness_now())
    return Answer(HTTPStatus.OK, metrics.exposition(), metrics.CONTENT_TYPE)
