"""Coordinator faults."""

from __future__ import annotations

from hedgebridge.common.bus import NatsUnreachable
from hedgebridge.common.faults import Fatal, Final, Retryable
from hedgebridge.protocol import errors as codes

__all__ = ["ActionInvalid", "ExecutorUnavailable", "LeaseLost", "NatsUnreachable", "StateUnavailable"]


class ActionInvalid(Final):
    """The action cannot run as asked (validation, an unknown or unfinished target, an incomplete cache);
    nothing was sent. ``code`` is ACTION_INVALID, ACTION_NOT_FOUND or CACHE_INCOMPLETE; ``field`` names the
    offending part of the request when there is one."""

    code = codes.ACTION_INVALID

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class ExecutorUnavailable(Retryable):
    """No executor answered a leg's order request."""

    code = codes.EXECUTOR_UNAVAILABLE


class LeaseLost(Retryable):
    """Another replica took the action over (this one stalled past its lease): stop driving it."""

    code = codes.INTERNAL


class StateUnavailable(Fatal):
    """The JetStream state (HB_EVENTS, hb_actions, hb_book) could not be set up."""

    code = codes.INTERNAL
