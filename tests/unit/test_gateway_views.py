"""What the gateway's readiness, routes and scrape-time metrics read through their narrow protocols, driven
with plain stand-ins for the gateway (no server, no NATS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from websockets.datastructures import Headers
from websockets.http11 import Request

from hedgebridge.common.obs import Health, metrics
from hedgebridge.gateway import http_routes, telemetry


@dataclass
class Served:
    """A gateway's readiness inputs: its NATS connection, its subscriptions, its listening socket."""

    nats_client: NatsClient | None = None
    subscribed: bool = False
    listening: bool = False


def test_a_gateway_not_started_is_not_ready_and_says_why() -> None:
    assert http_routes.readiness(Served()).readiness_now() == {
        "nats": "not started",
        "subscriptions": "not subscribed to terminal statuses",
        "listening": "not listening",
    }


def test_each_check_reads_its_own_input() -> None:
    found = http_routes.readiness(Served(subscribed=True)).readiness_now()
    assert (found["subscriptions"], found["listening"]) == ("ok", "not listening")
    found = http_routes.readiness(Served(listening=True)).readiness_now()
    assert (found["subscriptions"], found["listening"]) == ("not subscribed to terminal statuses", "ok")
    assert found["nats"] == "not started"  # the connection is read, not assumed


@dataclass(eq=False)
class Routed:
    health: Health = field(default_factory=lambda: Health("gateway"))


def test_routes_leave_the_websocket_paths_to_the_handshake() -> None:
    for path in ("/ea", "/client", "/admin/", "/healthzz"):
        assert http_routes.route(Routed(), None, Request(path, Headers())) is None  # type: ignore[arg-type]


@dataclass
class Queue:
    depth: int

    def qsize(self) -> int:
        return self.depth


@dataclass(eq=False)
class Client:
    queue: Queue


@dataclass(eq=False)
class Clients:
    sessions: set[Client]
    slow_consumers: int = 0
    slow_warnings: int = 0


@dataclass(eq=False)
class Observed:
    clients: Clients
    sessions: dict[str, telemetry.Terminal] = field(default_factory=dict)


def test_scrape_time_readers_see_sessions_queues_and_slow_consumers() -> None:
    gateway = Observed(Clients({Client(Queue(2)), Client(Queue(5))}, slow_consumers=3, slow_warnings=4))
    telemetry.register(gateway)
    try:
        connections = metrics.CONNECTIONS.values()
        assert (connections["terminal"], connections["client"]) == (0, 2)
        assert metrics.QUEUE_DEPTH.values()["client_outgoing"] == 7
        assert metrics.SLOW_CONSUMERS.values()[""] == 3
        assert metrics.SLOW_WARNINGS.values()[""] == 4
        assert "" not in metrics.TERMINAL_SILENCE.values()  # no terminal: no silence to report
    finally:
        telemetry.unregister(gateway)
    assert "client" not in metrics.CONNECTIONS.values()
