"""The bench's statistics and table (pure)."""

from __future__ import annotations

import pytest

from hedgebridge.cli.bench_orders import KNEE_RATIO, Alternating, Step, rates
from hedgebridge.cli.bench_rows import Row, percentile
from hedgebridge.cli.bench_table import table
from hedgebridge.protocol import OrderResult


def test_nearest_rank_percentile() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile(samples, 0) == 1.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], 101)


def test_rows_report_ratios_to_their_baseline() -> None:
    baseline = Row("base", [1.0] * 99 + [2.0])
    row = Row("measured", [3.0] * 99 + [8.0], baseline, "p99 < 5 ms", met=False, errors=2)
    assert row.ratio(50) == 3.0
    assert row.ratio(99) == 3.0
    assert baseline.ratio(50) is None
    lines = list(table([baseline, row]))
    assert lines[3] == "| measured | 100 | 3.000 | 3.000 | 8.000 | 3.00x | 3.00x | 4.00x | p99 < 5 ms | NO |"
    assert lines[-1].endswith("orders not FILLED, action states not delivered, terminals not back after the restart: 2")


def test_json_rows_have_every_key() -> None:
    baseline = Row("base", [1.0] * 100)
    row = Row("measured", [2.0] * 100, baseline, "p99 < 5 ms", met=True, errors=1)
    skipped = Row("dll", [], skipped="the library is not built")
    assert row.as_json() == {
        "name": "measured", "samples": 100, "p50_ms": 2.0, "p99_ms": 2.0, "p999_ms": 2.0, "p50_ratio": 2.0,
        "p99_ratio": 2.0, "p999_ratio": 2.0, "target": "p99 < 5 ms", "met": True, "errors": 1, "skipped": "",
    }  # fmt: skip
    assert baseline.as_json()["p50_ratio"] is None
    assert baseline.as_json()["met"] is None
    assert skipped.as_json() == {
        "name": "dll", "samples": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None, "p50_ratio": None,
        "p99_ratio": None, "p999_ratio": None, "target": "", "met": None, "errors": 0,
        "skipped": "the library is not built",
    }  # fmt: skip


def test_the_knee_rates_are_positive_and_rising() -> None:
    assert rates("200,500,1000") == [200.0, 500.0, 1000.0]
    for bad in ("", "a,b", "0,100", "500,200"):
        with pytest.raises(ValueError, match=r"not a list of numbers|must be positive and rising"):
            rates(bad)


def test_a_step_holds_only_with_none_lost_the_rate_reached_and_a_bounded_p99() -> None:
    plain = [1.0] * 100
    assert Step(100.0, 99.0, plain, [KNEE_RATIO] * 100, 0).held()
    assert not Step(100.0, 99.0, plain, [KNEE_RATIO + 0.1] * 100, 0).held()  # p99 over the bound
    assert not Step(100.0, 99.0, plain, [1.0] * 100, 1).held()  # one lost
    assert not Step(100.0, 90.0, plain, [1.0] * 100, 0).held()  # the rate asked not reached


async def test_a_step_names_why_its_lost_orders_were_lost() -> None:
    orders = Alternating(["A1"])
    expired = OrderResult(status="EXPIRED", account_id="A1")

    async def answer(result: OrderResult) -> OrderResult:
        return result

    async def no_answer() -> OrderResult:
        raise TimeoutError

    await orders.timed(orders.next(0), answer(expired))
    await orders.timed(orders.next(1), answer(expired))
    await orders.timed(orders.next(2), no_answer())
    assert (orders.lost, dict(orders.why)) == (3, {"EXPIRED": 2, "TimeoutError": 1})
    step = Step(100.0, 99.0, [1.0] * 10, [1.0] * 10, orders.lost, dict(orders.why))
    assert step.row(10, 1).name.endswith("; lost: 2 EXPIRED, 1 TimeoutError)")
    assert "lost" not in Step(100.0, 99.0, [1.0] * 10, [1.0] * 10, 0).row(10, 1).name
