"""Coordinator faults (``ActionInvalid`` lives with the validation that raises it, which is pure code)."""

from __future__ import annotations

from hedgebridge.common.bus import NatsUnreachable
from hedgebridge.common.faults import Fatal, Retryable
from hedgebridge.protocol import errors as codes

from .validation import ActionInvalid

__all__ = ["ActionInvalid", "ExecutorUnavailable", "LeaseLost", "NatsUnreachable", "StateUnavailable"]


class ExecutorUnavailable(Retryable):
    """No executor answered a leg's order request."""

    code = codes.EXECUTOR_UNAVAILABLE


class LeaseLost(Retryable):
    """Another replica took the action over (this one stalled past its lease): stop driving it."""

    code = codes.INTERNAL


class StateUnavailable(Fatal):
    """The JetStream state (HB_EVENTS, hb_actions, hb_book) could not be set up."""

    code = codes.INTERNAL
