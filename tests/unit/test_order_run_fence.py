"""The fence of an order command (``notAfter``): its deadline rule (``fence``), the run that stamps it on every
send and sends again under its lease when a terminal link refused a command past it, and the link's check."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from hedgebridge.common.config import ConfigError
from hedgebridge.common.terminal_link import Delivery, fenced, rules
from hedgebridge.executor import fence
from hedgebridge.executor.config import from_env
from hedgebridge.executor.leases import may_be_orphaned
from hedgebridge.executor.order_run import OrderRun
from hedgebridge.executor.run_actions import Done, HoldLease, Log, Pause, Send
from hedgebridge.protocol import FENCED, DeliveryAck, OpenCommand, SyncCommand, pack, unpack_command

from .test_leases import RECORD
from .test_lifecycle import OPEN
from .test_order_run import LIMITS, T0, kinds

LEASED = dataclasses.replace(LIMITS, lease_s=5.0, fence_margin_s=1.0, queued_grace_s=2.5)
RECORDED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LATE = DeliveryAck(delivered=False, reason=FENCED)


def fenced_at(command: OpenCommand | object) -> datetime | None:
    assert isinstance(command, OpenCommand)
    return command.not_after


# --- the deadline rule ------------------------------------------------------------------------------------------


def test_a_send_under_a_held_lease_is_fenced_a_margin_before_the_lease_ends() -> None:
    until = RECORDED.timestamp() + 30.0
    assert fence.under_lease(LEASED, until) == RECORDED + timedelta(seconds=29.0)


def test_a_send_with_no_lease_is_fenced_a_margin_before_the_order_may_be_found_orphaned() -> None:
    # lease_after_s 0.5 + lease_s 5.0 - margin 1.0
    assert fence.unleased(LEASED, RECORDED) == RECORDED + timedelta(seconds=4.5)


def test_the_unleased_fence_comes_no_later_than_the_search_for_orphans_may_take_the_order_over() -> None:
    limits = dataclasses.replace(LEASED, lease_after_s=0.02, fence_margin_s=0.0)  # no margin: the bound itself
    record = RECORD
    deadline = fence.unleased(limits, record.updated_at)
    assert deadline is not None
    lease_after_ms, lease_ms = round(limits.lease_after_s * 1000), round(limits.lease_s * 1000)
    assert not may_be_orphaned(record, deadline - timedelta(milliseconds=1), lease_after_ms, lease_ms)
    assert may_be_orphaned(record, deadline, lease_after_ms, lease_ms)


def test_no_fence_without_a_lease_period_or_the_time_it_is_counted_from() -> None:
    assert fence.under_lease(LIMITS, RECORDED.timestamp()) is None  # lease_s 0: the run keeps no lease
    assert fence.unleased(LIMITS, RECORDED) is None
    assert fence.under_lease(LEASED, None) is None
    assert fence.unleased(LEASED, None) is None


# --- the run ----------------------------------------------------------------------------------------------------


def run_of(ttl_s: float = 60.0) -> OrderRun:
    return OrderRun(OPEN, T0, 10.0, ttl_s, LEASED, recorded_at=RECORDED)


def test_a_young_order_s_first_send_carries_the_unleased_fence() -> None:
    run = run_of()
    [send] = run.start(T0 + 0.01)
    assert isinstance(send, Send)
    assert fenced_at(send.command) == RECORDED + timedelta(seconds=4.5)
    assert run.command.not_after is None  # the run's command stays as recorded (reports match it)


def test_a_send_under_a_held_lease_carries_that_lease_s_fence() -> None:
    run = run_of()
    assert run.start(T0 + 3.5) == [HoldLease("A1")]  # past lease_after_s + the queued grace
    until = RECORDED.timestamp() + 12.0
    [send] = run.on_lease_held(T0 + 3.51, until)
    assert isinstance(send, Send)
    assert fenced_at(send.command) == RECORDED + timedelta(seconds=11.0)


def test_a_command_refused_past_its_fence_is_sent_again_under_a_lease_held_again() -> None:
    run = run_of()
    assert run.start(T0 + 3.5) == [HoldLease("A1")]
    assert kinds(run.on_lease_held(T0 + 3.51, RECORDED.timestamp() + 8.0)) == ["Send"]
    actions = run.on_delivery(LATE, T0 + 4.0)  # the gateway got it after its notAfter: not sent
    assert kinds(actions) == ["Log", "Pause"]
    assert isinstance(actions[0], Log)
    assert actions[0].level == "warning"
    assert "notAfter" in actions[0].event
    assert run.on_wake(T0 + 4.02, RECORDED) == [HoldLease("A1")]  # its lease checked again before a resend
    [send] = run.on_lease_held(T0 + 4.03, RECORDED.timestamp() + 9.0)
    assert isinstance(send, Send)
    assert fenced_at(send.command) == RECORDED + timedelta(seconds=8.0)  # the new lease's fence
    assert not run.done


def test_a_command_refused_past_its_fence_by_a_run_that_lost_its_lease_is_never_sent_again() -> None:
    run = run_of()
    assert run.start(T0 + 3.5) == [HoldLease("A1")]
    run.on_lease_held(T0 + 3.51, RECORDED.timestamp() + 8.0)
    run.on_delivery(LATE, T0 + 20.0)  # paused past its lease: another replica took the order over
    assert run.on_wake(T0 + 20.02, RECORDED) == [HoldLease("A1")]
    actions = run.on_lease_lost(T0 + 20.03)
    assert not [a for a in actions if isinstance(a, Send)]
    assert isinstance(actions[-1], Done)
    assert run.done
    assert run.lease_lost


def test_a_command_refused_past_its_fence_until_its_time_to_live_ends_expires_unsent() -> None:
    run = run_of(ttl_s=3.0)
    run.start(T0 + 0.01)
    actions = run.on_delivery(LATE, T0 + 3.5)
    assert run.result is not None
    assert run.result.status == "EXPIRED"
    assert not [a for a in actions if isinstance(a, Send | Pause)]


def test_any_other_refusal_logs_no_fence_warning() -> None:
    run = run_of()
    run.start(T0 + 0.01)
    assert run.on_delivery(DeliveryAck(delivered=False, reason="no terminal"), T0 + 0.02) == [Pause(0.01)]


# --- the wire and the terminal link -----------------------------------------------------------------------------


def test_not_after_travels_in_camel_case_and_is_absent_when_unset() -> None:
    stamped = msgspec.structs.replace(OPEN, not_after=RECORDED)
    assert b"notAfter" in pack(stamped)
    assert b"notAfter" not in pack(OPEN)
    assert unpack_command(pack(stamped)) == stamped


def test_the_link_refuses_a_command_whose_fence_passed_and_nothing_else() -> None:
    stamped = msgspec.structs.replace(OPEN, not_after=RECORDED)
    assert not fenced(stamped, RECORDED - timedelta(microseconds=1))
    assert fenced(stamped, RECORDED)  # the moment itself is past: a taker may have its lease then
    assert not fenced(OPEN, RECORDED + timedelta(days=1))  # no notAfter: not fenced
    sync = SyncCommand(timestamp=RECORDED, account_id="A1", sync_id="s")
    assert not fenced(sync, RECORDED + timedelta(days=1))


def test_a_fenced_command_is_acked_as_not_delivered_and_not_uncertain() -> None:
    ack = rules.delivery_ack(Delivery.FENCED, "s1")
    assert (ack.delivered, ack.uncertain, ack.reason) == (False, False, FENCED)


# --- the setting ------------------------------------------------------------------------------------------------


def test_the_fence_margin_defaults_to_a_third_of_the_lease_and_stays_below_half_of_it() -> None:
    assert from_env({"HEDGEBRIDGE_EXECUTOR_LEASE_MS": "3000"}).fence_margin_s == pytest.approx(1.0)
    custom = from_env({"HEDGEBRIDGE_EXECUTOR_LEASE_MS": "3000", "HEDGEBRIDGE_EXECUTOR_FENCE_MARGIN_MS": "200"})
    assert custom.fence_margin_s == pytest.approx(0.2)
    for bad in ("1500", "-1"):
        with pytest.raises(ConfigError, match="FENCE_MARGIN_MS"):
            from_env({"HEDGEBRIDGE_EXECUTOR_LEASE_MS": "3000", "HEDGEBRIDGE_EXECUTOR_FENCE_MARGIN_MS": bad})
