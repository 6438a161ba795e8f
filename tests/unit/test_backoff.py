"""Reconnect delays with full jitter (the shared helper of the simulator, the MT5 bridge and the SDK)."""

from __future__ import annotations

import random

import pytest

from hedgebridge.common.backoff import Backoff, after_retry_after, ceiling_s, full_jitter, retry_after_of


def test_the_ceiling_doubles_up_to_the_longest() -> None:
    assert [ceiling_s(n, 0.1, 5.0) for n in range(1, 9)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert ceiling_s(10_000, 0.1, 5.0) == 5.0  # a long outage does not overflow
    with pytest.raises(ValueError, match="attempts count from 1"):
        ceiling_s(0, 0.1, 5.0)
    with pytest.raises(ValueError, match="must not be negative"):
        ceiling_s(1, -1, 5.0)


def test_full_jitter_spreads_over_the_whole_range_below_the_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        waits = [full_jitter(attempt, 0.1, 5.0, rng) for _ in range(2000)]
        ceiling = ceiling_s(attempt, 0.1, 5.0)
        assert all(0.0 <= w <= ceiling for w in waits)
        # spread evenly: each quarter of the range holds some of them (a lockstep would fill one)
        quarters = {min(3, int(4 * w / ceiling)) for w in waits}
        assert quarters == {0, 1, 2, 3}


def test_a_fleet_reconnecting_together_is_spread_out() -> None:
    fleet = [Backoff(0.5, 30.0, random.Random(seed)) for seed in range(1000)]
    first = [b.next() for b in fleet]
    assert len({round(w, 6) for w in first}) > 990  # not in lockstep
    assert max(first) <= 0.5
    second = [b.next() for b in fleet]
    assert max(second) <= 1.0
    assert sum(1 for w in second if w > 0.5) > 300  # the ceiling doubled
    fleet[0].reset()
    assert fleet[0].attempt == 0
    assert fleet[0].next() <= 0.5


def test_retry_after_is_honoured_with_a_jittered_share() -> None:
    rng = random.Random(3)
    waits = [after_retry_after(2.0, rng) for _ in range(1000)]
    assert all(2.0 <= w <= 4.0 for w in waits)
    assert len({round(w, 3) for w in waits}) > 500
    assert after_retry_after(-5, rng) == 0.0
    assert retry_after_of("3") == 3.0
    assert retry_after_of(" 1 ") == 1.0
    assert retry_after_of(None) is None
    assert retry_after_of("Wed, 21 Oct 2026 07:28:00 GMT") is None  # the date form is not used by the gateway
    assert retry_after_of("-1") is None
