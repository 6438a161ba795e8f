"""Gateway faults."""

from __future__ import annotations

from hedgebridge.common.faults import Fatal, Final, Retryable
from hedgebridge.protocol import errors as codes


class DeliveryFailed(Retryable):
    """A command could not be written to the terminal's socket (it closed or stalled)."""

    code = codes.DELIVERY_FAILED


class FrameRejected(Final):
    """A terminal's frame failed validation; answered with an ERROR frame."""

    code = codes.INVALID_FIELD


class StartupFailed(Fatal):
    """The gateway cannot listen or reach NATS at start."""

    code = codes.INTERNAL
