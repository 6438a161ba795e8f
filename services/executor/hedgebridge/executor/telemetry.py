"""The executor's health checks, metrics and spans (``service.py`` calls these at a few points).

- Readiness: NATS connected, JetStream's events stream answers, the cache answers PING, and the order
  request subscriptions are held.
- Each order request is one span ``executor.order`` (a child of the caller's, from the NATS ``traceparent``
  header), current while the order runs, so the command sent to the gateway carries it in its headers.
- Its duration and outcome (status, retcode class) go to ``hedgebridge_order_duration_seconds`` and
  ``hedgebridge_orders_total``; running orders and cache rebuilds are read at scrape time.

The service is seen through ``Served``: the few values these checks and gauges read, nothing else.
"""

from __future__ import annotations

import time
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.cache import RealtimeCache
from hedgebridge.common.obs import HealthSettings, Observability, for_service, metrics, tracing
from hedgebridge.protocol import OrderResult

SERVICE = "executor"


class Served(Protocol):
    """What the health checks and gauges read of the executor."""

    def connection(self) -> NatsClient | None: ...

    def realtime_cache(self) -> RealtimeCache: ...

    def serving(self) -> bool: ...  # the order request subscriptions are held

    def pending_orders(self) -> int: ...

    def cache_rebuilds(self) -> int: ...


def attach(config: HealthSettings, served: Served) -> Observability:
    obs = for_service(SERVICE, config, served.connection, cache=served.realtime_cache)
    obs.health.check("subscriptions", lambda: None if served.serving() else "not serving order requests")
    metrics.CACHE_REBUILDS.add(served, lambda s: s.cache_rebuilds())
    metrics.QUEUE_DEPTH.add(served, lambda s: s.pending_orders(), "pending_orders")
    return obs


def detach(served: Served) -> None:
    metrics.CACHE_REBUILDS.remove(served)
    metrics.QUEUE_DEPTH.remove(served)


def order_started(msg: Msg) -> tracing.Handle | None:
    return tracing.begin("executor.order", SERVICE, parent=msg.headers)


def order_done(handle: tracing.Handle | None, result: OrderResult, started: float) -> None:
    metrics.observe_order(result.kind, result.status, result.retcode_class, time.perf_counter() - started)
    tracing.finish(
        handle,
        **{
            "hedgebridge.account": result.account_id,
            "hedgebridge.action_id": result.action_id,
            "hedgebridge.status": result.status,
            "hedgebridge.retcode": result.retcode,
        },
    )


def batch_done(results: list[OrderResult], started: float) -> None:
    for result in results:
        metrics.observe_order(result.kind, result.status, result.retcode_class, time.perf_counter() - started)
