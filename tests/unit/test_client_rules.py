"""The client API's pure rules not covered in test_client_api.py: SUBSCRIBED's accounts, the WELCOME, the
check of an EXIT's target, decoding a shared feed's events and close reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hedgebridge.common.auth import Principal
from hedgebridge.gateway.client_rules import (
    SHARED_TOPICS,
    Refusal,
    check_exit_target,
    close_reason,
    decode_feed,
    exit_target,
    feed_keys,
    merge_selection,
    remaining_accounts,
    subscribed_accounts,
    welcome,
)
from hedgebridge.gateway.config import GatewayConfig
from hedgebridge.protocol import (
    PROTOCOL_VERSION,
    ActionRequest,
    ActionState,
    Alert,
    ConsistencyStatus,
    OrderResult,
    ProtocolError,
    SymbolSpec,
    SymbolSpecs,
    errors,
    pack,
    subjects,
)
from hedgebridge.protocol.messages import Conflict

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SYSTEM = Principal("sys-1", "system", "t1", 0.0, accounts=frozenset({"B", "A"}), users=frozenset({"u2", "u1"}))
ADMIN = Principal("root", "admin", "t2", 0.0)


def test_a_subscribe_merges_accounts_and_everything_absorbs_a_selection() -> None:
    assert merge_selection(frozenset(), frozenset({"A"})) == frozenset({"A"})
    assert merge_selection(frozenset({"A"}), frozenset({"B"})) == frozenset({"A", "B"})
    assert merge_selection(frozenset({"A"}), None) is None
    assert merge_selection(None, frozenset({"B"})) is None  # once everything, always everything


def test_subscribed_names_the_accounts_asked_or_the_scope() -> None:
    assert subscribed_accounts(SYSTEM, ["B", "A", "B"]) == ["A", "B"]
    assert subscribed_accounts(SYSTEM, None) == ["A", "B"]
    assert subscribed_accounts(ADMIN, None) is None
    assert subscribed_accounts(ADMIN, ["Z"]) == ["Z"]


def test_after_an_unsubscribe_subscribed_names_what_is_still_followed() -> None:
    assert remaining_accounts(SYSTEM, {}) == []
    assert remaining_accounts(SYSTEM, {"prices": frozenset({"B"}), "trades": frozenset({"A", "B"})}) == ["A", "B"]
    assert remaining_accounts(SYSTEM, {"prices": frozenset({"B"}), "orders": None}) == ["A", "B"]
    assert remaining_accounts(ADMIN, {"orders": None}) is None


def test_the_welcome_states_the_scope_and_the_heartbeat() -> None:
    config = GatewayConfig(jwt_secret="k" * 40, heartbeat_interval_ms=1234)
    frame = welcome(SYSTEM, 99, "s-1", config, NOW)
    assert (frame.protocol_version, frame.session_id, frame.role, frame.subject) == (
        PROTOCOL_VERSION,
        "s-1",
        "system",
        "sys-1",
    )
    assert (frame.accounts, frame.users, frame.heartbeat_interval_ms, frame.server_time) == (
        ["A", "B"],
        ["u1", "u2"],
        1234,
        NOW,
    )
    assert welcome(ADMIN, 1, "s-2", config, NOW).accounts is None
    assert welcome(ADMIN, 1, "s-2", config, NOW).protocol_version == 1


def test_only_a_system_clients_exit_has_its_target_checked() -> None:
    exit_ = ActionRequest(kind="EXIT", target_action_id="t-1")
    assert exit_target(exit_, SYSTEM) == "t-1"
    assert exit_target(exit_, ADMIN) is None
    assert exit_target(ActionRequest(kind="CLOSE_ALL", account_ids=["A"], target_action_id="t-1"), SYSTEM) is None


def _action(*accounts: str) -> ActionState:
    return ActionState(
        action_id="t-1", kind="HEDGE_ENTRY", state="COMPLETED", seq=3, timestamp=NOW, account_ids=list(accounts)
    )


def test_an_exit_target_must_be_recorded_with_every_account_in_scope() -> None:
    assert check_exit_target("t-1", _action("A", "B"), SYSTEM) is None
    assert check_exit_target("t-1", None, SYSTEM) == Refusal(
        errors.ACTION_NOT_FOUND, "no action t-1 is recorded", "body.targetActionId"
    )
    for recorded in (_action("A", "C"), _action()):
        refusal = check_exit_target("t-1", recorded, SYSTEM)
        assert refusal is not None
        assert (refusal.code, refusal.field) == (errors.FORBIDDEN, "body.targetActionId")


def test_shared_feed_events_decode_by_topic_and_subject() -> None:
    conflict = Conflict(kind="ORPHAN_POSITION", account_id="A", mt_ticket="7", detected_at=NOW)
    status = ConsistencyStatus(timestamp=NOW, consistent=True, accounts_checked=2, open_conflicts=0)
    assert decode_feed("consistency", subjects.CONFLICTS, pack(conflict)) == conflict
    assert decode_feed("consistency", subjects.CONSISTENCY_STATUS, pack(status)) == status
    result = OrderResult(status="FILLED", action_id="x", account_id="A")
    assert decode_feed("orders", subjects.result("A"), pack(result)) == result
    alert = Alert(
        key="k",
        rule="r",
        state="OPEN",
        severity="WARNING",
        code="C",
        opened_at=NOW,
        updated_at=NOW,
        seq=1,
    )
    assert decode_feed("alerts", subjects.ALL_ALERTS, pack(alert)) == alert


def test_the_symbols_rules_are_no_client_event() -> None:
    spec = SymbolSpec(
        symbol="EURUSD", volume_min=0.01, volume_max=1, volume_step=0.01, contract_size=1, digits=5, trade_mode="FULL"
    )
    specs = SymbolSpecs(timestamp=NOW, account_id="A", symbols=[spec])
    with pytest.raises(ProtocolError) as refused:
        decode_feed("prices", subjects.event("A", "PRICE"), pack(specs))
    assert refused.value.code == errors.UNEXPECTED_TYPE


def test_every_shared_topic_is_one_wildcard_feed_whatever_the_selection() -> None:
    for topic in SHARED_TOPICS:
        assert feed_keys(SYSTEM, topic, frozenset({"A"})) == {(topic, "*")}


def test_close_reasons_fit_a_close_frame_and_stay_utf8() -> None:
    assert close_reason("rate limit") == "rate limit"
    long = "é" * 100  # 200 bytes
    cut = close_reason(long)
    assert len(cut.encode()) <= 120
    assert cut == "é" * 60
