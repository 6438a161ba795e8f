"""The monitor's pure parts beside the rules: the watch (decoded inputs in, alert transitions and latency
samples out) and the health checks' decisions (a probe's outcome made a check, the report, readiness, and
the checks judged from what the monitor saw)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hedgebridge.monitor import health, rules
from hedgebridge.monitor.health import HealthBook
from hedgebridge.monitor.picture import Picture
from hedgebridge.monitor.rules import AlertBook, Thresholds
from hedgebridge.monitor.watch import Watch
from hedgebridge.protocol import (
    AccountUpdate,
    ActionState,
    ConsistencyStatus,
    GatewayLiveness,
    OrderResult,
    TerminalLiveness,
    TerminalStatus,
    errors,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LIMITS = Thresholds(websocket_latency_ms=20, sync_latency_ms=200, margin_level_pct=100, recovery_samples=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def watch() -> Watch:
    return Watch(picture=Picture(started_at=T0), alerts=AlertBook(LIMITS))


def status(state: str, session: str = "s1") -> TerminalStatus:
    return TerminalStatus(timestamp=T0, account_id="A1", status=state, session_id=session, gateway_id="g1")  # type: ignore[arg-type]


def liveness(rtt_ms: float | None, session: str = "s1") -> GatewayLiveness:
    terminal = TerminalLiveness(account_id="A1", session_id=session, connected_at=T0, idle_ms=500, rtt_ms=rtt_ms)
    return GatewayLiveness(timestamp=at(10), gateway_id="g1", interval_ms=1000, terminals=[terminal])


# --- the watch -----------------------------------------------------------------------------------------------


def test_a_disconnect_and_a_reconnect_move_the_downtime_rule() -> None:
    w = watch()
    assert w.on_status(status("CONNECTED"), at(0)) == []
    assert w.on_status(status("DISCONNECTED"), at(1)) == []
    assert not w.picture.terminals["A1"].connected
    assert [a.rule for a in w.alerts.tick(at(400))] == [rules.TERMINAL_DOWN]
    (resolved,) = w.on_status(status("CONNECTED"), at(401))
    assert (resolved.rule, resolved.state) == (rules.TERMINAL_DOWN, "RESOLVED")


def test_events_are_counted_and_a_low_margin_opens_its_alert() -> None:
    w = watch()
    w.on_status(status("CONNECTED"), at(0))
    update = AccountUpdate(
        timestamp=T0, account_id="A1", balance=1000, equity=1000, margin=10, free_margin=990, margin_level=50
    )
    (opened,) = w.on_event(update, at(1))
    assert (opened.rule, opened.state, w.events) == (rules.MARGIN_LEVEL, "OPEN", 1)
    assert w.picture.terminals["A1"].margin_level == 50


def test_executed_orders_are_latency_samples_and_duplicates_are_not() -> None:
    w = watch()
    w.on_result(OrderResult(status="FILLED", account_id="A1", elapsed_ms=12.0, kind="OPEN"), at(0))
    w.on_result(OrderResult(status="FILLED", account_id="A1", elapsed_ms=99.0, kind="OPEN", duplicate=True), at(0))
    w.on_result(OrderResult(status="EXPIRED", account_id="A1", elapsed_ms=50.0, kind="OPEN"), at(0))
    assert list(w.latency.samples["execution"]) == [12.0]
    assert w.picture.order_results == {"FILLED": 1, "EXPIRED": 1}


def test_an_action_from_its_first_to_its_final_state_is_a_sync_sample() -> None:
    w = watch()
    first = ActionState(action_id="h1", kind="HEDGE_ENTRY", state="RUNNING", seq=2, timestamp=at(0))
    final = ActionState(action_id="h1", kind="HEDGE_ENTRY", state="COMPLETED", seq=3, timestamp=at(0.3))
    assert w.on_action(first, at(0)) == []
    (slow,) = w.on_action(final, at(0.3))
    assert (slow.rule, slow.state) == (rules.SYNC_LATENCY, "OPEN")
    assert list(w.latency.samples["action"]) == [300.0]
    assert w.picture.action_outcomes == {"COMPLETED": 1}


def test_a_liveness_report_keeps_the_gateway_and_the_round_trip() -> None:
    w = watch()
    (slow,) = w.on_liveness(liveness(rtt_ms=45.0), at(10), received=100.0)
    assert (slow.rule, slow.account_id) == (rules.WEBSOCKET_LATENCY, "A1")
    assert w.gateways["g1"][1] == 100.0
    assert list(w.latency.samples["terminal_rtt"]) == [45.0]
    assert w.picture.terminals["A1"].last_heartbeat == at(9.5)
    (back,) = w.on_liveness(liveness(rtt_ms=5.0), at(11), received=101.0)
    assert (back.rule, back.state) == (rules.WEBSOCKET_LATENCY, "RESOLVED")


def test_unreadable_inputs_are_counted_per_integrity_window() -> None:
    w = watch()
    w.on_unreadable()
    w.on_unreadable()
    assert w.unreadable_since_last() == 2
    assert w.unreadable_since_last() == 0
    assert w.unreadable == 2


def test_the_consistency_status_and_conflicts_reach_the_snapshot() -> None:
    w = watch()
    w.on_consistency(ConsistencyStatus(timestamp=T0, consistent=False, accounts_checked=1, open_conflicts=2))
    snapshot = w.snapshot()
    assert (snapshot.open_conflicts, snapshot.alerts, snapshot.health) == (2, [], None)
    assert w.consistency is not None


# --- health --------------------------------------------------------------------------------------------------


def test_the_checks_run_are_the_groups_less_the_cache_without_one() -> None:
    assert "cache" in HealthBook("monitor", "m1", with_cache=True).names
    book = HealthBook("monitor", "m1", with_cache=False)
    assert book.names == ("nats", "integrity", "websocket", "terminals", "coordinator", "position_sync")
    assert book.group("infra") == ["nats", "integrity"]


def test_a_check_is_reported_when_it_first_runs_and_when_it_flips() -> None:
    book = HealthBook("monitor", "m1", with_cache=False)
    first = book.record("nats", (True, "", None, 1.5), at(0))
    assert first is not None
    assert (first.ok, first.latency_ms, first.code) == (True, 1.5, None)
    assert book.record("nats", (True, "", None, 2.0), at(1)) is None
    failed = book.record("nats", (False, "down", errors.NATS_UNREACHABLE, None), at(2))
    assert failed is not None
    assert (failed.ok, failed.code, failed.detail) == (False, errors.NATS_UNREACHABLE, "down")
    crashed = book.record("integrity", RuntimeError("boom"), at(3))
    assert crashed is not None
    assert (crashed.ok, crashed.code, crashed.detail) == (False, errors.INTERNAL, "check failed: RuntimeError('boom')")


def test_the_report_is_ready_only_when_every_check_ran_and_passed() -> None:
    book = HealthBook("monitor", "m1", with_cache=False)
    readiness = book.readiness()
    assert readiness["nats"]() == "not checked yet"
    for name in book.names:
        book.record(name, health.PASSED, at(0))
    report = book.report(at(1))
    assert (report.ready, report.service, report.instance, len(report.checks)) == (True, "monitor", "m1", 6)
    book.record("terminals", (False, "", errors.TERMINAL_SILENT, None), at(2))
    assert not book.report(at(3)).ready
    assert readiness["terminals"]() == "failed"
    assert readiness["nats"]() is None


def test_a_gateway_is_silent_past_its_own_intervals_and_the_stale_limit() -> None:
    report = GatewayLiveness(timestamp=T0, gateway_id="g1", interval_ms=20_000, terminals=[])
    gateways = {"g1": (report, 100.0)}
    assert health.silent_gateways(gateways, 130.0, stale_s=10) == []  # 3 intervals: 60 s
    assert health.silent_gateways(gateways, 161.0, stale_s=10) == ["gateway g1 silent for 61 s"]
    assert health.websocket(["x", "y"], 3.0) == (False, "x; y", errors.GATEWAY_UNREACHABLE, 3.0)
    assert health.websocket([], 3.0) == (True, "", None, 3.0)


def test_integrity_terminals_and_position_sync_verdicts() -> None:
    assert health.integrity(0, []) == health.PASSED
    assert health.integrity(2, ["A.1"]) == (
        False,
        "2 unreadable events since the last check; book entry A.1 does not decode",
        errors.UNREADABLE_EVENT,
        None,
    )
    assert health.terminals([]) == health.PASSED
    assert health.terminals(["A1: no heartbeat for 40 s"])[2] == errors.TERMINAL_SILENT
    assert health.position_sync(None) == (True, "no reconciliation pass seen yet", None, None)
    bad = ConsistencyStatus(timestamp=T0, consistent=False, accounts_checked=2, open_conflicts=3)
    assert health.position_sync(bad) == (
        False,
        "3 open conflicts (pass of 2026-11-24T10:00:00+00:00)",
        errors.POSITION_CONFLICT,
        None,
    )
    good = ConsistencyStatus(timestamp=T0, consistent=True, accounts_checked=2, open_conflicts=0)
    assert health.position_sync(good) == (True, "2 accounts consistent", None, None)
