"""Pure decisions: the gateway's handshake, the executor's command building and matching, the monitor's picture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from http import HTTPStatus

from hedgebridge.common import auth
from hedgebridge.executor import orders
from hedgebridge.executor.lifecycle import judge
from hedgebridge.gateway.handshake import Accept, Refuse, decide, offered_versions
from hedgebridge.monitor.picture import Picture
from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ClosedEvent,
    CloseOrder,
    ModifiedEvent,
    OpenCommand,
    OpenedEvent,
    OpenOrder,
    PositionUpdate,
    TerminalStatus,
    errors,
)

SECRET = "s" * 40
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def bearer(role: auth.Role = "ea", subject: str = "A1") -> str:
    accounts = ["A1"] if role == "system" else []
    return "Bearer " + auth.mint_token(SECRET, role=role, subject=subject, accounts=accounts)


def test_handshake_accepts_a_terminal_and_picks_the_version() -> None:
    verdict = decide("/ea", bearer(), ["hedgebridge.v1"], SECRET)
    assert isinstance(verdict, Accept)
    assert (verdict.principal.subject, verdict.version) == ("A1", 1)
    assert isinstance(decide("/ea?x=1", bearer(), ["other, hedgebridge.v1"], SECRET), Accept)


def test_handshake_refusals() -> None:
    assert decide("/admin", bearer(), ["hedgebridge.v1"], SECRET) == Refuse(
        HTTPStatus.NOT_FOUND, "no such endpoint; terminals connect to /ea"
    )
    unauthorised = decide("/ea", bearer(role="system"), ["hedgebridge.v1"], SECRET)
    assert unauthorised == Refuse(HTTPStatus.UNAUTHORIZED, "token role is not 'ea'")
    missing = decide("/ea", None, ["hedgebridge.v1"], SECRET)
    assert isinstance(missing, Refuse)
    assert missing.status == HTTPStatus.UNAUTHORIZED
    no_version = decide("/ea", bearer(), [], SECRET)
    assert isinstance(no_version, Refuse)
    assert no_version.status == HTTPStatus.BAD_REQUEST
    assert "hedgebridge.v1" in no_version.reason
    assert isinstance(decide("/ea", bearer(), ["hedgebridge.v7"], SECRET), Refuse)


def test_offered_versions_reads_every_header_value() -> None:
    assert offered_versions(["a, hedgebridge.v2", "hedgebridge.v1", "hedgebridge.vX"]) == [2, 1]


def test_open_order_becomes_an_open_command() -> None:
    request = OpenOrder(account_id="A1", symbol="EURUSD", side="SELL", volume=0.5, action_id="act-1", user_id="u")
    command = orders.build_command(request, NOW)
    assert isinstance(command, OpenCommand)
    assert (command.account_id, command.symbol, command.side, command.volume) == ("A1", "EURUSD", "SELL", 0.5)
    assert command.action_id == "act-1"
    assert command.metadata.user_id == "u"
    assert command.position_id
    other = orders.build_command(OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1), NOW)
    assert other.action_id
    assert other.action_id != command.action_id
    assert other.position_id != command.position_id


def test_close_by_ticket_alone_gets_a_position_id() -> None:
    command = orders.build_command(CloseOrder(account_id="A1", mt_ticket="123", exit_reason="tp"), NOW)
    assert isinstance(command, CloseCommand)
    assert (command.position_id, command.mt_ticket, command.metadata.exit_reason) == ("mt-123", "123", "tp")


def _opened(**changes: object) -> OpenedEvent:
    values: dict[str, object] = {
        "timestamp": NOW,
        "account_id": "A1",
        "position_id": "p1",
        "action_id": "act-1",
        "mt_ticket": "9",
        "price": 1.1,
        "status": "SUCCESS",
    }
    values.update(changes)
    return OpenedEvent(**values)  # type: ignore[arg-type]


def test_matching_by_action_id_then_position_id() -> None:
    command = orders.build_command(
        OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, action_id="act-1"), NOW
    )
    assert orders.matches(command, _opened(position_id=command.position_id))
    assert not orders.matches(command, _opened(action_id="act-2"))
    assert not orders.matches(command, _opened(account_id="B2"))
    assert orders.matches(command, _opened(action_id=None, position_id=command.position_id))
    assert not orders.matches(command, _opened(action_id=None, position_id="other"))
    closed = ClosedEvent(timestamp=NOW, account_id="A1", position_id="p1", action_id="act-1", status="FAILED")
    assert not orders.matches(command, closed)


def test_results_from_events() -> None:
    command = orders.build_command(OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1), NOW)
    assert isinstance(command, OpenCommand)
    report = _opened()
    ok = orders.result_of(command, report, judge(command, report, 0, 3), "FILLED", 1, 1.5)
    assert (ok.status, ok.code, ok.elapsed_ms, ok.kind, ok.symbol) == ("FILLED", None, 1.5, "OPEN", "EURUSD")
    no_money = _opened(status="FAILED", mt_ticket=None, price=None, error_message="no money", error_code=10019)
    failed = orders.result_of(command, no_money, judge(command, no_money, 0, 3), "REJECTED", 1, 2)
    assert (failed.status, failed.code, failed.retcode) == ("REJECTED", errors.ORDER_REJECTED, 10019)
    assert failed.message == "no money (NO_MONEY)"
    unknown = orders.failure("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN, "late", command, 3)
    assert (unknown.status, unknown.action_id, unknown.event) == ("OUTCOME_UNKNOWN", command.action_id, None)


def test_a_repeated_request_is_the_same_whatever_its_time_limits() -> None:
    first = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, action_id="a", timeout_ms=100)
    assert orders.same_request(first, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, action_id="a"))
    assert not orders.same_request(
        first, OpenOrder(account_id="A1", symbol="EURUSD", side="SELL", volume=1, action_id="a")
    )
    assert not orders.same_request(first, CloseOrder(account_id="A1", mt_ticket="1", action_id="a"))


def _status(status: str, session: str, at: datetime = NOW, reason: str = "") -> TerminalStatus:
    return TerminalStatus(
        timestamp=at,
        account_id="A1",
        status=status,  # type: ignore[arg-type]
        session_id=session,
        gateway_id="gw",
        reason=reason,
    )


def test_picture_follows_sessions_and_reports() -> None:
    picture = Picture(started_at=NOW)
    picture.on_status(_status("CONNECTED", "s1"))
    picture.on_event(
        AccountUpdate(
            timestamp=NOW, account_id="A1", balance=100, equity=90, margin=10, free_margin=80, margin_level=900
        ),
        NOW,
    )
    picture.on_event(PositionUpdate(timestamp=NOW, account_id="A1", positions=[]), NOW)
    picture.on_event(_opened(), NOW)
    picture.on_event(_opened(status="FAILED", mt_ticket=None, price=None), NOW)
    picture.on_event(
        ModifiedEvent(timestamp=NOW, account_id="A1", position_id="p1", mt_ticket="7", status="SUCCESS"), NOW
    )
    picture.on_event(
        ModifiedEvent(timestamp=NOW, account_id="A1", position_id="p1", status="FAILED", error_code=10016), NOW
    )
    # a newer session replaces the first; the first one's disconnect must not mark the account offline
    picture.on_status(_status("CONNECTED", "s2", NOW + timedelta(seconds=1)))
    picture.on_status(_status("DISCONNECTED", "s1", NOW + timedelta(seconds=2), "replaced"))
    view = picture.snapshot().terminals[0]
    assert (view.connected, view.session_id, view.balance, view.margin_level) == (True, "s2", 100, 900)
    picture.on_status(_status("DISCONNECTED", "s2", NOW + timedelta(seconds=3), "heartbeat timeout"))
    snapshot = picture.snapshot()
    assert (snapshot.terminals[0].connected, snapshot.terminals[0].reason) == (False, "heartbeat timeout")
    assert snapshot.terminals[0].balance == 100
    assert (snapshot.orders_succeeded, snapshot.orders_failed) == (2, 2)  # opens, closes and modifies
