"""Rate limits of the gateway (pure code: the caller passes the clock).

- ``TokenBucket``: ``rate`` tokens per second, at most ``burst`` saved up. One per connection for the frames
  it sends (over the limit: closed with 1008 "rate limit"), one per client IP for new connections (over the
  limit: HTTP 429 at the handshake).
- ``IpLimiter`` keeps one bucket per IP and forgets idle ones, so that its table stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RATE_LIMIT = "rate limit"


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; a rate of 0 or less means no limit."""
        if self.rate <= 0:
            return True
        if self.tokens < 0:  # first use: a full bucket
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def full_at(self, now: float) -> bool:
        """Whether the bucket would be full at ``now`` (nothing to remember about it)."""
        if self.tokens < 0:
            return True
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.burst


@dataclass
class IpLimiter:
    """New connections per client IP. ``max_ips`` bounds the table: beyond it, full buckets are dropped
    first, and if none is full the oldest entry goes."""

    rate: float
    burst: float
    max_ips: int = 100_000
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, ip: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        bucket = self.buckets.get(ip)
        if bucket is None:
            if len(self.buckets) >= self.max_ips:
                self._trim(now)
            bucket = self.buckets[ip] = TokenBucket(self.rate, self.burst)
        return bucket.take(now)

    def _trim(self, now: float) -> None:
        for ip in [ip for ip, b in self.buckets.items() if b.full_at(now)]:
            del self.buckets[ip]
        while len(self.buckets) >= self.max_ips:
            del self.buckets[next(iter(self.buckets))]
