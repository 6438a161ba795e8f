"""The coordinator's health checks, metrics and spans (``service.py`` calls these at a few points).

- Readiness: NATS connected, JetStream's events stream answers, the cache answers PING, and the action
  request subscription is held.
- Each action request is one span ``coordinator.action`` (a child of the caller's, from the NATS
  ``traceparent`` header), current while the action runs: its legs' order requests carry it to the executor.
- Each action state's publish on the sync channel is timed until JetStream acknowledges it
  (``hedgebridge_sync_duration_seconds{kind="action_state"}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from hedgebridge.common.obs import Observability, for_service, metrics, tracing
from hedgebridge.protocol import ActionState

if TYPE_CHECKING:
    from .service import Coordinator

SERVICE = "coordinator"


def attach(coordinator: Coordinator) -> Observability:
    obs = for_service(SERVICE, coordinator.config, lambda: coordinator._nats, cache=lambda: coordinator.cache)
    obs.health.check(
        "subscriptions", lambda: None if coordinator._requests is not None else "not serving action requests"
    )
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
