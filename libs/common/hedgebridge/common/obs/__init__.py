"""Observability shared by every service: health endpoints, Prometheus metrics, OpenTelemetry traces.

A service builds one ``Observability`` in its constructor (``for_service`` adds the checks every service
shares), adds its own readiness checks, and calls ``start`` and ``stop`` with its own start and stop::

    self.obs = for_service("executor", cfg, lambda: self._nats, cache=lambda: self.cache)
    self.obs.health.check("subscriptions", lambda: None if self._requests else "not serving")

``health_port`` 0 (the default) serves no HTTP; the container manifests set 8080. The gateway serves the same
paths on its WebSocket port instead (``hedgebridge.gateway.http_routes``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from nats.aio.client import Client as NatsClient

from hedgebridge.protocol import subjects

from ..cache import RealtimeCache
from ..config import ConfigError
from . import metrics, tracing
from .health import Check, Health, HealthServer, serve

__all__ = [
    "Check",
    "Health",
    "HealthServer",
    "Observability",
    "cache_reachable",
    "for_service",
    "jetstream_ready",
    "metrics",
    "nats_connected",
    "tracing",
]


class Observability:
    def __init__(
        self,
        service: str,
        *,
        health_host: str = "0.0.0.0",
        health_port: int = 0,
        tracing_on: bool = False,
        otlp_endpoint: str = "",
    ) -> None:
        if not 0 <= health_port <= 65535:
            raise ConfigError(f"HEDGEBRIDGE_{service.upper()}_HEALTH_PORT: not a port number (0: off)")
        self.service = service
        self.health = Health(service)
        self.health_host = health_host
        self.health_port = health_port
        self.tracing_on = tracing_on
        self.otlp_endpoint = otlp_endpoint
        self.server: HealthServer | None = None

    async def start(self) -> None:
        tracing.configure(self.service, enable=self.tracing_on, otlp_endpoint=self.otlp_endpoint)
        self.server = await serve(self.health, self.health_host, self.health_port)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()


class HealthSettings(Protocol):
    @property
    def health_host(self) -> str: ...
    @property
    def health_port(self) -> int: ...


def for_service(
    service: str,
    config: HealthSettings,
    nats: Callable[[], NatsClient | None],
    *,
    jetstream: bool = True,
    cache: Callable[[], RealtimeCache] | None = None,
) -> Observability:
    """The service's Observability with the checks they share: NATS connected, the events stream answers
    (``jetstream``), the cache answers PING (when it uses one). Tracing follows the config's ``tracing`` and
    ``otlp_endpoint`` when it has them."""
    obs = Observability(
        service,
        health_host=config.health_host,
        health_port=config.health_port,
        tracing_on=bool(getattr(config, "tracing", False)),
        otlp_endpoint=str(getattr(config, "otlp_endpoint", "")),
    )
    obs.health.check("nats", nats_connected(nats))
    if jetstream:
        obs.health.check("jetstream", jetstream_ready(nats))
    if cache is not None:
        obs.health.check("redis", cache_reachable(cache))
    return obs


def nats_connected(nats: Callable[[], NatsClient | None]) -> Check:
    def check() -> str | None:
        nc = nats()
        if nc is None:
            return "not started"
        if nc.is_connected:
            return None
        return "reconnecting" if nc.is_reconnecting else "not connected"

    return check


def jetstream_ready(nats: Callable[[], NatsClient | None]) -> Check:
    """The events stream answers (JetStream up, with a leader for the stream)."""

    async def check() -> str | None:
        nc = nats()
        if nc is None or not nc.is_connected:
            return "NATS not connected"
        await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        return None

    return check


def cache_reachable(cache: Callable[[], RealtimeCache]) -> Check:
    async def check() -> str | None:
        return None if await cache().ping() else "no answer to PING"

    return check
