"""Latency figures per hop over a sliding window (pure code): what the monitor saw, not estimates.

Hops (milliseconds):

- ``terminal_rtt``: a gateway's WebSocket Ping to a terminal and its Pong (GATEWAY_LIVENESS ``rttMs``).
- ``execution``: an order from the executor's receipt to its result (ORDER_RESULT ``elapsedMs``).
- ``action``: an action from its first to its final state (ACTION_STATE timestamps, the coordinator's clock).
- ``nats_rtt``: the monitor's NATS round trip (a flush).
- ``cache_rtt``: the monitor's PING to the cache.
- ``gateway_handshake``: the monitor's WebSocket handshake with the gateway's ``/client`` endpoint.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from hedgebridge.protocol import LatencyHop

HOPS: tuple[str, ...] = ("terminal_rtt", "execution", "action", "nats_rtt", "cache_rtt", "gateway_handshake")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class LatencyWindow:
    size: int = 500  # samples kept per hop
    samples: dict[str, deque[float]] = field(default_factory=dict)

    def add(self, hop: str, value_ms: float) -> None:
        if not math.isfinite(value_ms) or value_ms < 0:
            return
        window = self.samples.get(hop)
        if window is None:
            window = self.samples[hop] = deque(maxlen=self.size)
        window.append(value_ms)

    def hops(self) -> list[LatencyHop]:
        out = []
        for hop in sorted(self.samples, key=lambda h: (HOPS.index(h) if h in HOPS else len(HOPS), h)):
            window = self.samples[hop]
            if not window:
                continue
            ordered = sorted(window)
            out.append(
                LatencyHop(
                    hop=hop,
                    count=len(window),
                    last_ms=round(window[-1], 3),
                    p50_ms=round(percentile(ordered, 50), 3),
                    p99_ms=round(percentile(ordered, 99), 3),
                    max_ms=round(ordered[-1], 3),
                )
            )
        return out
