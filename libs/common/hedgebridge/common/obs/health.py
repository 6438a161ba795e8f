"""Liveness, readiness and the metrics page.

- ``GET /healthz``: liveness. Answered by the service's event loop itself, so an answer proves the loop runs.
- ``GET /readyz``: readiness. Every check runs (each bounded by a timeout); 200 when all pass, else 503. The
  JSON body names each check and the failed ones: ``{"status": "not ready", "failed": ["nats"], ...}``.
- ``GET /metrics``: the Prometheus exposition.

``Health`` holds the checks and renders the answers; ``HealthServer`` is a small asyncio HTTP/1.1 server for
the services without an HTTP port of their own (executor, coordinator, monitor). The gateway serves the same
answers on its WebSocket port (``hedgebridge.gateway.http_routes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from .. import logs
from . import metrics

log = logs.get("health")

# A check returns None when it passes, else why it fails (a short text).
Check = Callable[[], "str | Awaitable[str | None] | None"]
CHECK_TIMEOUT_S = 2.0
PATHS = ("/healthz", "/readyz", "/metrics")
_MAX_REQUEST_BYTES = 8192
_READ_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: HTTPStatus
    body: bytes
    content_type: str = "application/json"


@dataclass
class Health:
    """The named readiness checks of one service."""

    service: str
    checks: dict[str, Check] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def readiness(self) -> dict[str, str]:
        """Check name -> "ok" or why it failed; the checks run concurrently."""
        names = list(self.checks)
        outcomes = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        return {n: ("ok" if o is None else o) for n, o in zip(names, outcomes, strict=True)}

    async def _run(self, check: Check) -> str | None:
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    outcome = await outcome
            return outcome
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:200]

    def readiness_now(self) -> dict[str, str]:
        """The checks that answer synchronously (the gateway's handshake hook cannot wait)."""
        found: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                outcome = check()
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"[:200]
            if inspect.isawaitable(outcome):
                if inspect.iscoroutine(outcome):
                    outcome.close()
                raise TypeError(f"readiness check {name!r} is asynchronous")
            found[name] = "ok" if outcome is None else outcome
        return found

    def live(self) -> Answer:
        body = {"status": "ok", "service": self.service, "uptimeSeconds": round(time.time() - self.started, 3)}
        return Answer(HTTPStatus.OK, _json(body))

    def ready(self, results: dict[str, str]) -> Answer:
        failed = sorted(n for n, v in results.items() if v != "ok")
        body = {
            "status": "not ready" if failed else "ready",
            "service": self.service,
            "checks": results,
            "failed": failed,
        }
        return Answer(HTTPStatus.SERVICE_UNAVAILABLE if failed else HTTPStatus.OK, _json(body))

    async def answer(self, method: str, path: str) -> Answer:
        route = path.split("?", 1)[0]
        if route not in PATHS:
            return error(HTTPStatus.NOT_FOUND, f"no such path: {route[:100]}")
        if method not in ("GET", "HEAD"):
            return error(HTTPStatus.METHOD_NOT_ALLOWED, f"{route} answers GET only")
        if route == "/healthz":
            return self.live()
        if route == "/readyz":
            return self.ready(await self.readiness())
        return Answer(HTTPStatus.OK, metrics.exposition(), metrics.CONTENT_TYPE)


def error(status: HTTPStatus, message: str) -> Answer:
    return Answer(status, _json({"error": status.phrase, "message": message}))


def _json(body: object) -> bytes:
    return json.dumps(body, sort_keys=True).encode() + b"\n"


# --- the small HTTP server ---------------------------------------------------------------------------------


class HealthServer:
    """HTTP/1.1 for ``Health`` on ``host:port`` (port 0: any free port); one request per connection."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self.health = health
        self.host = host
        self.requested_port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "health server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port, limit=_MAX_REQUEST_BYTES)
        log.info("health endpoints listening", service=self.health.service, host=self.host, port=self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = ""
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            answer, method, path = await self._answer(head)
        except asyncio.LimitOverrunError:
            answer, path = error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"), "-"
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        metrics.HTTP_REQUESTS.labels(path if path in PATHS else "other", str(int(answer.status))).inc()
        head_only = method == "HEAD"
        status = answer.status
        lines = [
            f"HTTP/1.1 {int(status)} {status.phrase}",
            f"Content-Type: {answer.content_type}",
            f"Content-Length: {len(answer.body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        with contextlib.suppress(ConnectionError):
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else answer.body))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[Answer, str, str]:
        if len(head) > _MAX_REQUEST_BYTES:
            return error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"), "", "-"
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
            return error(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request line"), "", "-"
        method, path = parts[0], parts[1]
        answer = await self.health.answer(method, path)
        return answer, method, path.split("?", 1)[0]


async def serve(health: Health, host: str, port: int) -> HealthServer | None:
    """Start a health server on ``port``, unless it is 0 (off)."""
    if port == 0:
        return None
    server = HealthServer(health, host, port)
    await server.start()
    return server
