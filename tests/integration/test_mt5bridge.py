"""The MetaTrader5-package bridge on the real nats-server (and executor, gateway where they matter), driving the
simulated package: what only the bridge does — attaching to a terminal and losing it, restarts, orders the EA
sent, results the package lost, closes made outside the system, and yielding to a newer connection. The
execution contract it shares with the EA path is in ``test_terminal_contract.py``."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.servers import NatsServer, free_port
from hedgebridge.executor.service import Executor
from hedgebridge.mt5bridge import translate as tr
from hedgebridge.mt5bridge.service import Mt5Bridge
from hedgebridge.protocol import (
    CloseCommand,
    ClosedEvent,
    CloseMetadata,
    CloseOrder,
    DeliveryAck,
    Event,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    OpenOrder,
    OrderResult,
    PositionUpdate,
    TerminalStatus,
    Welcome,
    pack,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)

from ..helpers import RawEa, deliver, ea_token, http_get, order, wait_for
from ..mt5.fake_mt5 import FakeFault, FakeMT5
from ..mt5.terminals import Bridges, bridge_config

pytestmark = pytest.mark.integration


class Seen:
    """Everything published for one account: events and TERMINAL_STATUS."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.status: list[TerminalStatus] = []

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def seen(nc: NatsClient) -> AsyncIterator[Seen]:
    record = Seen()

    async def on_event(msg: Msg) -> None:
        record.events.append(unpack_event(msg.data))

    async def on_status(msg: Msg) -> None:
        record.status.append(unpack(msg.data, TerminalStatus))

    subs = [await nc.subscribe("hb.ea.A1.evt.>", cb=on_event), await nc.subscribe("hb.ea.A1.status", cb=on_status)]
    await nc.flush()
    yield record
    for sub in subs:
        await sub.unsubscribe()


def open_command(action_id: str, position_id: str, volume: float = 0.1) -> OpenCommand:
    return OpenCommand(
        timestamp=utcnow(),
        account_id="A1",
        position_id=position_id,
        action_id=action_id,
        symbol="EURUSD",
        side="BUY",
        volume=volume,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u-1"),
    )


def close_command(action_id: str, position_id: str, mt_ticket: str | None = None) -> CloseCommand:
    return CloseCommand(
        timestamp=utcnow(),
        account_id="A1",
        position_id=position_id,
        action_id=action_id,
        mt_ticket=mt_ticket,
        metadata=CloseMetadata(exit_reason="manual", user_id="u-1"),
    )


def readme_comment(action_id: str, position_id: str) -> str:
    """The EA's order comment, written from mql5/README.md."""

    def tag(s: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest())[:12].decode() if s else "-" * 12

    return "hb" + tag(action_id) + tag(position_id)


async def test_connects_and_disconnects_as_a_terminal_does(bridges: Bridges, seen: Seen) -> None:
    terminal = await bridges.start("A1")
    await wait_for(lambda: bool(seen.of(PositionUpdate)), "the first POSITION_UPDATE")
    (connected,) = seen.status
    assert (connected.status, connected.gateway_id, connected.protocol_version) == ("CONNECTED", "mt5-test-A1", 1)
    assert connected.session_id == terminal.bridge.session_id
    await bridges.stop(terminal.bridge)
    await wait_for(lambda: len(seen.status) == 2, "DISCONNECTED")
    assert (seen.status[1].status, seen.status[1].reason) == ("DISCONNECTED", "bridge shutting down")


async def test_a_lost_terminal_takes_the_account_offline_until_it_is_back(
    bridges: Bridges, seen: Seen, nc: NatsClient, executor: Executor
) -> None:
    terminal = await bridges.start("A1")
    assert (await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))).status == "FILLED"
    terminal.mt5.lose_terminal()
    await wait_for(lambda: any(s.status == "DISCONNECTED" for s in seen.status), "DISCONNECTED")
    assert "terminal lost" in seen.status[-1].reason
    offline = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, ttl_ms=200))
    assert offline.status == "EXPIRED"  # nobody took the command: nothing was sent
    terminal.mt5.restore_terminal()
    await wait_for(terminal.bridge.connected.is_set, "the bridge to attach again")
    assert [s.status for s in seen.status] == ["CONNECTED", "DISCONNECTED", "CONNECTED"]
    assert (await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))).status == "FILLED"
    assert len(await terminal.positions()) == 2
    assert terminal.bridge.attachments == 2


async def test_a_restarted_bridge_finds_earlier_executions_in_positions_and_history(
    bridges: Bridges, seen: Seen, nc: NatsClient, tmp_path: Path
) -> None:
    mt5 = FakeMT5()
    first = await bridges.start("A1", mt5)
    assert (await deliver(nc, "A1", open_command("r-open", "p-r"))).delivered
    await wait_for(lambda: len(seen.of(OpenedEvent)) == 1, "OPENED")
    opened = seen.of(OpenedEvent)[0]
    assert isinstance(opened, OpenedEvent)
    await bridges.stop(first.bridge)

    second = await bridges.start("A1", mt5)  # same book file: the ids of the open position are known
    assert (await deliver(nc, "A1", open_command("r-open", "p-r"))).delivered
    await wait_for(lambda: len(seen.of(OpenedEvent)) == 2, "the repeated OPENED")
    again = seen.of(OpenedEvent)[1]
    assert isinstance(again, OpenedEvent)
    assert (again.already_executed, again.mt_ticket) == (True, opened.mt_ticket)
    last = seen.of(PositionUpdate)[-1]
    assert isinstance(last, PositionUpdate)
    assert [(p.position_id, p.action_id) for p in last.positions] == [("p-r", "r-open")]
    assert (await deliver(nc, "A1", close_command("r-close", "p-r"))).delivered  # by positionId
    await wait_for(lambda: len(seen.of(ClosedEvent)) == 1, "CLOSED")
    await bridges.stop(second.bridge)

    third = await bridges.start("A1", mt5, book_dir=str(tmp_path / "other-books"))  # nothing remembered
    for command in (close_command("r-close", "p-r"), open_command("r-open", "p-r")):
        assert (await deliver(nc, "A1", command)).delivered
    await wait_for(lambda: len(seen.of(ClosedEvent)) == 2 and len(seen.of(OpenedEvent)) == 3, "the answers")
    closed_again, reopened = seen.of(ClosedEvent)[1], seen.of(OpenedEvent)[2]
    assert isinstance(closed_again, ClosedEvent)
    assert isinstance(reopened, OpenedEvent)
    assert (closed_again.already_executed, closed_again.mt_ticket) == (True, opened.mt_ticket)
    assert (reopened.already_executed, reopened.mt_ticket) == (True, opened.mt_ticket)  # from the deal history
    assert mt5.sent(readme_comment("r-open", "")[:14]) == 1
    assert mt5.sent(readme_comment("r-close", "")[:14]) == 1
    assert third.received == ["r-close", "r-open"]
    assert third.bridge._book.entries == {}  # found only in the history: closed, so not booked (no second CLOSED)


async def test_orders_the_ea_sent_are_recognised(bridges: Bridges, seen: Seen, nc: NatsClient) -> None:
    mt5 = FakeMT5()
    terminal = await bridges.start("A1", mt5)
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick is not None
    ea_order = {"action": 1, "symbol": "EURUSD", "volume": 0.2, "type": 0, "price": tick.ask, "deviation": 10,
                "magic": 7_700_101, "comment": readme_comment("ea-1", "p-ea"), "type_filling": 0}  # fmt: skip
    sent = mt5.order_send(ea_order)  # the EA executed this OPEN before the account moved to the bridge
    assert sent is not None
    assert sent.retcode == 10009
    assert (await deliver(nc, "A1", open_command("ea-1", "p-ea", 0.2))).delivered
    assert (await deliver(nc, "A1", close_command("ea-close", "p-ea"))).delivered  # found by the comment's tag
    await wait_for(lambda: bool(seen.of(OpenedEvent)) and bool(seen.of(ClosedEvent)), "the answers")
    opened, closed = seen.of(OpenedEvent)[0], seen.of(ClosedEvent)[0]
    assert isinstance(opened, OpenedEvent)
    assert isinstance(closed, ClosedEvent)
    assert (opened.already_executed, opened.mt_ticket) == (True, str(sent.order))
    assert (closed.status, closed.already_executed, closed.mt_ticket) == ("SUCCESS", False, str(sent.order))
    assert await terminal.positions() == {}


async def test_an_execution_whose_result_the_package_lost_is_found_and_reported(
    bridges: Bridges, nc: NatsClient, executor: Executor
) -> None:
    terminal = await bridges.start("A1")
    terminal.mt5.faults.append(FakeFault(lost_result=True))
    result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="lr-1"))
    assert (result.status, result.reconciled, result.mt_ticket) == (
        "FILLED",
        False,
        next(iter(await terminal.positions())),
    )
    assert terminal.mt5.sent(readme_comment("lr-1", "")[:14]) == 1


async def test_a_position_closed_outside_the_system_is_reported_with_its_reason(
    bridges: Bridges, seen: Seen, nc: NatsClient, executor: Executor
) -> None:
    terminal = await bridges.start("A1")
    opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.mt_ticket is not None
    terminal.mt5.close_outside(int(opened.mt_ticket), reason=FakeMT5.DEAL_REASON_TP)
    await wait_for(lambda: bool(seen.of(ClosedEvent)), "CLOSED")
    closed = seen.of(ClosedEvent)[0]
    assert isinstance(closed, ClosedEvent)
    assert (closed.reason, closed.mt_ticket, closed.position_id, closed.status) == (
        "take_profit",
        opened.mt_ticket,
        opened.position_id,
        "SUCCESS",
    )

    async def unbooked() -> bool:
        try:
            return f"A1.{opened.mt_ticket}" not in await executor.state.book.keys()
        except Exception:  # nats-py raises when the bucket is empty
            return True

    await wait_for(unbooked, "the position to leave the book")


async def test_a_closing_deal_that_reaches_the_history_late_is_waited_for(
    bridges: Bridges, nc: NatsClient, executor: Executor
) -> None:
    mt5 = FakeMT5(deal_delay_s=1.5)  # the terminal's history lags order_send's answer
    await bridges.start("A1", mt5)
    opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.status == "FILLED"
    assert opened.mt_ticket is not None
    for _ in range(40):
        mt5.step()  # the price moves: the close has a profit of its own
    mt5.faults.append(FakeFault(deal_unknown=True))  # and order_send's answer names no deal: found by the order
    closed = await order(nc, CloseOrder(account_id="A1", position_id=opened.position_id))
    assert closed.status == "FILLED"
    ticket = int(opened.mt_ticket)

    def closing_deals() -> list[Any]:
        return [d for d in mt5.history_deals_get(position=ticket) or () if d.entry == FakeMT5.DEAL_ENTRY_OUT]

    await wait_for(lambda: bool(closing_deals()), "the closing deal in the history")
    out = closing_deals()
    assert closed.profit == round(sum(d.profit + d.swap + d.commission + d.fee for d in out), 2)  # commission too
    assert isinstance(closed.event, ClosedEvent)
    assert closed.event.error_message is None


async def test_a_closing_deal_missing_past_the_deadline_makes_closed_say_its_profit_is_an_estimate(
    bridges: Bridges, seen: Seen, nc: NatsClient
) -> None:
    mt5 = FakeMT5()
    await bridges.start("A1", mt5, deal_wait_ms=300)
    assert (await deliver(nc, "A1", open_command("e-open", "p-e"))).delivered
    await wait_for(lambda: bool(seen.of(OpenedEvent)), "OPENED")
    mt5.faults.append(FakeFault(deal_delay_s=60, deal_unknown=True))  # no deal ticket, no deal for a minute
    assert (await deliver(nc, "A1", close_command("e-close", "p-e"))).delivered
    await wait_for(lambda: bool(seen.of(ClosedEvent)), "CLOSED")
    closed = seen.of(ClosedEvent)[0]
    assert isinstance(closed, ClosedEvent)
    assert (closed.status, closed.error_message, closed.remaining_volume) == ("SUCCESS", tr.ESTIMATED_PROFIT, 0.0)
    assert mt5.open_positions() == {}


async def test_bad_commands_are_refused_unsent(bridges: Bridges, nc: NatsClient) -> None:
    terminal = await bridges.start("A1")
    garbage = unpack((await nc.request(subjects.command("A1"), b"\x00junk", timeout=5)).data, DeliveryAck)
    assert (garbage.delivered, garbage.reason.startswith("invalid command")) == (False, True)
    other = open_command("x-1", "p-x")
    foreign = pack(msgspec.structs.replace(other, account_id="B1"))
    refused = unpack((await nc.request(subjects.command("A1"), foreign, timeout=5)).data, DeliveryAck)
    assert (refused.delivered, refused.reason) == (False, "command names another account")
    assert terminal.received == []
    assert terminal.mt5.requests == []


async def test_the_password_is_never_logged(
    bridges: Bridges, caplog: pytest.LogCaptureFixture, nats_server: NatsServer, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="hedgebridge")
    mt5 = FakeMT5(login=42, password="pw-right-1", server="Fake-Demo")
    wrong = bridge_config(nats_server.url, "A1", tmp_path, login=42, password="pw-wrong-2", server="Fake-Demo")
    refused = Mt5Bridge(wrong, mt5=mt5)
    await refused.start()
    try:
        await wait_for(lambda: mt5.initialize_calls >= 3, "attempts to attach again")  # it keeps trying
        assert not refused.connected.is_set()
    finally:
        await refused.stop()
    terminal = await bridges.start("A1", mt5, login=42, password="pw-right-1", server="Fake-Demo")
    assert terminal.bridge.connected.is_set()
    await bridges.close()
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', {})}" for r in caplog.records)
    assert "Authorization failed" in logged
    assert "pw-right-1" not in logged
    assert "pw-wrong-2" not in logged


async def test_a_newer_ea_connection_replaces_the_bridge_until_it_ends(
    bridges: Bridges, seen: Seen, nc: NatsClient, ea_url: str, secret: str
) -> None:
    terminal = await bridges.start("A1")
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    try:
        await ea.recv_type(Welcome)
        session = terminal.bridge.session_id

        def stepped_back() -> list[TerminalStatus]:
            return [s for s in seen.status if s.session_id == session]

        await wait_for(lambda: len(stepped_back()) == 2, "the bridge to step back")
        assert not terminal.bridge.connected.is_set()
        assert [(s.status, s.reason) for s in stepped_back()] == [
            ("CONNECTED", ""),
            ("DISCONNECTED", "replaced by a newer connection for this account"),
        ]
        assert (await deliver(nc, "A1", open_command("to-ea", "p-ea"))).delivered
        assert isinstance(await ea.recv_type(OpenCommand), OpenCommand)  # the EA has the account now
        assert terminal.received == []
    finally:
        await ea.close()
    await wait_for(terminal.bridge.connected.is_set, "the bridge to take the account back")
    assert (await deliver(nc, "A1", open_command("to-bridge", "p-b"))).delivered
    await wait_for(lambda: terminal.received == ["to-bridge"], "the OPEN at the bridge")


async def test_an_order_while_the_terminal_is_gone_is_not_refused_but_reconciled(
    bridges: Bridges, seen: Seen, nc: NatsClient, executor: Executor
) -> None:
    """The link breaks between the command's arrival and its execution: no verdict is invented; the terminal is
    reported lost and the order is settled once the terminal is back."""
    # no price or state polling: only the command notices the loss
    terminal = await bridges.start("A1", poll_interval_ms=60_000, symbols="")
    terminal.mt5.lose_terminal()
    first = OpenOrder(
        account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="gone-1", timeout_ms=500, ttl_ms=5000
    )
    result = await order(nc, first)  # the long time-to-live covers a bridge still subscribing under load
    assert (result.status, result.code) == ("OUTCOME_UNKNOWN", "OUTCOME_UNKNOWN")
    await wait_for(lambda: any(s.status == "DISCONNECTED" for s in seen.status), "DISCONNECTED")
    assert terminal.mt5.requests == []
    terminal.mt5.restore_terminal()
    repeat = first
    answers: list[OrderResult] = []

    async def settled() -> bool:
        answers.append(await order(nc, repeat))
        return answers[-1].status not in ("IN_FLIGHT", "OUTCOME_UNKNOWN")  # asked again until reconciled

    await wait_for(settled, "the reconciled result")
    assert (answers[-1].status, answers[-1].code, answers[-1].reconciled) == (
        "REJECTED",
        "RECONCILED_NOT_EXECUTED",
        True,
    )
    assert await terminal.positions() == {}


async def test_health_endpoints_name_a_lost_terminal(bridges: Bridges) -> None:
    port = free_port()
    terminal = await bridges.start("A1", health_port=port, health_host="127.0.0.1", poll_interval_ms=50)
    assert (await http_get(port, "/healthz"))[0] == 200
    assert (await http_get(port, "/readyz"))[0] == 200
    terminal.mt5.lose_terminal()

    async def not_ready() -> bool:
        status, body = await http_get(port, "/readyz")
        return status == 503 and json.loads(body)["failed"] == ["terminal"]

    await wait_for(not_ready, "/readyz to name the lost terminal")
    terminal.mt5.restore_terminal()

    async def ready_again() -> bool:
        return (await http_get(port, "/readyz"))[0] == 200

    await wait_for(ready_again, "/readyz to recover once the terminal is back")
    status, body = await http_get(port, "/metrics")
    assert status == 200
    assert b"hedgebridge_" in body
