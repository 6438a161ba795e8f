"""Stop loss and take profit outside the executor: the simulated trade server's checks and triggers (pure), which
command a MODIFIED report answers at the gateway, its de-duplication id, and the MT5 bridge's SLTP request (both
stops always given)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from types import SimpleNamespace

from hedgebridge.common.terminal_link import rules
from hedgebridge.gateway import reports
from hedgebridge.mt5bridge import translate as tr
from hedgebridge.protocol import (
    ModifiedEvent,
    ModifyCommand,
    ModifyMetadata,
    OpenCommand,
    OpenMetadata,
    retcodes,
)
from hedgebridge.sim import PriceFeed, SimAccount, SimConfig, stops

T = datetime(2026, 12, 1, tzinfo=UTC)


def account(**config: object) -> SimAccount:
    cfg = SimConfig(**config)  # type: ignore[arg-type]
    rng = random.Random(1)
    return SimAccount("A1", cfg, PriceFeed(cfg.symbols, rng), rng)


def opened(sim: SimAccount, side: str = "BUY", **stops_: float) -> int:
    command = OpenCommand(
        timestamp=T,
        account_id="A1",
        position_id="p-1",
        action_id=f"o-{len(sim.positions)}",
        symbol="EURUSD",
        side=side,  # type: ignore[arg-type]
        volume=0.1,
        metadata=OpenMetadata(execution_type="ENTRY", user_id=""),
        **stops_,  # type: ignore[arg-type]
    )
    event = sim.open(command, T)
    assert event.status == "SUCCESS", event.error_code
    return int(event.mt_ticket or 0)


def modify(ticket: int, action: str = "m-1", **stops_: float) -> ModifyCommand:
    return ModifyCommand(
        timestamp=T,
        account_id="A1",
        position_id=f"mt-{ticket}",
        action_id=action,
        mt_ticket=str(ticket),
        metadata=ModifyMetadata(user_id=""),
        **stops_,  # type: ignore[arg-type]
    )


def test_stops_must_lie_on_the_losing_and_winning_sides_beyond_the_stops_level() -> None:
    level = 0.0002
    assert stops.refusal("BUY", 1.0990, 1.1010, 1.1000, 1.1001, level) is None
    assert stops.refusal("BUY", 1.1001, 0, 1.1000, 1.1001, level) == retcodes.INVALID_STOPS  # above the bid
    assert stops.refusal("BUY", 1.09995, 0, 1.1000, 1.1001, level) == retcodes.INVALID_STOPS  # inside the level
    assert stops.refusal("SELL", 1.1010, 1.0990, 1.1000, 1.1001, level) is None  # checked against the ask
    assert stops.refusal("SELL", 0, 1.1002, 1.1000, 1.1001, level) == retcodes.INVALID_STOPS
    assert stops.refusal("SELL", 0, 0, 1.1000, 1.1001, level) is None  # 0 is no stop
    assert stops.hit("BUY", 1.0990, 0, 1.0990, 1.0991) == stops.STOP_LOSS
    assert stops.hit("SELL", 0, 1.0990, 1.0989, 1.0990) == stops.TAKE_PROFIT
    assert stops.hit("BUY", 1.0990, 1.1010, 1.1000, 1.1001) is None


def test_the_simulated_trade_server_modifies_as_mt5_does() -> None:
    sim = account()
    bid, ask = sim.feed.quote("EURUSD")
    ticket = opened(sim, take_profit=round(ask + 0.01, 5))
    kept = sim.modify(modify(ticket, stop_loss=round(bid - 0.01, 5)), T)
    assert (kept.status, kept.stop_loss, kept.take_profit) == ("SUCCESS", round(bid - 0.01, 5), round(ask + 0.01, 5))
    again = sim.modify(modify(ticket, stop_loss=round(bid - 0.01, 5)), T)
    assert again.already_executed  # the same actionId: the first answer, not a second execution
    unchanged = sim.modify(modify(ticket, "m-2", stop_loss=round(bid - 0.01, 5)), T)
    assert (unchanged.status, unchanged.error_code) == ("FAILED", retcodes.NO_CHANGES)
    removed = sim.modify(modify(ticket, "m-3", take_profit=0), T)
    assert (removed.status, removed.take_profit) == ("SUCCESS", 0.0)
    too_near = sim.modify(modify(ticket, "m-4", stop_loss=round(bid - 0.00005, 5)), T)
    assert (too_near.error_code, too_near.stop_loss) == (retcodes.INVALID_STOPS, round(bid - 0.01, 5))
    gone = sim.modify(modify(999, "m-5", stop_loss=1.0), T)
    assert (gone.status, gone.error_code, gone.stop_loss) == ("FAILED", retcodes.POSITION_CLOSED, None)
    (position,) = sim.position_update(T).positions
    assert (position.stop_loss, position.take_profit) == (round(bid - 0.01, 5), None)  # none: absent


def test_an_open_with_a_wrong_stop_is_refused_and_a_reached_stop_closes_its_position() -> None:
    sim = account()
    bid, _ = sim.feed.quote("EURUSD")
    refused = sim.open(
        OpenCommand(
            timestamp=T,
            account_id="A1",
            position_id="p-x",
            action_id="o-x",
            symbol="EURUSD",
            side="SELL",
            volume=0.1,
            metadata=OpenMetadata(execution_type="ENTRY", user_id=""),
            stop_loss=round(bid - 0.01, 5),  # a SELL's stop loss below the price
        ),
        T,
    )
    assert (refused.status, refused.error_code) == ("FAILED", retcodes.INVALID_STOPS)
    ticket = opened(sim, "SELL", stop_loss=round(bid + 0.01, 5))
    assert sim.triggered(T) == []
    sim.feed.mids["EURUSD"] = bid + 0.02  # the market rises through the SELL's stop loss
    (closed,) = sim.triggered(T)
    assert (closed.mt_ticket, closed.reason, closed.status) == (str(ticket), "stop_loss", "SUCCESS")
    assert closed.profit is not None
    assert closed.profit < 0
    assert sim.positions == {}


def test_a_modified_report_answers_a_modify_command_and_has_its_own_report_id() -> None:
    report = ModifiedEvent(
        timestamp=T, account_id="A1", position_id="mt-7", action_id="m-1", mt_ticket="7", status="SUCCESS"
    )
    assert reports.explains(report, ("A1", "MODIFY")) is reports.Verdict.COMMAND
    assert reports.explains(report, ("A1", "CLOSE")) is reports.Verdict.UNSOLICITED
    assert "no MODIFY command with actionId m-1" in reports.refusal(report, reports.Verdict.UNSOLICITED)
    headers = rules.report_headers(report)
    assert headers == {"Nats-Msg-Id": "A1:MODIFIED:m-1:7:SUCCESS:"}


def test_the_bridge_sends_both_stops_keeping_the_one_the_command_leaves_out() -> None:
    position = SimpleNamespace(ticket=80, identifier=70, symbol="EURUSD", sl=1.09, tp=1.12)
    command = modify(70, take_profit=0)
    request = tr.sltp_request(position, tr.stops_after(command, position), digits=5, magic=7)
    assert request == {
        "action": tr.TRADE_ACTION_SLTP,
        "position": 80,  # the current ticket, not the identifier
        "symbol": "EURUSD",
        "sl": 1.09,
        "tp": 0.0,
        "magic": 7,
    }
