"""Reconnect delays with full jitter (pure code: the caller passes the random source).

A fleet that lost its peer at the same moment (a gateway restart) must not come back in lockstep. "Full
jitter": attempt ``n`` (1, 2, …) waits a uniformly random time between 0 and ``min(longest_s, first_s ·
2^(n-1))``, so the ceiling doubles while the attempts of many terminals spread evenly below it. Used by the
simulated terminals, the MT5 bridge and the client SDK; the DLL and the EA (C++ and MQL5) use "decorrelated
jitter", the other common form.

A refusal that names a ``Retry-After`` (the gateway is busy: HTTP 503) is honoured: the wait is at least that
long, plus a jittered share of it, so the refused do not all come back in the same second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol


class Uniform(Protocol):
    """What a delay needs of a random source (``random.Random`` has it)."""

    def uniform(self, a: float, b: float) -> float: ...


def ceiling_s(attempt: int, first_s: float, longest_s: float) -> float:
    """The longest wait before attempt ``attempt`` (1, 2, …): doubling from ``first_s``, at most ``longest_s``."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if first_s < 0 or longest_s < 0:
        raise ValueError("delays must not be negative")
    exponent = min(attempt - 1, 62)  # 2**62 · first_s is past any cap: no overflow for long outages
    return min(longest_s, first_s * 2.0**exponent)


def full_jitter(attempt: int, first_s: float, longest_s: float, rng: Uniform | None = None) -> float:
    """A random wait in [0, ceiling_s(attempt, first_s, longest_s)]."""
    return (rng or random).uniform(0.0, ceiling_s(attempt, first_s, longest_s))


def after_retry_after(retry_after_s: float, rng: Uniform | None = None) -> float:
    """The wait after a refusal that asked for ``retry_after_s``: that long, plus up to as long again."""
    base = max(0.0, retry_after_s)
    return base + (rng or random).uniform(0.0, base)


def retry_after_of(value: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header (the delay-seconds form); None when absent or not a number."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


@dataclass
class Backoff:
    """The waits of one reconnecting peer: ``next()`` for each failed attempt, ``reset()`` once connected."""

    first_s: float
    longest_s: float
    rng: Uniform = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        self.attempt += 1
        return full_jitter(self.attempt, self.first_s, self.longest_s, self.rng)

    def reset(self) -> None:
        self.attempt = 0
