"""The terminal link's pure decisions (``hedgebridge.common.terminal_link.rules``): the ack a command gets,
the hand-over to a newer connection, TERMINAL_STATUS, the sync reason and the trade report's id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hedgebridge.common.terminal_link import Delivery, rules
from hedgebridge.protocol import (
    ClosedEvent,
    DeliveryAck,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    PositionUpdate,
    TerminalStatus,
    pack,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def open_command(account: str = "A1") -> OpenCommand:
    return OpenCommand(
        timestamp=NOW, account_id=account, position_id="p-1", action_id="a-1", symbol="EURUSD", side="BUY",
        volume=0.1, metadata=OpenMetadata(execution_type="ENTRY", user_id="u"),
    )  # fmt: skip


def status(kind: Any = "CONNECTED", session: str = "s-2", at: datetime = NOW, account: str = "A1") -> TerminalStatus:
    return TerminalStatus(timestamp=at, account_id=account, status=kind, session_id=session, gateway_id="gw-2")


def screen(data: bytes, *, replaced: bool = False, unavailable: str | None = None) -> Any:
    return rules.screen_command(data, "A1", replaced=replaced, unavailable=unavailable)


def test_a_valid_command_for_a_current_link_goes_on() -> None:
    command = open_command()
    assert screen(pack(command)) == command


def test_an_invalid_command_is_refused_with_the_codec_s_words() -> None:
    ack = screen(b"\x81\xa4type\xa5PRICE")
    assert isinstance(ack, DeliveryAck)
    assert (ack.delivered, ack.uncertain) == (False, False)
    assert (ack.reason or "").startswith("invalid command: ")


def test_a_command_for_another_account_is_refused_even_by_a_replaced_link() -> None:
    ack = screen(pack(open_command("A2")), replaced=True)
    assert ack == DeliveryAck(delivered=False, reason="command names another account")


def test_a_replaced_link_stays_silent_even_when_closed() -> None:
    assert screen(pack(open_command()), replaced=True, unavailable="terminal connection closed") is None


def test_a_link_that_takes_no_commands_says_why() -> None:
    ack = screen(pack(open_command()), unavailable="terminal not attached")
    assert ack == DeliveryAck(delivered=False, reason="terminal not attached")
    assert rules.not_ready() == DeliveryAck(delivered=False, reason="terminal session not ready")


def test_the_ack_of_a_delivery() -> None:
    assert rules.delivery_ack(Delivery.DELIVERED, "s-1") == DeliveryAck(delivered=True, session_id="s-1")
    uncertain = rules.delivery_ack(Delivery.UNCERTAIN, "s-1")
    assert (uncertain.delivered, uncertain.uncertain, uncertain.session_id) == (False, True, "")
    assert uncertain.reason == "connection lost while sending; the terminal may have the command"


def test_a_newer_connection_of_another_session_takes_the_account() -> None:
    held_since = NOW.timestamp()
    assert rules.hands_over(status(at=NOW), session_id="s-1", connected_at=held_since)  # the same instant: newer
    assert rules.hands_over(status(at=NOW + timedelta(seconds=1)), session_id="s-1", connected_at=held_since)


def test_no_hand_over_to_an_older_connection_an_own_status_a_disconnect_or_nothing_held() -> None:
    since = NOW.timestamp()
    assert not rules.hands_over(status(at=NOW - timedelta(milliseconds=1)), session_id="s-1", connected_at=since)
    assert not rules.hands_over(status(session="s-1"), session_id="s-1", connected_at=since)
    assert not rules.hands_over(status("DISCONNECTED"), session_id="s-1", connected_at=since)
    assert not rules.hands_over(status(), session_id=None, connected_at=since)


def test_the_successor_s_disconnect_releases_the_account() -> None:
    assert rules.releases(status("DISCONNECTED", session="s-2"), "s-2")
    assert not rules.releases(status("DISCONNECTED", session="s-3"), "s-2")
    assert not rules.releases(status("CONNECTED", session="s-2"), "s-2")
    assert not rules.releases(status("DISCONNECTED", session="s-2"), None)


def test_the_status_event_carries_the_link_and_its_holder() -> None:
    event = rules.status_event(
        account_id="A1", session_id="s-1", holder_id="gw-1", version=1, remote="127.0.0.1:5000",
        status="DISCONNECTED", reason="heartbeat timeout", now=NOW,
    )  # fmt: skip
    assert event == TerminalStatus(
        timestamp=NOW, account_id="A1", status="DISCONNECTED", session_id="s-1", gateway_id="gw-1",
        reason="heartbeat timeout", protocol_version=1, remote="127.0.0.1:5000",
    )  # fmt: skip


def test_the_sync_reason_is_cut_and_has_a_default() -> None:
    assert rules.sync_reason(b"") == "sync requested"
    assert rules.sync_reason(b"cache rebuild") == "cache rebuild"
    assert rules.sync_reason(b"x" * 300) == "x" * 200
    assert rules.sync_reason(b"\xff") == "\ufffd"


def test_trade_reports_carry_their_report_id_and_other_events_none() -> None:
    opened = OpenedEvent(
        timestamp=NOW, account_id="A1", position_id="p-1", action_id="a-1", mt_ticket="5", price=1.1,
        volume=0.1, status="SUCCESS", symbol="EURUSD", side="BUY",
    )  # fmt: skip
    assert rules.report_headers(opened) == {"Nats-Msg-Id": "A1:OPENED:a-1:5:SUCCESS:"}
    failed = ClosedEvent(
        timestamp=NOW, account_id="A1", position_id="p-1", status="FAILED", error_code=10019, error_message="no money"
    )
    assert rules.report_id(failed) == "A1:CLOSED:p-1::FAILED:10019"
    assert rules.report_headers(PositionUpdate(timestamp=NOW, account_id="A1", positions=[])) is None
