"""Gateway faults."""

from __future__ import annotations

from hedgebridge.common.bus import NatsUnreachable
from hedgebridge.common.faults import Fatal

__all__ = ["CannotListen", "NatsUnreachable"]


class CannotListen(Fatal):
    """The gateway cannot listen on its address (port taken, address not available)."""

    code = "CANNOT_LISTEN"
