"""The executor's health checks, metrics and spans (``service.py`` calls these at a few points).

- Readiness: NATS connected, JetStream's events stream answers, the cache answers PING, and the order
  request subscriptions are held.
- Each order request is one span ``executor.order`` (a child of the caller's, from the NATS ``traceparent``
  header), current while the order runs, so the command sent to the gateway carries it in its headers.
- Its duration and outcome (status, retcode class) go to ``hedgebridge_order_duration_seconds`` and
  ``hedgebridge_orders_total``; running orders and cache rebuilds are read at scrape time.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from hedgebridge.common.obs import Observability, for_service, metrics, tracing
from hedgebridge.protocol import OrderResult

if TYPE_CHECKING:
    from .service import Executor

SERVICE = "executor"


def attach(executor: Executor) -> Observability:
    obs = for_service(SERVICE, executor.config, lambda: executor._nats, cache=lambda: executor.cache)
    obs.health.check("subscriptions", lambda: None if executor._requests else "not serving order requests")
    metrics.CACHE_REBUILDS.add(executor, lambda ex: ex.rebuilds)
    metrics.QUEUE_DEPTH.add(executor, lambda ex: len(ex._running), "pending_orders")
    return obs


def detach(executor: Executor) -> None:
    metrics.CACHE_REBUILDS.remove(executor)
    metrics.QUEUE_DEPTH.remove(executor)


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
