"""What the compiled EA reports across connections and restarts: reports kept until the gateway has them (sent
again after the next WELCOME, by the next run too), positions closed while the EA was stopped, commands read
before a session's WELCOME, and positions whose ticket changed (POSITION_IDENTIFIER names a position)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.executor.service import Executor
from hedgebridge.protocol import (
    ClosedEvent,
    CloseOrder,
    Message,
    OpenedEvent,
    OpenOrder,
    PositionUpdate,
    utcnow,
)
from hedgebridge.sim.ea.launch import EaSettings

from ..helpers import order, wait_for
from .conftest import StartEa

pytestmark = pytest.mark.integration

LOGIN = 1000001  # the simulated trade server's account


def buy(action_id: str, **fields: object) -> OpenOrder:
    return OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id=action_id, **fields)  # type: ignore[arg-type]


def outbox(files: Path) -> str:
    path = files / "HedgeBridge" / f"outbox_{LOGIN}.jsonl"
    return path.read_text() if path.exists() else ""


async def test_a_report_lost_with_the_connection_is_sent_again_after_welcome(
    start_ea: StartEa, nc: NatsClient, executor: Executor, events: list[Message], tmp_path: Path
) -> None:
    ea = await start_ea("A1", "lost", EaSettings())
    ea.proxy.drop_next_report()
    result = await order(nc, buy("lost-r", timeout_ms=3000))
    assert result.status == "FILLED"
    await wait_for(
        lambda: any(isinstance(e, OpenedEvent) and e.action_id == "lost-r" for e in events), "the OPENED sent again"
    )
    opened = [(n, kind) for n, kind, action in ea.proxy.reports if action == "lost-r"]
    assert opened == [(1, "OPENED"), (2, "OPENED")]  # lost on the first connection, sent again on the second
    # the gateway's heartbeat reply proves it arrived: the outbox lets it go
    await wait_for(lambda: outbox(tmp_path / "lost") == "", "the outbox to empty")


async def test_a_report_the_ea_could_not_send_before_it_stopped_is_sent_by_the_next_run(
    start_ea: StartEa, nc: NatsClient, executor: Executor, events: list[Message], tmp_path: Path
) -> None:
    first = await start_ea("A1", "restart", EaSettings(reconnect_min_ms=60_000, reconnect_max_ms=60_000))
    first.proxy.drop_next_report()
    result = await order(nc, buy("restart-r", timeout_ms=300))
    assert result.status == "OUTCOME_UNKNOWN"
    await first.process.wait_journal("connection lost", 5)
    assert "restart-r" in outbox(tmp_path / "restart")
    await first.stop()  # the terminal removes the EA before it could reconnect
    second = await start_ea("A1", "restart", EaSettings())
    await wait_for(
        lambda: any(isinstance(e, OpenedEvent) and e.action_id == "restart-r" for e in events),
        "the OPENED from the first run",
    )
    (report,) = [e for e in events if isinstance(e, OpenedEvent) and e.action_id == "restart-r"]
    (ticket,) = await second.positions()
    assert (report.mt_ticket, report.status) == (ticket, "SUCCESS")
    await wait_for(lambda: outbox(tmp_path / "restart") == "", "the outbox to empty")


async def test_a_position_closed_while_the_ea_was_stopped_is_reported_by_the_next_run(
    start_ea: StartEa, nc: NatsClient, executor: Executor, events: list[Message]
) -> None:
    first = await start_ea("A1", "away", EaSettings())
    opened = await order(nc, buy("away-r"))
    assert opened.mt_ticket is not None
    await first.stop()
    # the stop loss hits while no EA runs
    away: dict[str, object] = {"closed_while_away": [{"ticket": int(opened.mt_ticket), "reason": "sl"}]}
    await start_ea("A1", "away", EaSettings(trade_config=away))
    await wait_for(lambda: any(isinstance(e, ClosedEvent) for e in events), "the CLOSED after the restart")
    (closed,) = [e for e in events if isinstance(e, ClosedEvent)]
    assert (closed.position_id, closed.mt_ticket, closed.reason) == (opened.position_id, opened.mt_ticket, "stop_loss")
    assert closed.profit is not None


async def test_a_command_read_before_the_sessions_welcome_is_not_executed(start_ea: StartEa) -> None:
    ea = await start_ea("A1", "early", EaSettings())
    early: dict[str, object] = {
        "type": "OPEN",
        "timestamp": utcnow().isoformat(),
        "accountId": "A1",
        "positionId": "early-p",
    }
    early |= {"actionId": "early-1", "symbol": "EURUSD", "side": "BUY", "volume": 0.1}
    ea.proxy.before_next_welcome(early)
    connections = ea.proxy.connections
    ea.proxy.cut()
    await ea.process.wait_journal("OPEN early-1 read before WELCOME; not executed", 10)
    await wait_for(lambda: ea.proxy.connections > connections and ea.proxy.active == 1, "the next session")
    assert await ea.positions() == {}
    assert [r for r in ea.proxy.reports if r[2] == "early-1"] == []


async def test_a_position_whose_ticket_changed_is_still_named_by_its_identifier(
    start_ea: StartEa, nc: NatsClient, executor: Executor, events: list[Message]
) -> None:
    ea = await start_ea("A1", "reopened", EaSettings())
    opened = await order(nc, buy("reopen-r"))
    assert opened.mt_ticket is not None
    # the broker charges swap by re-opening the position: a new POSITION_TICKET, the same POSITION_IDENTIFIER
    moved = await ea.control("trade.reopen", ticket=int(opened.mt_ticket), swap=-1.25)
    assert moved["ok"]
    assert str(moved["ticket"]) != opened.mt_ticket
    events.clear()

    def snapshot() -> PositionUpdate | None:
        return next((e for e in reversed(events) if isinstance(e, PositionUpdate)), None)

    await wait_for(lambda: snapshot() is not None, "a POSITION_UPDATE after the re-opening")
    update = snapshot()
    assert update is not None
    assert [(p.mt_ticket, p.position_id) for p in update.positions] == [(opened.mt_ticket, opened.position_id)]
    closed = await order(nc, CloseOrder(account_id="A1", position_id=opened.position_id, action_id="reopen-c"))
    assert (closed.status, closed.mt_ticket) == ("FILLED", opened.mt_ticket)
    assert await ea.positions() == {}


async def test_a_close_whose_deal_is_not_in_the_history_yet_says_its_profit_is_estimated(
    start_ea: StartEa, nc: NatsClient, executor: Executor, events: list[Message]
) -> None:
    await start_ea("A1", "late-deal", EaSettings(trade_config={"history_delay_ms": 3000}))
    opened = await order(nc, buy("late-open"))
    closed = await order(nc, CloseOrder(account_id="A1", position_id=opened.position_id, action_id="late-close"))
    assert closed.status == "FILLED"
    await wait_for(lambda: any(isinstance(e, ClosedEvent) for e in events), "the CLOSED report")
    (report,) = [e for e in events if isinstance(e, ClosedEvent)]
    assert report.error_message is not None
    assert "profit estimated" in report.error_message  # the commission is not in it: never passed off as the deal's
