"""The stretches of the records' stream the search for orders nobody owns reads (``executor/orphans.py``)."""

from __future__ import annotations

import msgspec

from hedgebridge.executor.orphans import Window, unfinished
from hedgebridge.protocol import OrderResult

from .test_leases import RECORD


def test_the_first_stretch_looks_back_and_each_next_one_starts_where_the_last_ended() -> None:
    window = Window(age_s=1.5, lookback_s=60.0)
    assert window.next(1000.0) == (938.5, 998.5)
    window.read(998.5)
    assert window.next(1001.0) == (998.5, 999.5)
    window.read(999.5)
    assert window.next(1001.0) == (999.5, 999.5)  # nothing new became old enough: an empty stretch


def test_a_clock_that_steps_back_never_reads_a_stretch_backwards_or_moves_the_end_back() -> None:
    window = Window(age_s=1.5, lookback_s=0.0)
    assert window.next(1000.0) == (998.5, 998.5)
    window.read(998.5)
    since, until = window.next(990.0)
    assert since <= until
    window.read(until)
    assert window.read_up_to == 998.5


def test_a_record_without_a_final_result_is_unfinished() -> None:
    assert unfinished(RECORD)
    done = OrderResult(action_id="c-1", account_id="A1", status="FILLED")
    assert not unfinished(msgspec.structs.replace(RECORD, result=done))
    pending = OrderResult(action_id="c-1", account_id="A1", status="OUTCOME_UNKNOWN")
    assert unfinished(msgspec.structs.replace(RECORD, result=pending))
