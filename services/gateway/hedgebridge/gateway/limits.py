"""Rate limits of the gateway (pure code: the caller passes the clock).

- ``TokenBucket``: ``rate`` tokens per second, at most ``burst`` saved up. One per connection for the frames
  it sends (over the limit: closed with 1008 "rate limit").
- ``KeyedLimiter`` keeps one bucket per key (an address, an account) and forgets idle ones, so that its table
  stays bounded.
- ``HandshakeLimits``: what a new connection's handshake may cost, by who it is (see below).

What the handshake limits protect is the gateway's work for connections that bring no valid credentials: a
flood of them is the attack, while a desk's terminals reconnecting after a restart (often a thousand from one
VPS, NAT or balancer address) is normal. So:

- refused handshakes (a bad or missing token, an unknown path, a wrong version) and credential-less ones (a
  ``/client`` that will send AUTH, the ``/admin`` page) spend the client address's budget
  (``IP_CONNECT_RATE``/``_BURST``, default 10/s, burst 100); once it is spent, a request from that address
  with no ``Authorization`` header is refused with 429 before any other work, and one whose token turns out
  not to be valid gets 429 instead of its refusal;
- handshakes with a valid token never touch the address's budget. They share the gateway's budget
  (``GATEWAY_CONNECT_RATE``/``_BURST``, default 500/s, burst 2000; over it: 503 with ``Retry-After``, the
  gateway is busy and the terminal should come back), and a terminal's (``/ea``) also its account's
  (``ACCOUNT_CONNECT_RATE``/``_BURST``, default 5/s, burst 30; over it: 429), which stops one leaked token
  from looping through connections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from http import HTTPStatus

from .handshake import Accept, ClientAccept, Refuse

RATE_LIMIT = "rate limit"
ADDRESS_LIMITED = "too many refused or unauthenticated connections from this address"
ACCOUNT_LIMITED = "too many connections for this account"
GATEWAY_BUSY = "gateway busy: too many connections at once, retry later"


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
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def has(self, now: float, cost: float = 1.0) -> bool:
        """Whether ``cost`` tokens could be spent at ``now`` (nothing is spent)."""
        return self.rate <= 0 or self.available(now) >= cost

    def available(self, now: float) -> float:
        if self.tokens < 0:
            return self.burst
        return min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)

    def wait_s(self, now: float, cost: float = 1.0) -> float:
        """How long until ``cost`` tokens are there (0: now)."""
        if self.rate <= 0:
            return 0.0
        return max(0.0, cost - self.available(now)) / self.rate

    def full_at(self, now: float) -> bool:
        """Whether the bucket would be full at ``now`` (nothing to remember about it)."""
        return self.available(now) >= self.burst

    def _refill(self, now: float) -> None:
        self.tokens = self.available(now)
        self.updated = now


@dataclass
class KeyedLimiter:
    """One bucket per key (a client address, an account). ``max_keys`` bounds the table: beyond it, full
    buckets are dropped first, and if none is full the oldest entry goes."""

    rate: float
    burst: float
    max_keys: int = 100_000
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._trim(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take(now)

    def has(self, key: str, now: float) -> bool:
        """Whether ``key`` could spend one now (nothing is spent; an unknown key has a full bucket)."""
        bucket = self.buckets.get(key)
        return self.rate <= 0 or bucket is None or bucket.has(now)

    def _trim(self, now: float) -> None:
        for key in [key for key, b in self.buckets.items() if b.full_at(now)]:
            del self.buckets[key]
        while len(self.buckets) >= self.max_keys:
            del self.buckets[next(iter(self.buckets))]


@dataclass
class HandshakeLimits:
    """The handshake budgets: per address (refused and credential-less), per gateway and per account (valid
    tokens). ``before`` runs before the handshake decision, ``after`` with it; each returns the refusal that
    replaces the decision, or None."""

    address: KeyedLimiter
    gateway: TokenBucket
    account: KeyedLimiter

    @classmethod
    def of(
        cls,
        *,
        address_rate: float,
        address_burst: int,
        gateway_rate: float,
        gateway_burst: int,
        account_rate: float,
        account_burst: int,
    ) -> HandshakeLimits:
        return cls(
            KeyedLimiter(address_rate, address_burst),
            TokenBucket(gateway_rate, gateway_burst),
            KeyedLimiter(account_rate, account_burst),
        )

    def before(self, address: str, has_credentials: bool, now: float) -> Refuse | None:
        """A request without credentials from an address whose budget is spent: 429 before any work."""
        if has_credentials or self.address.has(address, now):
            return None
        return Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)

    def after(self, verdict: Accept | ClientAccept | Refuse, address: str, now: float) -> Refuse | None:
        """Spend the budget the decision calls for."""
        principal = None if isinstance(verdict, Refuse) else verdict.principal
        if principal is None:  # refused, or a /client that will authenticate with AUTH
            return self.unauthenticated(address, now)
        if isinstance(verdict, Accept) and not self.account.has(principal.subject, now):
            return Refuse(HTTPStatus.TOO_MANY_REQUESTS, ACCOUNT_LIMITED)
        if not self.gateway.take(now):
            return Refuse(
                HTTPStatus.SERVICE_UNAVAILABLE, GATEWAY_BUSY, retry_after_s=max(1, math.ceil(self.gateway.wait_s(now)))
            )
        if isinstance(verdict, Accept):
            self.account.allow(principal.subject, now)
        return None

    def unauthenticated(self, address: str, now: float) -> Refuse | None:
        """Spend one of the address's budget for a request without valid credentials (a refused handshake,
        a page of /admin): 429 when there is none left."""
        if self.address.allow(address, now):
            return None
        return Refuse(HTTPStatus.TOO_MANY_REQUESTS, ADDRESS_LIMITED)
