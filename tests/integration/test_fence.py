"""The fence of an order command (``notAfter``) with the real gateway, nats-server, valkey-server and the
simulated terminal: a command whose notAfter passed is refused unsent (the terminal never gets it); an executor
whose send went out past its fence (paused between its lease check and the send) holds its lease again and
sends again, and the order is executed once; one whose order another replica took over and reconciled meanwhile
never reaches the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.obs import metrics
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor import run_actions as act
from hedgebridge.executor.driver import RunningOrder
from hedgebridge.executor.service import Executor
from hedgebridge.protocol import FENCED, DeliveryAck, OpenCommand, OpenMetadata, pack, subjects, unpack, utcnow

from ..conftest import StartSims, executor_config
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


async def test_a_send_paused_until_another_replica_took_the_order_over_never_reaches_the_terminal(
    sims: StartSims,
    executor: Executor,
    nats_server: NatsServer,
    cache_server: ValkeyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The defect the fence closes: A passed its checks, then paused before its command left (a SIGSTOP); its
    lease lapsed, B took the order over and reconciled it from a snapshot (not executed); A's command, sent when
    A woke, must not be executed."""
    [terminal] = await sims(["A1"])
    upkeep = executor._background[0]  # A pauses: its lease is not renewed
    upkeep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await upkeep
    second = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-b"))
    await second.start()
    before = fenced_count()
    send = executor.driver._send
    woken = asyncio.Event()
    held: list[RunningOrder] = []

    async def paused_before_the_send(order: RunningOrder, action: act.Send | act.SendSync) -> list[act.Action]:
        if isinstance(action, act.Send) and not held:
            held.append(order)
            await wait_for(woken.is_set, "A to wake", timeout_s=20)
        return await send(order, action)

    monkeypatch.setattr(executor.driver, "_send", paused_before_the_send)
    try:
        request = pack(buy(action_id="fence-taken", ttl_ms=30_000, timeout_ms=20_000))
        pending = asyncio.create_task(executor.submit(request, time.perf_counter()))

        async def reconciled_by_b() -> bool:
            stored = await second.records.get("fence-taken")
            return stored is not None and stored.record.state == "RECONCILED"

        await wait_for(reconciled_by_b, "B to take the order over and reconcile it", timeout_s=20)
        stored = await second.records.get("fence-taken")
        assert stored is not None
        assert stored.record.result is not None
        assert (stored.record.owner, stored.record.result.status) == ("ex-b", "REJECTED")
        woken.set()  # A's command leaves now, past its fence
        result = await pending
        assert result.status == "IN_FLIGHT"  # A lost the order: its new owner's result stands
        assert held[0].run.lease_lost
        assert fenced_count() == before + 1  # refused unsent by the gateway
        assert "fence-taken" not in terminal.account.received  # the terminal never got it: not executed
        assert terminal.account.positions == {}
    finally:
        woken.set()
        await second.kill()
