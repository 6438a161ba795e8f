"""The coordinator's health checks, metrics and spans (the service and its store call these at a few points;
they see the service only through the values ``attach`` is given).

- Readiness: NATS connected, JetStream's events stream answers, the cache answers PING, and the action
  request subscription is held.
- Each action request is one span ``coordinator.action`` (a child of the caller's, from the NATS
  ``traceparent`` header), current while the action runs: its legs' order requests carry it to the executor.
- Each action state's publish on the sync channel is timed until JetStream acknowledges it
  (``hedgebridge_sync_duration_seconds{kind="action_state"}``).
"""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.cache import RealtimeCache
from hedgebridge.common.obs import HealthSettings, Observability, for_service, metrics, tracing
from hedgebridge.protocol import ActionState

SERVICE = "coordinator"


def attach(
    config: HealthSettings,
    *,
    nats: Callable[[], NatsClient | None],
    cache: Callable[[], RealtimeCache],
    serving: Callable[[], bool],
) -> Observability:
    """/healthz, /readyz, /metrics and tracing: ``nats`` gives the connection (None before it is made),
    ``serving`` whether the action request subscription is held."""
    obs = for_service(SERVICE, config, nats, cache=cache)
    obs.health.check("subscriptions", lambda: None if serving() else "not serving action requests")
    return obs


def action_started(msg: Msg) -> tracing.Handle | None:
    return tracing.begin("coordinator.action", SERVICE, parent=msg.headers)


def action_done(handle: tracing.Handle | None, state: ActionState) -> None:
    tracing.finish(
        handle,
        **{"hedgebridge.action_id": state.action_id, "hedgebridge.state": state.state, "hedgebridge.kind": state.kind},
    )


def state_published(seconds: float) -> None:
    metrics.SYNC_DURATION.labels("action_state").observe(seconds)


def state_not_published() -> None:
    metrics.JETSTREAM_PUBLISH_FAILURES.labels("action_state").inc()
