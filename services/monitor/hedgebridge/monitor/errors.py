"""Monitor faults."""

from __future__ import annotations

from hedgebridge.common.faults import Retryable
from hedgebridge.protocol import errors as codes


class EventUnreadable(Retryable):
    """An event on NATS could not be decoded; it is skipped and counted."""

    code = codes.MALFORMED_FRAME
