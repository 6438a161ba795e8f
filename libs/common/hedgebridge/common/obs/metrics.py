"""Prometheus metrics of every service (``prometheus-client``, the process's default registry).

Names follow the Prometheus conventions: ``hedgebridge_`` prefix, base units (``_seconds``), ``_total`` for
counters. Labels take values from small fixed sets (order status, retcode class, frame type, hop name), never
account ids, so the number of series stays bounded whatever the number of accounts.

Values that live in the services' own state (connection counts, queue depths, cache rebuilds) are read at
scrape time from the objects that registered them (``Live``): nothing is counted twice on the order path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# latencies from 1 ms to 10 s: the seed's limits (20 ms, 200 ms, 500 ms) fall on bucket bounds
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

ORDER_DURATION = Histogram(
    "hedgebridge_order_duration_seconds",
    "Executor: order round trip, from the request's arrival to its definite result",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
ORDERS = Counter(
    "hedgebridge_orders",
    "Executor: order results by status and MT5 retcode class (none: the terminal gave no retcode)",
    ["status", "retcode_class"],
)
COMMAND_ROUND_TRIP = Histogram(
    "hedgebridge_ws_command_round_trip_seconds",
    "Gateway: a command written to a terminal's WebSocket until its report arrives on it",
    ["type"],
    buckets=_LATENCY_BUCKETS,
)
WS_ROUND_TRIP = Histogram(
    "hedgebridge_ws_round_trip_seconds",
    "Gateway: WebSocket Ping to Pong of each terminal (the gateway's liveness pings), the WebSocket round trip",
    buckets=_LATENCY_BUCKETS,
)
SYNC_DURATION = Histogram(
    "hedgebridge_sync_duration_seconds",
    "Synchronisation: action_state = coordinator state change until JetStream acknowledged it; "
    "snapshot = executor SYNC sent until the terminal's POSITION_UPDATE arrived",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
CLIENT_RESYNCS = Counter(
    "hedgebridge_client_resyncs",
    "Gateway: RESYNC sent to a resuming client, by reason (EPOCH_CHANGED, HISTORY_EXPIRED, UNKNOWN_SEQUENCE, "
    "TOO_FAR_BEHIND)",
    ["reason"],
)
COMMANDS_FENCED = Counter(
    "hedgebridge_commands_fenced",
    "Gateway, MT5 bridge: order commands refused unsent because their notAfter had passed (the sender's lease "
    "on the order may have lapsed), by command type",
    ["type"],
)
CLIENT_REPLAYED = Counter(
    "hedgebridge_client_replayed_events", "Gateway: events sent to clients from a stream's history (resume, recent)"
)
NATS_DROPPED = Counter(
    "hedgebridge_nats_slow_consumer",
    "Messages the service's NATS client dropped because a subscription did not keep up (nats-py slow consumer)",
)
CACHE_COALESCED = Counter(
    "hedgebridge_cache_coalesced",
    "Executor: terminal events replaced by a later one for the same cache key before they were written "
    "(latest wins: the throughput profile, or a backlog past the limit)",
)
HOP_LATENCY = Histogram(
    "hedgebridge_hop_latency_seconds",
    "Time spent in one hop of an order, measured on one clock (see deploy/README.md for the hops)",
    ["hop"],
    buckets=_LATENCY_BUCKETS,
)
FRAMES = Counter(
    "hedgebridge_ws_frames",
    "Gateway: WebSocket frames by direction (in, out), endpoint (ea, client) and message type",
    ["direction", "endpoint", "type"],
)
UNSOLICITED_REPORTS = Counter(
    "hedgebridge_unsolicited_reports",
    "Gateway: trade reports (OPENED, CLOSED) that answer no command sent to the account, refused and not published",
    ["type"],
)
RECONNECTS = Counter(
    "hedgebridge_reconnects",
    "Reconnections: terminal = an account connected again to this gateway; nats = the NATS client reconnected",
    ["peer"],
)
HANDSHAKES_REFUSED = Counter(
    "hedgebridge_handshakes_refused",
    "Gateway: handshakes refused, by HTTP status (429: a per-address or per-account limit, 503: the gateway busy)",
    ["status"],
)
JETSTREAM_PUBLISH_FAILURES = Counter(
    "hedgebridge_jetstream_publish_failures",
    "JetStream publishes that failed (results, action states, conflicts)",
    ["subject"],
)
HTTP_REQUESTS = Counter(
    "hedgebridge_health_requests",
    "Requests to the health and metrics endpoints by path and status code",
    ["path", "code"],
)

# hop names (bounded)
HOP_GATEWAY_COMMAND = "gateway_command_write"  # gateway: command from NATS until written to the WebSocket
HOP_GATEWAY_REPORT = "gateway_report_publish"  # gateway: report read from the WebSocket until published
HOP_EXECUTOR_DELIVERY = "executor_delivery"  # executor: command sent until the gateway's delivery ack
HOP_EXECUTOR_REPORT = "executor_report_wait"  # executor: delivery ack until the terminal's report


def retcode_class(value: str | None) -> str:
    return (value or "none").lower()


def observe_order(kind: str, status: str, retcode_cls: str | None, seconds: float) -> None:
    ORDERS.labels(status, retcode_class(retcode_cls)).inc()
    if kind:
        ORDER_DURATION.labels(kind).observe(seconds)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


# --- values read at scrape time ----------------------------------------------------------------------------

Kind = Literal["gauge", "counter", "min", "max"]
Reader = Callable[[Any], float | None]


class Live(Collector):
    """One metric whose value is read, at scrape time, from every live object that registered a reader.

    ``gauge`` and ``counter`` sum over the objects, ``min`` and ``max`` take the extreme (objects that read
    None are left out; no value at all exports no sample). Objects are held weakly (a reader is called with
    its object, so it must not hold it) and dropped by ``remove``.
    """

    def __init__(self, name: str, documentation: str, kind: Kind, label: str | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.kind = kind
        self.label = label
        self._readers: weakref.WeakKeyDictionary[Any, dict[str, Reader]] = weakref.WeakKeyDictionary()
        REGISTRY.register(self)

    def add(self, owner: Any, reader: Reader, label_value: str = "") -> None:
        self._readers.setdefault(owner, {})[label_value] = reader

    def remove(self, owner: Any) -> None:
        self._readers.pop(owner, None)

    def values(self) -> dict[str, float]:
        found: dict[str, list[float]] = {}
        for owner, readers in list(self._readers.items()):
            for label_value, reader in readers.items():
                value = reader(owner)
                if value is not None:
                    found.setdefault(label_value, []).append(float(value))
        combine: Callable[[Iterable[float]], float] = min if self.kind == "min" else max if self.kind == "max" else sum
        return {k: combine(v) for k, v in found.items()}

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for label_value, value in sorted(self.values().items()):
            family.add_metric([label_value] if self.label else [], value)
        yield family

    def _family(self) -> GaugeMetricFamily | CounterMetricFamily:
        labels = [self.label] if self.label else []
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.documentation, labels=labels)
        return GaugeMetricFamily(self.name, self.documentation, labels=labels)


CONNECTIONS = Live(
    "hedgebridge_connections", "Gateway: open WebSocket connections by kind (terminal, client)", "gauge", "kind"
)
QUEUE_DEPTH = Live(
    "hedgebridge_queue_depth",
    "Messages waiting: client_outgoing = frames queued for client connections; pending_orders = orders the "
    "executor runs now",
    "gauge",
    "queue",
)
CACHE_REBUILDS = Live(
    "hedgebridge_cache_rebuilds", "Executor: times the cache was found empty and rebuilt from snapshots", "counter"
)
SLOW_CONSUMERS = Live(
    "hedgebridge_client_slow_consumers", "Gateway: client connections closed for not reading their frames", "counter"
)
SLOW_WARNINGS = Live(
    "hedgebridge_client_slow_warnings",
    "Gateway: SLOW_CONSUMER warnings sent to clients whose queue reached the high-water mark",
    "counter",
)
TERMINAL_SILENCE = Live(
    "hedgebridge_terminal_silence_max_seconds",
    "Gateway: the longest time any connected terminal has sent no event (heartbeats aside)",
    "max",
)
MARGIN_LEVEL = Live(
    "hedgebridge_margin_level_min_ratio",
    "Gateway: the lowest margin level (equity / margin, 1.0 = 100 %) among connected terminals using margin",
    "min",
)
