"""Monitor faults. The monitor only listens: an unreadable event is counted and skipped, and the one
fault that stops it is NATS being unreachable at start."""

from __future__ import annotations

from hedgebridge.common.bus import NatsUnreachable

__all__ = ["NatsUnreachable"]
