"""The monitor's alert rules (pure code): every rule fires once, stays open without firing again, resolves;
a book restored from stored alerts does not fire them again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import msgspec

from hedgebridge.monitor import rules
from hedgebridge.monitor.latency import LatencyWindow, percentile
from hedgebridge.monitor.rules import AlertBook, Thresholds
from hedgebridge.protocol import AccountUpdate, ActionState, Alert, OrderResult, errors, subjects

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LIMITS = Thresholds(
    execution_latency_ms=500,
    websocket_latency_ms=20,
    sync_latency_ms=200,
    consecutive_failures=3,
    failure_window_s=60,
    downtime_s=300,
    margin_level_pct=100,
    silent_s=60,
    recovery_samples=2,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def result(status: str = "FILLED", elapsed_ms: float = 10.0, account: str = "A1", **kw: object) -> OrderResult:
    return OrderResult(status=status, account_id=account, elapsed_ms=elapsed_ms, kind="OPEN", **kw)  # type: ignore[arg-type]


def update(level: float | None, account: str = "A1") -> AccountUpdate:
    return AccountUpdate(
        timestamp=T0, account_id=account, balance=1000, equity=1000, margin=10, free_margin=990, margin_level=level
    )


def only(alerts: list[Alert], state: str, rule: str, account: str = "A1") -> Alert:
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert (alert.state, alert.rule, alert.account_id) == (state, rule, account)
    assert alert.key == rules.alert_key(rule, account)
    assert alert.code == rules.CODES[rule]
    assert alert.severity == errors.lookup(alert.code).severity.value
    return alert


def test_every_rule_has_a_registered_code_and_a_subject() -> None:
    for rule in rules.RULES:
        errors.lookup(rules.CODES[rule])
        assert subjects.alert(rule, "A1") == f"hb.alert.{rule}.A1"
    assert subjects.alert(rules.SYNC_LATENCY) == "hb.alert.sync_latency._system"


def test_execution_latency_fires_once_and_resolves_after_recovery_samples() -> None:
    book = AlertBook(LIMITS)
    opened = only(book.order_result(result(elapsed_ms=800), at(0)), "OPEN", rules.EXECUTION_LATENCY)
    assert (opened.value, opened.threshold, opened.seq) == (800, 500, 1)
    assert book.order_result(result(elapsed_ms=900), at(1)) == []  # still open: not fired again
    assert book.order_result(result(elapsed_ms=100), at(2)) == []  # one good sample is not enough
    assert book.order_result(result(elapsed_ms=700), at(3)) == []  # a slow one restarts the count
    assert book.order_result(result(elapsed_ms=100), at(4)) == []
    resolved = only(book.order_result(result(elapsed_ms=100), at(5)), "RESOLVED", rules.EXECUTION_LATENCY)
    assert resolved.seq == 2
    assert resolved.resolved_at == at(5)
    assert resolved.opened_at == at(0)
    assert book.open == {}
    again = only(book.order_result(result(elapsed_ms=600), at(6)), "OPEN", rules.EXECUTION_LATENCY)
    assert again.seq == 3


def test_execution_latency_ignores_answers_that_are_not_executions() -> None:
    book = AlertBook(LIMITS)
    assert book.order_result(result(elapsed_ms=5000, duplicate=True), at(0)) == []
    assert book.order_result(result(elapsed_ms=5000, reconciled=True), at(0)) == []
    assert book.order_result(result("EXPIRED", elapsed_ms=5000), at(0)) == []
    assert book.order_result(result("INVALID", elapsed_ms=5000), at(0)) == []


def test_consecutive_failures_fire_at_the_threshold_and_resolve_on_a_fill() -> None:
    book = AlertBook(LIMITS)
    assert book.order_result(result("REJECTED", code="ORDER_REJECTED"), at(0)) == []
    assert book.order_result(result("EXPIRED"), at(1)) == []
    opened = only(book.order_result(result("REJECTED"), at(2)), "OPEN", rules.CONSECUTIVE_FAILURES)
    assert opened.value == 3
    assert book.order_result(result("OUTCOME_UNKNOWN"), at(3)) == []
    assert book.order_result(result("REJECTED", account="B2"), at(3)) == []  # another account counts apart
    only(book.order_result(result("FILLED"), at(4)), "RESOLVED", rules.CONSECUTIVE_FAILURES)
    assert book.order_result(result("REJECTED"), at(5)) == []  # the streak started again


def test_consecutive_failures_need_to_be_in_a_row_and_within_the_window() -> None:
    book = AlertBook(LIMITS)
    book.order_result(result("REJECTED"), at(0))
    book.order_result(result("REJECTED"), at(1))
    book.order_result(result("FILLED"), at(2))
    assert book.order_result(result("REJECTED"), at(3)) == []
    book.order_result(result("REJECTED"), at(4))
    assert book.order_result(result("REJECTED"), at(100)) == []  # the first two aged out of the 60 s window
    assert book.order_result(result("REJECTED"), at(101)) == []
    only(book.order_result(result("REJECTED"), at(102)), "OPEN", rules.CONSECUTIVE_FAILURES)
    assert book.tick(at(150)) == []
    only(book.tick(at(163)), "RESOLVED", rules.CONSECUTIVE_FAILURES)  # no failure for the window


def test_terminal_down_fires_after_the_downtime_and_resolves_on_connect() -> None:
    book = AlertBook(LIMITS)
    book.connected("A1", at(0))
    assert book.disconnected("A1", at(10)) == []
    assert book.tick(at(309)) == []
    opened = only(book.tick(at(310)), "OPEN", rules.TERMINAL_DOWN)
    assert opened.value == 300
    assert book.tick(at(400)) == []
    only(book.connected("A1", at(401)), "RESOLVED", rules.TERMINAL_DOWN)
    assert book.tick(at(450)) == []


def test_terminal_silent_fires_without_events_and_resolves_on_an_event() -> None:
    book = AlertBook(LIMITS)
    book.connected("A1", at(0))
    assert book.tick(at(59)) == []
    only(book.tick(at(60)), "OPEN", rules.TERMINAL_SILENT)
    assert book.tick(at(61)) == []
    assert book.seen_alive("A1", at(62)) == []  # heartbeats alone do not end the silence
    assert book.tick(at(63)) == []
    only(book.terminal_event("A1", at(64)), "RESOLVED", rules.TERMINAL_SILENT)
    assert book.tick(at(100)) == []


def test_terminal_silent_resolves_when_the_terminal_disconnects() -> None:
    book = AlertBook(LIMITS)
    book.connected("A1", at(0))
    only(book.tick(at(61)), "OPEN", rules.TERMINAL_SILENT)
    only(book.disconnected("A1", at(62)), "RESOLVED", rules.TERMINAL_SILENT)
    assert book.tick(at(200)) == []  # a disconnected terminal is not silent (terminal_down takes over)


def test_margin_level_fires_under_the_threshold_and_resolves_at_or_over_it() -> None:
    book = AlertBook(LIMITS)
    assert book.account_update(update(150.0), at(0)) == []
    opened = only(book.account_update(update(80.0), at(1)), "OPEN", rules.MARGIN_LEVEL)
    assert (opened.value, opened.threshold) == (80.0, 100)
    assert book.account_update(update(70.0), at(2)) == []
    only(book.account_update(update(100.0), at(3)), "RESOLVED", rules.MARGIN_LEVEL)
    only(book.account_update(update(50.0), at(4)), "OPEN", rules.MARGIN_LEVEL)
    only(book.account_update(update(None), at(5)), "RESOLVED", rules.MARGIN_LEVEL)  # no margin in use


def test_websocket_latency_per_terminal() -> None:
    book = AlertBook(LIMITS)
    assert book.websocket_rtt("A1", 5.0, at(0)) == []
    only(book.websocket_rtt("A1", 25.0, at(1)), "OPEN", rules.WEBSOCKET_LATENCY)
    assert book.websocket_rtt("A1", 30.0, at(2)) == []
    assert book.websocket_rtt("B2", 1.0, at(2)) == []
    assert book.websocket_rtt("A1", 3.0, at(3)) == []
    only(book.websocket_rtt("A1", 3.0, at(4)), "RESOLVED", rules.WEBSOCKET_LATENCY)


def action(action_id: str, state: str, seq: int, ms: float) -> ActionState:
    return ActionState(
        action_id=action_id,
        kind="HEDGE_ENTRY",
        state=state,  # type: ignore[arg-type]
        seq=seq,
        timestamp=T0 + timedelta(milliseconds=ms),
        account_ids=["A1", "B2"],
    )


def test_sync_latency_from_the_first_to_the_final_state_of_an_action() -> None:
    book = AlertBook(LIMITS)
    assert book.action_state(action("x1", "ACCEPTED", 1, 0), at(0)) == []
    assert book.action_state(action("x1", "RUNNING", 2, 5), at(0)) == []
    opened = only(book.action_state(action("x1", "COMPLETED", 3, 350), at(1)), "OPEN", rules.SYNC_LATENCY, "")
    assert opened.value == 350
    assert book.last_sync_ms == 350
    assert opened.key == "sync_latency._system"
    assert book.action_state(action("x2", "FAILED", 3, 900), at(2)) == []  # its start was not seen: no sample
    assert book.last_sync_ms is None
    for i in range(2):
        book.action_state(action(f"y{i}", "RUNNING", 2, 0), at(3))
        alerts = book.action_state(action(f"y{i}", "COMPLETED", 3, 50), at(3))
    only(alerts, "RESOLVED", rules.SYNC_LATENCY, "")


def test_a_restored_book_neither_forgets_nor_fires_again() -> None:
    limits = dataclasses.replace(LIMITS, silent_s=10_000)
    book = AlertBook(limits)
    opened = only(book.account_update(update(10.0), at(0)), "OPEN", rules.MARGIN_LEVEL)
    book.connected("B2", at(0))
    book.disconnected("B2", at(0))
    down = only(book.tick(at(300)), "OPEN", rules.TERMINAL_DOWN, "B2")
    older = msgspec.structs.replace(opened, seq=0)  # an older transition of the same key is ignored
    restored = AlertBook.restore(limits, [older, opened, down])
    assert set(restored.open) == {opened.key, down.key}
    assert restored.account_update(update(5.0), at(400)) == []  # still open: not fired again
    assert restored.tick(at(1000)) == []  # the restarted monitor does not know B2 is down: nothing new
    resolved = only(restored.account_update(update(500.0), at(401)), "RESOLVED", rules.MARGIN_LEVEL)
    assert resolved.seq == opened.seq + 1
    only(restored.connected("B2", at(402)), "RESOLVED", rules.TERMINAL_DOWN, "B2")


def test_a_restored_resolved_alert_continues_its_sequence() -> None:
    book = AlertBook(LIMITS)
    opened = only(book.account_update(update(10.0), at(0)), "OPEN", rules.MARGIN_LEVEL)
    resolved = only(book.account_update(update(None), at(1)), "RESOLVED", rules.MARGIN_LEVEL)
    restored = AlertBook.restore(LIMITS, [opened, resolved])
    assert restored.open == {}
    assert only(restored.account_update(update(10.0), at(2)), "OPEN", rules.MARGIN_LEVEL).seq == 3


def test_latency_window_figures() -> None:
    window = LatencyWindow(size=100)
    for v in range(1, 101):
        window.add("execution", float(v))
    window.add("execution", float("nan"))
    window.add("nats_rtt", 0.5)
    hops = {h.hop: h for h in window.hops()}
    assert [h.hop for h in window.hops()] == ["execution", "nats_rtt"]
    assert (hops["execution"].count, hops["execution"].p50_ms, hops["execution"].p99_ms) == (100, 50.0, 99.0)
    assert hops["execution"].max_ms == 100.0
    assert hops["execution"].last_ms == 100.0
    assert percentile([1.0], 99) == 1.0


def test_status_lists_the_open_alerts() -> None:
    from hedgebridge.cli.status import format_status
    from hedgebridge.protocol import MonitorSnapshot

    book = AlertBook(LIMITS)
    assert len(book.account_update(update(10.0), at(0))) == 1
    text = format_status(MonitorSnapshot(started_at=T0, terminals=[], alerts=book.open_alerts()))
    assert "ALERT CRITICAL margin_level.A1  margin level 10% < 100%" in text.splitlines()
    assert "ALERT" not in format_status(MonitorSnapshot(started_at=T0, terminals=[]))


def test_client_api_shows_alerts_within_scope_and_the_report_to_admins() -> None:
    from hedgebridge.common import auth
    from hedgebridge.gateway.client_rules import decode_feed, feed_keys, feed_subjects, visible
    from hedgebridge.gateway.stream_rules import STREAM_SOURCES
    from hedgebridge.protocol import HealthReport, MonitorReport, pack

    secret = auth.new_secret()
    admin = auth.verify_token(auth.mint_token(secret, role="admin", subject="root"), secret)
    system = auth.verify_token(auth.mint_token(secret, role="system", subject="s", accounts=["A1"]), secret)
    book = AlertBook(LIMITS)
    [mine] = book.account_update(update(10.0, "A1"), at(0))
    [other] = book.account_update(update(10.0, "B2"), at(0))
    book.action_state(action("x", "RUNNING", 2, 0), at(0))
    [system_wide] = book.action_state(action("x", "COMPLETED", 3, 900), at(1))
    assert feed_keys(system, "alerts", None) == {("alerts", "*")}
    assert feed_subjects(("alerts", "*")) == ()  # read from HB_ALERTS, numbered
    assert STREAM_SOURCES["alerts"].subjects == (subjects.ALL_ALERTS,)
    assert STREAM_SOURCES["alerts"].stream == subjects.ALERTS_STREAM
    assert decode_feed("alerts", subjects.alert(mine.rule, "A1"), pack(mine)) == mine
    assert visible(system, None, "alerts", mine)
    assert not visible(system, None, "alerts", other)
    assert not visible(system, None, "alerts", system_wide)
    assert visible(admin, None, "alerts", system_wide)
    assert visible(admin, None, "alerts", other)
    assert not visible(admin, frozenset({"A1"}), "alerts", other)
    health = HealthReport(timestamp=T0, service="monitor", instance="m", ready=True)
    report = MonitorReport(timestamp=T0, health=health, alerts=[mine, other])
    assert decode_feed("monitor", subjects.MONITOR_REPORT, pack(report)) == report
    assert visible(admin, None, "monitor", report)
    assert not visible(system, None, "monitor", report)


def test_the_picture_counts_outcomes_and_conflicts() -> None:
    from hedgebridge.monitor.picture import Picture
    from hedgebridge.protocol import Conflict, ConsistencyStatus

    picture = Picture(started_at=T0)
    picture.on_result(result("FILLED"))
    picture.on_result(result("FILLED", duplicate=True))  # the same order answered again
    picture.on_result(result("REJECTED"))
    picture.on_action(action("x", "RUNNING", 2, 0))
    picture.on_action(action("x", "COMPENSATED", 4, 10))
    conflict = Conflict(kind="ORPHAN_POSITION", account_id="A1", mt_ticket="7", detected_at=T0)
    picture.on_conflict(conflict)
    picture.on_consistency(
        ConsistencyStatus(timestamp=T0, consistent=False, accounts_checked=2, open_conflicts=1, conflicts=[conflict])
    )
    snapshot = picture.snapshot()
    assert snapshot.order_results == {"FILLED": 1, "REJECTED": 1}
    assert snapshot.action_outcomes == {"COMPENSATED": 1}
    assert (snapshot.conflicts, snapshot.open_conflicts) == (1, 1)
