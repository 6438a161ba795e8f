"""The client API's pure decisions: the /client handshake, scope checks with field paths, feeds, frame errors."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import pytest

from hedgebridge.cli.client_commands import build_action, client_url
from hedgebridge.cli.main import build_parser
from hedgebridge.cli.main import main as cli_main
from hedgebridge.client import Leg, parse_leg
from hedgebridge.common import auth
from hedgebridge.common.executor_client import unsent_batch, unsent_order
from hedgebridge.gateway.client_rules import (
    ANY,
    Refusal,
    check_request_scope,
    check_subscribe_scope,
    complete_body,
    feed_keys,
    feed_subjects,
    request_id_of,
    request_timeout_s,
    visible,
)
from hedgebridge.gateway.config import GatewayConfig
from hedgebridge.gateway.handshake import Accept, ClientAccept, Refuse, authenticate_client, decide
from hedgebridge.gateway.stream_rules import STREAM_SOURCES
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    ActionState,
    BatchItem,
    CloseBatch,
    CloseOrder,
    Conflict,
    ConsistencyStatus,
    OpenOrder,
    ProtocolError,
    errors,
    subjects,
)
from hedgebridge.protocol.client import Auth, ClientRequest, Subscribe, decode_client_frame, decode_server_frame

SECRET = "k" * 40
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
V1 = ["hedgebridge.v1"]


def token(role: auth.Role, subject: str = "sys-1", **scope: list[str]) -> str:
    return auth.mint_token(SECRET, role=role, subject=subject, **scope)  # type: ignore[arg-type]


def system(accounts: tuple[str, ...] = ("A", "B"), users: tuple[str, ...] = ()) -> auth.Principal:
    return auth.verify_token(token("system", accounts=list(accounts), users=list(users)), SECRET)


ADMIN = auth.verify_token(token("admin", "root"), SECRET)


# --- handshake -----------------------------------------------------------------------------------------------


def test_client_path_with_a_system_or_admin_token_is_accepted_with_its_principal() -> None:
    verdict = decide("/client", f"Bearer {token('system', accounts=['A'])}", V1, SECRET)
    assert isinstance(verdict, ClientAccept)
    assert verdict.principal is not None
    assert (verdict.principal.role, verdict.principal.accounts, verdict.version) == ("system", frozenset({"A"}), 1)
    admin = decide("/client?x=1", f"Bearer {token('admin', 'root')}", V1, SECRET)
    assert isinstance(admin, ClientAccept)
    assert admin.principal is not None
    assert admin.principal.is_admin


def test_client_path_without_a_header_waits_for_an_auth_frame() -> None:
    assert decide("/client", None, V1, SECRET) == ClientAccept(None, 1)


def test_client_path_refusals_401_for_bad_tokens_403_for_the_wrong_role() -> None:
    assert decide("/client", "Bearer nope", V1, SECRET) == Refuse(HTTPStatus.UNAUTHORIZED, "token invalid")
    assert decide("/client", "Basic abc", V1, SECRET) == Refuse(
        HTTPStatus.UNAUTHORIZED, "Authorization must be 'Bearer <token>'"
    )
    other_key = auth.mint_token(auth.new_secret(), role="admin", subject="root")
    assert decide("/client", f"Bearer {other_key}", V1, SECRET) == Refuse(
        HTTPStatus.UNAUTHORIZED, "token signature invalid"
    )
    ea = decide("/client", f"Bearer {token('ea', 'A1')}", V1, SECRET)
    assert ea == Refuse(HTTPStatus.FORBIDDEN, "token role is not 'system' or 'admin'")
    no_version = decide("/client", f"Bearer {token('admin', 'root')}", [], SECRET)
    assert isinstance(no_version, Refuse)
    assert no_version.status == HTTPStatus.BAD_REQUEST


def test_the_ea_path_is_unchanged_and_refuses_client_roles() -> None:
    assert isinstance(decide("/ea", f"Bearer {token('ea', 'A1')}", V1, SECRET), Accept)
    refused = decide("/ea", f"Bearer {token('admin', 'root')}", V1, SECRET)
    assert refused == Refuse(HTTPStatus.UNAUTHORIZED, "token role is not 'ea'")
    assert decide("/nowhere", None, V1, SECRET) == Refuse(
        HTTPStatus.NOT_FOUND, "no such endpoint; terminals connect to /ea"
    )


def test_authenticate_client_for_the_auth_frame() -> None:
    principal = authenticate_client(token("system", users=["u1"]), SECRET)
    assert isinstance(principal, auth.Principal)
    assert principal.users == frozenset({"u1"})
    assert authenticate_client(token("ea", "A1"), SECRET) == Refuse(
        HTTPStatus.FORBIDDEN, "token role is not 'system' or 'admin'"
    )
    expired = auth.mint_token(SECRET, role="admin", subject="r", ttl_s=1, now=NOW.timestamp())
    assert authenticate_client(expired, SECRET) == Refuse(HTTPStatus.UNAUTHORIZED, "token expired")


# --- scope ---------------------------------------------------------------------------------------------------


def _open(account: str) -> OpenOrder:
    return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.1)


def test_request_scope_names_the_offending_field() -> None:
    principal = system()
    assert check_request_scope(principal, _open("A")) is None
    assert check_request_scope(principal, _open("C")) == Refusal(
        errors.FORBIDDEN, "account C is outside this token's scope", "body.accountId"
    )
    close = CloseOrder(account_id="Z", position_id="p")
    refusal = check_request_scope(principal, close)
    assert refusal is not None
    assert refusal.field == "body.accountId"
    batch = CloseBatch(items=[BatchItem(account_id="A", position_id="1"), BatchItem(account_id="X", mt_ticket="2")])
    refusal = check_request_scope(principal, batch)
    assert refusal is not None
    assert (refusal.code, refusal.field) == (errors.FORBIDDEN, "body.items[1].accountId")
    legs = [ActionLeg(account_id="Q", symbol="EURUSD", side="BUY", volume=1.0)]
    hedge = ActionRequest(kind="HEDGE_ENTRY", legs=legs)
    refusal = check_request_scope(principal, hedge)
    assert refusal is not None
    assert refusal.field == "body.legs[0].accountId"
    close_all = ActionRequest(kind="CLOSE_ALL", account_ids=["A", "B", "C"])
    refusal = check_request_scope(principal, close_all)
    assert refusal is not None
    assert refusal.field == "body.accountIds[2]"
    assert check_request_scope(ADMIN, close_all) is None
    assert check_request_scope(principal, ActionRequest(kind="EXIT", target_action_id="t-1")) is None


def test_a_users_only_token_may_trade_nothing() -> None:
    principal = system(accounts=(), users=("u1",))
    refusal = check_request_scope(principal, _open("A"))
    assert refusal is not None
    assert refusal.code == errors.FORBIDDEN


def test_subscribe_scope() -> None:
    principal = system()
    assert check_subscribe_scope(principal, None) is None
    assert check_subscribe_scope(principal, ["B", "A"]) is None
    refusal = check_subscribe_scope(principal, ["A", "C"])
    assert refusal is not None
    assert (refusal.code, refusal.field) == (errors.FORBIDDEN, "accounts[1]")
    assert check_subscribe_scope(ADMIN, ["anything"]) is None


# --- feeds ---------------------------------------------------------------------------------------------------


def test_feed_keys_per_account_for_systems_and_one_wildcard_for_admins() -> None:
    principal = system()
    assert feed_keys(principal, "prices", None) == {("prices", "A"), ("prices", "B")}
    assert feed_keys(principal, "prices", frozenset({"A"})) == {("prices", "A")}
    assert feed_keys(ADMIN, "prices", None) == {("prices", ANY)}
    assert feed_keys(ADMIN, "positions", frozenset({"X"})) == {("positions", "X")}
    # topics kept in JetStream: one stream consumer for every account, filtered per client
    assert feed_keys(ADMIN, "trades", frozenset({"X"})) == {("trades", ANY)}
    assert feed_keys(principal, "orders", None) == {("orders", ANY)}
    assert feed_keys(principal, "actions", frozenset({"A"})) == {("actions", ANY)}
    assert feed_keys(principal, "consistency", None) == {("consistency", ANY)}


def test_feed_subjects() -> None:
    assert feed_subjects(("prices", "A")) == (subjects.event("A", "PRICE"),)
    assert feed_subjects(("prices", ANY)) == ("hb.ea.*.evt.price",)
    assert feed_subjects(("positions", "A")) == ("hb.ea.A.evt.position_update",)
    assert feed_subjects(("balances", ANY)) == ("hb.ea.*.evt.account_update",)
    assert feed_subjects(("terminals", "A")) == (subjects.status("A"),)
    assert feed_subjects(("terminals", ANY)) == (subjects.ALL_STATUS,)
    # STREAM topics come from their stream; of the consistency topic only the overall status is core NATS
    for topic in ("trades", "orders", "actions", "alerts"):
        assert feed_subjects((topic, ANY)) == ()
    assert feed_subjects(("consistency", ANY)) == (subjects.CONSISTENCY_STATUS,)
    assert STREAM_SOURCES["trades"].subjects == ("hb.ea.*.evt.opened", "hb.ea.*.evt.closed", "hb.ea.*.evt.modified")
    assert STREAM_SOURCES["orders"].subjects == (subjects.ALL_RESULTS,)
    assert STREAM_SOURCES["actions"].subjects == (subjects.ALL_ACTIONS,)
    assert STREAM_SOURCES["consistency"].subjects == (subjects.CONFLICTS,)
    with pytest.raises(ValueError, match="unknown topic"):
        feed_subjects(("nope", ANY))


def _action(accounts: list[str], user: str = "") -> ActionState:
    return ActionState(
        action_id="a", kind="HEDGE_ENTRY", state="RUNNING", seq=1, timestamp=NOW, account_ids=accounts, user_id=user
    )


def _conflict(account: str) -> Conflict:
    return Conflict(kind="ORPHAN_POSITION", account_id=account, mt_ticket="1", detected_at=NOW)


def test_visibility_of_shared_feeds() -> None:
    principal = system(users=("u9",))
    assert visible(principal, None, "actions", _action(["A", "B"]))
    assert not visible(principal, None, "actions", _action(["A", "C"]))
    assert visible(principal, None, "actions", _action(["C"], user="u9"))
    assert not visible(principal, None, "actions", _action([]))
    assert not visible(principal, frozenset({"B"}), "actions", _action(["A"]))
    assert visible(ADMIN, None, "actions", _action(["Z"]))
    assert visible(principal, None, "consistency", _conflict("A"))
    assert not visible(principal, None, "consistency", _conflict("C"))
    assert not visible(principal, frozenset({"B"}), "consistency", _conflict("A"))
    status = ConsistencyStatus(timestamp=NOW, consistent=True, accounts_checked=2, open_conflicts=0)
    assert not visible(principal, None, "consistency", status)
    assert visible(ADMIN, None, "consistency", status)


# --- requests ------------------------------------------------------------------------------------------------


def test_complete_body_stamps_action_id_and_user() -> None:
    principal = system()
    done = complete_body(_open("A"), principal)
    assert isinstance(done, OpenOrder)
    assert done.action_id
    assert done.user_id == "sys-1"
    kept = complete_body(
        OpenOrder(account_id="A", symbol="X", side="SELL", volume=1, action_id="k", user_id="u"), principal
    )
    assert (kept.action_id, kept.user_id) == ("k", "u")


def test_request_timeouts_cover_the_backend_timeout() -> None:
    cfg = GatewayConfig(jwt_secret=SECRET)
    assert request_timeout_s(_open("A"), cfg) == (10_000 + 5000) / 1000
    timed = OpenOrder(account_id="A", symbol="X", side="BUY", volume=1, timeout_ms=2000, ttl_ms=1000)
    assert request_timeout_s(timed, cfg) == 8.0
    assert request_timeout_s(ActionRequest(kind="EXIT", target_action_id="t"), cfg) == 35.0


def test_unsent_answers_are_definite() -> None:
    order = unsent_order(
        OpenOrder(account_id="A", symbol="EURUSD", side="BUY", volume=1, action_id="x"),
        errors.EXECUTOR_UNAVAILABLE,
        "m",
    )
    assert (order.status, order.code, order.kind, order.account_id, order.action_id) == (
        "EXPIRED",
        errors.EXECUTOR_UNAVAILABLE,
        "OPEN",
        "A",
        "x",
    )
    batch = unsent_batch(
        CloseBatch(
            action_id="b", items=[BatchItem(account_id="A", position_id="1"), BatchItem(account_id="B", mt_ticket="2")]
        ),
        errors.EXECUTOR_UNAVAILABLE,
        "m",
    )
    assert [(r.status, r.action_id, r.account_id) for r in batch.results] == [
        ("EXPIRED", "b-0", "A"),
        ("EXPIRED", "b-1", "B"),
    ]


# --- frames --------------------------------------------------------------------------------------------------


def _error(data: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(data)
    return info.value


def test_client_frames_decode() -> None:
    frame = decode_client_frame(
        '{"type":"REQUEST","requestId":"r1","body":{"type":"OPEN_ORDER","accountId":"A","symbol":"EURUSD",'
        '"side":"BUY","volume":0.1}}'
    )
    assert isinstance(frame, ClientRequest)
    assert isinstance(frame.body, OpenOrder)
    sub = decode_client_frame('{"type":"SUBSCRIBE","requestId":"s","topics":["prices","trades"]}')
    assert isinstance(sub, Subscribe)
    assert sub.accounts is None
    assert isinstance(decode_client_frame('{"type":"AUTH","token":"t"}'), Auth)


def test_bad_client_frames_raise_typed_errors_with_the_field() -> None:
    assert _error("not json").code == errors.MALFORMED_FRAME
    assert _error('{"type":"NOPE"}').code == errors.UNKNOWN_TYPE
    missing = _error('{"type":"REQUEST","requestId":"r1"}')
    assert (missing.code, missing.field) == (errors.MISSING_FIELD, "body")
    volume = _error(
        '{"type":"REQUEST","requestId":"r1","body":{"type":"OPEN_ORDER","accountId":"A","symbol":"EURUSD",'
        '"side":"BUY","volume":-1}}'
    )
    assert (volume.code, volume.field) == (errors.INVALID_FIELD, "body.volume")
    topic = _error('{"type":"SUBSCRIBE","requestId":"s","topics":["weather"]}')
    assert (topic.code, topic.field) == (errors.INVALID_FIELD, "topics[0]")
    account = _error('{"type":"SUBSCRIBE","requestId":"s","topics":["prices"],"accounts":["a b"]}')
    assert (account.code, account.field) == (errors.INVALID_FIELD, "accounts[0]")


def test_request_id_of_a_bad_frame() -> None:
    assert request_id_of('{"type":"REQUEST","requestId":"r-7"}') == "r-7"
    assert request_id_of("[1,2]") is None
    assert request_id_of("not json") is None
    assert request_id_of('{"requestId":5}') is None


# --- SDK helpers ---------------------------------------------------------------------------------------------


def test_parse_leg() -> None:
    assert parse_leg("SIM-001:EURUSD:buy:1.5") == Leg("SIM-001", "EURUSD", "BUY", 1.5)
    for bad in ("A:EURUSD:BUY", "A:EURUSD:HOLD:1", "A:EURUSD:BUY:x", "A:EURUSD:SELL:0", ":EURUSD:BUY:1"):
        with pytest.raises(ValueError, match="leg"):
            parse_leg(bad)


# --- the README's examples -----------------------------------------------------------------------------------


def test_readme_client_api_examples_are_valid_frames() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    frames: list[str] = []
    for block in re.findall(r"```jsonc\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            if line.startswith('{"type"'):
                frames.append(line)
            elif line.strip():
                frames[-1] += line.strip()
    kinds: list[str] = []
    for frame in frames:
        kind = json.loads(frame)["type"]
        client_kinds = ("AUTH", "REQUEST", "SUBSCRIBE", "UNSUBSCRIBE", "HISTORY")
        decoded = decode_client_frame(frame) if kind in client_kinds else None
        kinds.append(type(decoded or decode_server_frame(frame)).__name__)
    assert kinds == [
        # stop loss and take profit: a MODIFY_ORDER
        "ClientRequest",
        "ClientReply",
        # symbol mapping
        "ClientRequest",
        "ClientReply",
        # authentication, requests, live events
        "ClientWelcome",
        "ClientRequest",
        "ClientReply",
        "ClientRequest",
        "ClientReply",
        "Subscribe",
        "Subscribed",
        "Push",
        "Unsubscribe",
        "Subscribed",
        # resuming a stream
        "Subscribe",
        "Subscribed",
        "Push",
        "CaughtUp",
        "Push",
        "CaughtUp",
        "Resync",
        # history
        "HistoryRequest",
        "HistoryPage",
        "HistoryRequest",
    ]


# --- CLI -----------------------------------------------------------------------------------------------------


def test_cli_action_arguments_become_action_requests() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["action", "hedge", "--leg", "A:EURUSD:BUY:1", "--leg", "B:EURUSD:sell:0.5", "--policy", "keep"]
    )
    hedge = build_action(args)
    assert (hedge.kind, hedge.policy) == ("HEDGE_ENTRY", "KEEP")
    assert [(leg.account_id, leg.side, leg.volume) for leg in hedge.legs] == [("A", "BUY", 1.0), ("B", "SELL", 0.5)]
    assert hedge.action_id
    exit_ = build_action(parser.parse_args(["action", "exit", "h-1", "--action-id", "x-1"]))
    assert (exit_.kind, exit_.target_action_id, exit_.action_id) == ("EXIT", "h-1", "x-1")
    close_all = build_action(parser.parse_args(["action", "close-all", "--account", "A", "--account", "B"]))
    assert (close_all.kind, close_all.account_ids) == ("CLOSE_ALL", ["A", "B"])
    watch = parser.parse_args(["watch", "--topic", "prices", "--topic", "trades", "--account", "A", "--count", "2"])
    assert (watch.topic, watch.account, watch.count) == (["prices", "trades"], ["A"], 2)
    for bad in (
        ["action", "hedge", "--leg", "A:EURUSD:BUY"],
        ["action", "hedge"],
        ["action", "close-all"],
        ["watch", "--topic", "weather"],
    ):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(bad)
        assert info.value.code == 2


def test_client_url_from_the_stack_gateway_url() -> None:
    assert client_url("ws://127.0.0.1:8765/ea") == "ws://127.0.0.1:8765/client"
    assert client_url("wss://gw.example:443/ea?x=1") == "wss://gw.example:443/client"


def test_token_command_mints_scoped_system_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["token", "--secret", SECRET, "--role", "system", "--account", "A", "--account", "B", "--user", "u"]
    )
    assert code == 0
    principal = auth.verify_token(capsys.readouterr().out.strip(), SECRET)
    assert (principal.role, principal.subject, principal.accounts, principal.users) == (
        "system",
        "system",
        frozenset({"A", "B"}),
        frozenset({"u"}),
    )
    assert cli_main(["token", "--secret", SECRET, "--role", "ea", "--account", "A1"]) == 0
    assert auth.verify_token(capsys.readouterr().out.strip(), SECRET).subject == "A1"
    assert cli_main(["token", "--secret", SECRET, "--role", "system"]) == 2  # a system token needs a scope
    assert "names the accounts" in capsys.readouterr().err
