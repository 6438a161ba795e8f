"""The fence of an order command (``notAfter``) with the real gateway, nats-server, valkey-server and the
simulated terminal: a command whose notAfter passed is refused unsent (the terminal never gets it); an executor
whose send went out past its fence (paused between its lease check and the send) holds its lease again and
sends again, and the order is executed once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.obs import metrics
from hedgebridge.executor import run_actions as act
from hedgebridge.executor.driver import RunningOrder
from hedgebridge.executor.service import Executor
from hedgebridge.protocol import FENCED, DeliveryAck, OpenCommand, OpenMetadata, pack, subjects, unpack, utcnow

from ..conftest import StartSims
from ..helpers import order, wait_for
from .test_orders import buy

pytestmark = pytest.mark.integration


def fenced_count() -> float:
    return float(metrics.COMMANDS_FENCED.labels("OPEN")._value.get())


def command(action_id: str, **fields: object) -> OpenCommand:
    return OpenCommand(
        timestamp=utcnow(),
        account_id="A1",
        position_id=f"p-{action_id}",
        action_id=action_id,
        symbol="EURUSD",
        side="BUY",
        volume=1.0,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u1"),
        **fields,  # type: ignore[arg-type]
    )


async def test_a_command_past_its_not_after_is_refused_unsent_and_one_in_time_is_executed(
    sims: StartSims, nc: NatsClient
) -> None:
    [terminal] = await sims(["A1"])
    before = fenced_count()
    late = command("fence-late", not_after=utcnow() - timedelta(milliseconds=1))
    reply = await nc.request(subjects.command("A1"), pack(late), timeout=5)
    ack = unpack(reply.data, DeliveryAck)
    assert (ack.delivered, ack.uncertain, ack.reason) == (False, False, FENCED)
    assert fenced_count() == before + 1
    in_time = command("fence-in-time", not_after=utcnow() + timedelta(seconds=30))
    reply = await nc.request(subjects.command("A1"), pack(in_time), timeout=5)
    assert unpack(reply.data, DeliveryAck).delivered
    await wait_for(lambda: "fence-in-time" in terminal.account.received, "the command in time to be executed")
    assert "fence-late" not in terminal.account.received  # commands are handled in order: it never came
    assert [p.action_id for p in terminal.account.positions.values()] == ["fence-in-time"]


async def test_an_executor_whose_send_went_out_past_its_fence_holds_its_lease_again_and_sends_again(
    sims: StartSims, nc: NatsClient, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    [terminal] = await sims(["A1"])
    before = fenced_count()
    send = executor.driver._send
    late: list[OpenCommand] = []

    async def paused_before_the_first_send(order: RunningOrder, action: act.Send | act.SendSync) -> list[act.Action]:
        """The first send leaves only once its notAfter passed (the replica was paused before it)."""
        if isinstance(action, act.Send) and not late:
            assert isinstance(action.command, OpenCommand)
            fence = action.command.not_after
            assert fence is not None  # every order command carries its fence
            late.append(action.command)
            await wait_for(lambda: utcnow() > fence, "the command's notAfter to pass", timeout_s=10)
        return await send(order, action)

    monkeypatch.setattr(executor.driver, "_send", paused_before_the_first_send)
    result = await order(nc, buy(action_id="fence-resent", ttl_ms=30_000, timeout_ms=20_000), timeout_s=30)
    assert result.status == "FILLED", result
    assert len(late) == 1
    assert fenced_count() == before + 1  # the late send was refused unsent
    assert terminal.account.received.count("fence-resent") == 1  # the held resend alone reached it
    assert [p.action_id for p in terminal.account.positions.values()] == ["fence-resent"]
