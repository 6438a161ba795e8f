"""The coordinator with the real executor, gateway, nats-server, valkey-server and simulated terminals:
hedge actions and their policies, exactly-once actions, exits, close-all, the action sync channel,
consistency conflicts, and an action taken over after its coordinator died."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from datetime import timedelta

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from hedgebridge.common import streams
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    ActionState,
    BookEntry,
    Conflict,
    ConsistencyStatus,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)
from hedgebridge.sim.account import SimFault
from hedgebridge.sim.terminal import SimTerminal

from ..conftest import StartSims
from ..helpers import wait_for
from .conftest import StartCoordinator

pytestmark = pytest.mark.integration


async def act(nc: NatsClient, request: ActionRequest, timeout_s: float = 30.0) -> ActionState:
    """The action's final state. A coordinator that just started may not be known on this connection yet ("no
    responders" while its subscription's interest travels): asked again until a deadline."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            reply = await nc.request(subjects.ACTION_REQUEST, pack(request), timeout=timeout_s)
        except NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await nc.flush()
            continue
        return unpack(reply.data, ActionState)


def hedge(action_id: str, policy: str = "COMPENSATE", a: str = "A", b: str = "B") -> ActionRequest:
    return ActionRequest(
        action_id=action_id,
        kind="HEDGE_ENTRY",
        policy=policy,  # type: ignore[arg-type]
        user_id="u1",
        legs=[
            ActionLeg(account_id=a, symbol="EURUSD", side="BUY", volume=1.0),
            ActionLeg(account_id=b, symbol="EURUSD", side="SELL", volume=1.0),
        ],
    )


class Listener:
    """A subscribed system: every ActionState published on the action sync channel, in arrival order."""

    def __init__(self) -> None:
        self.states: list[ActionState] = []

    async def on_state(self, msg: Msg) -> None:
        self.states.append(unpack(msg.data, ActionState))

    def of(self, action_id: str) -> list[ActionState]:
        return [s for s in self.states if s.action_id == action_id]

    def final(self, action_id: str) -> ActionState | None:
        done = [s for s in self.of(action_id) if s.state in ("COMPLETED", "PARTIAL", "COMPENSATED", "FAILED")]
        return done[-1] if done else None


async def listen(nc: NatsClient) -> Listener:
    listener = Listener()
    await nc.subscribe(subjects.ALL_ACTIONS, cb=listener.on_state)
    await nc.flush()
    return listener


def commands(terminal: SimTerminal) -> Counter[str]:
    return Counter(terminal.account.received)


# --- hedge entries and policies ---------------------------------------------------------------------------


async def test_hedge_entry_fills_every_leg(sims: StartSims, coordinator: Coordinator, nc: NatsClient) -> None:
    a, b = await sims(["A", "B"], fill_latency_ms=5, tick_interval_ms=0)
    state = await act(nc, hedge("h-1"))
    assert (state.state, state.code, state.duplicate) == ("COMPLETED", None, False)
    assert [(leg.account_id, leg.side, leg.status) for leg in state.legs] == [
        ("A", "BUY", "FILLED"),
        ("B", "SELL", "FILLED"),
    ]
    tickets = [leg.mt_ticket for leg in state.legs]
    assert all(tickets)
    assert [str(t) for t in a.account.positions] == [tickets[0]]
    assert [str(t) for t in b.account.positions] == [tickets[1]]
    assert commands(a) == {"h-1-E0": 1}
    assert commands(b) == {"h-1-E1": 1}


async def test_a_rejected_leg_is_compensated(sims: StartSims, coordinator: Coordinator, nc: NatsClient) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    (b,) = await sims(["B"], fill_latency_ms=5, tick_interval_ms=0, reject_rate=1.0)
    state = await act(nc, hedge("h-2", "COMPENSATE"))
    assert (state.state, state.code) == ("COMPENSATED", errors.LEG_FAILED)
    by_order = {leg.order_action_id: leg for leg in state.legs}
    assert by_order["h-2-E0"].status == "FILLED"
    assert by_order["h-2-E1"].status == "REJECTED"
    assert by_order["h-2-C0"].status == "FILLED"
    assert by_order["h-2-C0"].mt_ticket == by_order["h-2-E0"].mt_ticket
    assert a.account.positions == {}
    assert b.account.positions == {}
    assert commands(a) == {"h-2-E0": 1, "h-2-C0": 1}


async def test_a_rejected_leg_with_keep_leaves_the_filled_leg_open(
    sims: StartSims, coordinator: Coordinator, nc: NatsClient
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    await sims(["B"], fill_latency_ms=5, tick_interval_ms=0, reject_rate=1.0)
    state = await act(nc, hedge("h-3", "KEEP"))
    assert (state.state, state.code) == ("PARTIAL", errors.LEG_FAILED)
    assert [leg.status for leg in state.legs] == ["FILLED", "REJECTED"]
    assert [str(t) for t in a.account.positions] == [state.legs[0].mt_ticket]
    assert commands(a) == {"h-3-E0": 1}


async def test_an_offline_account_expires_its_leg_and_the_policy_applies(
    sims: StartSims, start_coordinator: StartCoordinator, nc: NatsClient
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    await start_coordinator(leg_ttl_ms=200)
    state = await act(nc, hedge("h-4", "COMPENSATE", b="OFFLINE"))
    assert state.state == "COMPENSATED"
    by_order = {leg.order_action_id: leg for leg in state.legs}
    assert (by_order["h-4-E1"].status, by_order["h-4-E1"].code) == ("EXPIRED", errors.EXPIRED)
    assert by_order["h-4-C0"].status == "FILLED"
    assert a.account.positions == {}


async def test_an_invalid_request_is_rejected_with_the_field(coordinator: Coordinator, nc: NatsClient) -> None:
    raw = {"type": "ACTION", "actionId": "bad-1", "kind": "HEDGE_ENTRY", "legs": [{"accountId": "A"}]}
    import msgspec

    reply = await nc.request(subjects.ACTION_REQUEST, msgspec.msgpack.encode(raw), timeout=10)
    state = unpack(reply.data, ActionState)
    assert (state.state, state.code, state.action_id) == ("REJECTED", errors.ACTION_INVALID, "bad-1")
    assert "legs[0]" in state.message
    duplicate_legs = ActionRequest(
        action_id="bad-2",
        kind="HEDGE_ENTRY",
        legs=[ActionLeg(account_id="A", symbol="EURUSD", side="BUY", volume=1.0)] * 2,
    )
    state = await act(nc, duplicate_legs)
    assert (state.state, state.code) == ("REJECTED", errors.ACTION_INVALID)
    assert "legs[1]" in state.message


# --- exactly once ------------------------------------------------------------------------------------------


async def test_a_duplicate_submit_returns_the_first_state(
    sims: StartSims, coordinator: Coordinator, nc: NatsClient
) -> None:
    a, b = await sims(["A", "B"], fill_latency_ms=300, tick_interval_ms=0)
    first, second = await asyncio.gather(act(nc, hedge("h-5")), act(nc, hedge("h-5")))
    assert first.state == second.state == "COMPLETED"
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    assert first.legs == second.legs
    assert first.seq == second.seq
    third = await act(nc, hedge("h-5"))
    assert third.duplicate
    assert (third.seq, third.legs) == (first.seq, first.legs)
    assert commands(a) == {"h-5-E0": 1}
    assert commands(b) == {"h-5-E1": 1}
    assert len(a.account.positions) == len(b.account.positions) == 1
    mismatch = await act(nc, hedge("h-5", "KEEP"))
    assert (mismatch.state, mismatch.code) == ("REJECTED", errors.DUPLICATE_MISMATCH)


# --- exit and close-all ------------------------------------------------------------------------------------


async def test_exit_closes_every_leg(
    sims: StartSims, coordinator: Coordinator, executor: Executor, nc: NatsClient
) -> None:
    a, b = await sims(["A", "B"], fill_latency_ms=5, tick_interval_ms=0)
    entry = await act(nc, hedge("h-6"))
    assert entry.state == "COMPLETED"
    book = executor.state.book

    async def booked() -> int:
        found = 0
        for leg in entry.legs:
            try:
                await book.get(f"{leg.account_id}.{leg.mt_ticket}")
                found += 1
            except Exception:
                pass
        return found

    async def in_book() -> bool:
        return await booked() == 2

    await wait_for(in_book, "both legs in the book")
    state = await act(nc, ActionRequest(action_id="x-6", kind="EXIT", target_action_id="h-6"))
    assert state.state == "COMPLETED"
    assert [(leg.role, leg.mt_ticket, leg.status) for leg in state.legs] == [
        ("EXIT", entry.legs[0].mt_ticket, "FILLED"),
        ("EXIT", entry.legs[1].mt_ticket, "FILLED"),
    ]
    assert a.account.positions == b.account.positions == {}

    async def out_of_book() -> bool:
        return await booked() == 0

    await wait_for(out_of_book, "both legs out of the book")
    unknown = await act(nc, ActionRequest(action_id="x-7", kind="EXIT", target_action_id="nope"))
    assert (unknown.state, unknown.code) == ("REJECTED", errors.ACTION_NOT_FOUND)
    nothing_open = await act(nc, ActionRequest(action_id="x-8", kind="EXIT", target_action_id="x-6"))
    assert (nothing_open.state, nothing_open.code) == ("REJECTED", errors.ACTION_INVALID)


async def test_close_all_closes_every_position_of_the_accounts(
    sims: StartSims, coordinator: Coordinator, nc: NatsClient
) -> None:
    a, b, c = await sims(["A", "B", "C"], fill_latency_ms=5, tick_interval_ms=0)
    assert (await act(nc, hedge("h-8"))).state == "COMPLETED"
    assert (await act(nc, hedge("h-9", a="A", b="C"))).state == "COMPLETED"
    a.account.open_outside("GBPUSD", "BUY", 0.3, utcnow())  # not opened through the system: closed too
    await a.send(a.account.position_update(utcnow()))

    async def cached() -> bool:
        positions = await coordinator.cache.positions("A")
        return positions is not None and len(positions) == 3

    await wait_for(cached, "A's three positions in the cache")
    state = await act(nc, ActionRequest(action_id="c-1", kind="CLOSE_ALL", account_ids=["A", "B"]))
    assert state.state == "COMPLETED"
    assert len(state.legs) == 4
    assert {leg.status for leg in state.legs} == {"FILLED"}
    assert a.account.positions == b.account.positions == {}
    assert len(c.account.positions) == 1  # not named: untouched


async def test_close_all_never_decides_from_an_incomplete_cache(
    sims: StartSims, coordinator: Coordinator, nc: NatsClient
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    state = await act(nc, ActionRequest(action_id="c-2", kind="CLOSE_ALL", account_ids=["A", "NEVER-SEEN"]))
    assert (state.state, state.code) == ("REJECTED", errors.CACHE_INCOMPLETE)
    assert "NEVER-SEEN" in state.message
    assert commands(a) == Counter()


async def test_close_all_asks_for_a_snapshot_after_a_cache_flush(
    sims: StartSims, coordinator: Coordinator, cache_server: ValkeyServer, nc: NatsClient
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    a.account.open_outside("EURUSD", "SELL", 0.2, utcnow())
    import redis.asyncio as aioredis

    client = aioredis.from_url(f"{cache_server.url}/0")
    try:
        await client.flushall()
    finally:
        await client.aclose()
    state = await act(nc, ActionRequest(action_id="c-3", kind="CLOSE_ALL", account_ids=["A"]))
    assert state.state == "COMPLETED"
    assert len(state.legs) == 1
    assert a.account.positions == {}


# --- action sync -------------------------------------------------------------------------------------------


async def test_every_subscriber_sees_every_state_in_order(
    sims: StartSims, coordinator: Coordinator, nats_server: NatsServer, nc: NatsClient
) -> None:
    await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    await sims(["B"], fill_latency_ms=5, tick_interval_ms=0, reject_rate=1.0)
    clients = [await nats.connect(nats_server.url) for _ in range(3)]
    try:
        listeners = [await listen(client) for client in clients]
        final = await act(nc, hedge("h-10", "COMPENSATE"))
        assert final.state == "COMPENSATED"

        def all_seen() -> bool:
            return all(any(s.seq == final.seq for s in listener.of("h-10")) for listener in listeners)

        await wait_for(all_seen, "every subscriber to see the final state")
        for listener in listeners:
            seen = listener.of("h-10")
            assert [s.seq for s in seen] == list(range(1, final.seq + 1))
            names = [s.state for s in seen]
            assert names[0] == "ACCEPTED"
            assert names[-1] == "COMPENSATED"
            assert "RUNNING" in names
            assert "COMPENSATING" in names
            assert seen[-1] == final
    finally:
        for client in clients:
            await client.close()


async def test_the_action_states_are_kept_in_jetstream(
    sims: StartSims, coordinator: Coordinator, nc: NatsClient
) -> None:
    await sims(["A", "B"], fill_latency_ms=5, tick_interval_ms=0)
    final = await act(nc, hedge("h-11"))
    js = nc.jetstream()
    sub = await js.subscribe(subjects.action("h-11"), ordered_consumer=True)
    kept = []
    for _ in range(final.seq):
        msg = await sub.next_msg(timeout=5)
        kept.append(unpack(msg.data, ActionState).seq)
    assert kept == list(range(1, final.seq + 1))
    await sub.unsubscribe()


# --- consistency -------------------------------------------------------------------------------------------


class Conflicts:
    def __init__(self) -> None:
        self.conflicts: list[Conflict] = []
        self.statuses: list[ConsistencyStatus] = []

    async def on_conflict(self, msg: Msg) -> None:
        self.conflicts.append(unpack(msg.data, Conflict))

    async def on_status(self, msg: Msg) -> None:
        self.statuses.append(unpack(msg.data, ConsistencyStatus))


async def watch_conflicts(nc: NatsClient) -> Conflicts:
    seen = Conflicts()
    await nc.subscribe(subjects.CONFLICTS, cb=seen.on_conflict)
    await nc.subscribe(subjects.CONSISTENCY_STATUS, cb=seen.on_status)
    await nc.flush()
    return seen


@pytest.mark.parametrize("resolution", ["REPORT", "CLOSE_ORPHANS"])
async def test_a_position_opened_outside_the_system_is_an_orphan(
    sims: StartSims, start_coordinator: StartCoordinator, nc: NatsClient, resolution: str
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    await start_coordinator(conflict_resolution=resolution)
    seen = await watch_conflicts(nc)
    assert (await act(nc, hedge("h-12", b="A"))).state == "COMPLETED"  # two booked positions: no conflict
    ticket = a.account.open_outside("GBPUSD", "BUY", 0.7, utcnow() - timedelta(minutes=5))
    await a.send(a.account.position_update(utcnow()))
    await wait_for(lambda: bool(seen.conflicts), "a conflict")
    (conflict,) = seen.conflicts
    assert (conflict.kind, conflict.account_id, conflict.mt_ticket) == ("ORPHAN_POSITION", "A", str(ticket))
    assert conflict.reported_volume == 0.7
    if resolution == "REPORT":
        assert conflict.resolution == "REPORTED"
        assert ticket in a.account.positions
        await wait_for(
            lambda: any(s.open_conflicts == 1 and not s.consistent for s in seen.statuses), "an inconsistent status"
        )
    else:
        assert conflict.resolution == "CLOSED"
        assert ticket not in a.account.positions
        assert len(a.account.positions) == 2  # the system's own positions stay
        await wait_for(
            lambda: bool(seen.statuses) and seen.statuses[-1].consistent, "the status to be consistent again"
        )


async def test_a_young_position_is_not_an_orphan(
    sims: StartSims, start_coordinator: StartCoordinator, nc: NatsClient
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    coordinator = await start_coordinator(orphan_grace_ms=60_000)
    seen = await watch_conflicts(nc)
    passes = coordinator.passes
    a.account.open_outside("GBPUSD", "BUY", 0.7, utcnow())
    await a.send(a.account.position_update(utcnow()))
    await wait_for(lambda: coordinator.passes > passes and bool(seen.statuses), "a consistency pass")
    assert seen.conflicts == []
    assert seen.statuses[-1].consistent


@pytest.mark.parametrize("resolution", ["REPORT", "DROP_MISSING"])
async def test_a_book_entry_the_terminal_does_not_have_is_missing(
    sims: StartSims, start_coordinator: StartCoordinator, nc: NatsClient, resolution: str
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    coordinator = await start_coordinator(conflict_resolution=resolution)
    seen = await watch_conflicts(nc)
    state = await streams.ensure(nc)
    ghost = BookEntry(
        account_id="A",
        mt_ticket="999",
        position_id="p-ghost",
        symbol="EURUSD",
        side="BUY",
        volume=1.0,
        open_price=1.1,
        opened_at=utcnow() - timedelta(minutes=5),
    )
    await state.book.put("A.999", pack(ghost))
    await a.send(a.account.position_update(utcnow()))
    await wait_for(lambda: bool(seen.conflicts), "a conflict")
    (conflict,) = seen.conflicts
    assert (conflict.kind, conflict.account_id, conflict.mt_ticket) == ("MISSING_POSITION", "A", "999")
    assert conflict.expected_volume == 1.0
    if resolution == "REPORT":
        assert conflict.resolution == "REPORTED"
        assert (await state.book.get("A.999")).value is not None
        assert [c.mt_ticket for c in coordinator.open_conflicts] == ["999"]
    else:
        assert conflict.resolution == "DROPPED"
        await a.send(a.account.position_update(utcnow()))
        await wait_for(lambda: coordinator.open_conflicts == [], "the conflict to be resolved")
        await wait_for(lambda: seen.statuses[-1].consistent, "a consistent status")


async def test_a_full_pass_asks_every_terminal_for_a_snapshot(
    sims: StartSims, coordinator: Coordinator, nc: NatsClient
) -> None:
    (a,) = await sims(["A"], fill_latency_ms=5, tick_interval_ms=0)
    seen = await watch_conflicts(nc)
    await a.send(a.account.position_update(utcnow()))
    await wait_for(lambda: "A" in coordinator._snapshots, "A's snapshot")
    a.account.open_outside("USDJPY", "SELL", 0.1, utcnow() - timedelta(minutes=5))  # no report of its own
    await coordinator.reconcile_all()
    await wait_for(lambda: any(c.kind == "ORPHAN_POSITION" for c in seen.conflicts), "the orphan, after SYNC")


# --- a coordinator dies mid-action -------------------------------------------------------------------------


async def test_an_action_is_taken_over_when_its_coordinator_dies(
    sims: StartSims,
    start_coordinator: StartCoordinator,
    nats_server: NatsServer,
    cache_server: ValkeyServer,
    nc: NatsClient,
) -> None:
    a, b = await sims(["A", "B"], fill_latency_ms=1500, tick_interval_ms=0)
    listener = await listen(nc)
    env = dict(os.environ)
    env.update(
        HEDGEBRIDGE_NATS_URL=nats_server.url,
        HEDGEBRIDGE_REDIS_URL=f"{cache_server.url}/0",
        HEDGEBRIDGE_COORDINATOR_ID="co-doomed",
        HEDGEBRIDGE_COORDINATOR_LEASE_MS="1000",
        HEDGEBRIDGE_COORDINATOR_LEG_TIMEOUT_MS="5000",
        HEDGEBRIDGE_LOG_FORMAT="text",
    )
    doomed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hedgebridge.coordinator",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:

        async def serving() -> bool:
            try:
                await nc.request(subjects.ACTION_REQUEST, b"\xc1", timeout=0.5)
            except Exception:
                return False
            return True

        await wait_for(serving, "the coordinator process to serve requests", timeout_s=20)
        pending = asyncio.create_task(act(nc, hedge("h-13"), timeout_s=60))
        await wait_for(
            lambda: any(s.state == "RUNNING" for s in listener.of("h-13")), "the action to be running", timeout_s=10
        )
        doomed.kill()  # SIGKILL: no chance to hand anything over
        await doomed.wait()
        assert not pending.done()  # the caller's coordinator died before answering
        pending.cancel()
        survivor = await start_coordinator(id="co-survivor", lease_ms=1000)
        await wait_for(lambda: listener.final("h-13") is not None, "the action to become final", timeout_s=20)
        final = listener.final("h-13")
        assert final is not None
        assert final.state == "COMPLETED"
        seqs = [s.seq for s in listener.of("h-13")]
        assert seqs == sorted(set(seqs))  # no state published twice, none out of order
        assert commands(a) == {"h-13-E0": 1}
        assert commands(b) == {"h-13-E1": 1}
        assert len(a.account.positions) == len(b.account.positions) == 1
        again = await act(nc, hedge("h-13"))
        assert again.duplicate
        assert (again.state, again.seq) == ("COMPLETED", final.seq)
        assert survivor.id == "co-survivor"
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()


async def test_a_leg_whose_outcome_is_unknown_settles_once_reconciled(
    sims: StartSims, start_coordinator: StartCoordinator, nc: NatsClient
) -> None:
    a, _ = await sims(["A", "B"], fill_latency_ms=5, tick_interval_ms=0)
    a.account.faults.append(SimFault(report=False))  # A fills, but its OPENED never leaves the terminal
    await start_coordinator(leg_timeout_ms=1000)
    listener = await listen(nc)
    state = await act(nc, hedge("h-14"))
    assert state.state == "COMPLETED"
    names = [s.state for s in listener.of("h-14")]
    assert "UNSETTLED" in names
    assert names.index("UNSETTLED") < names.index("COMPLETED")
    assert [leg.status for leg in state.legs] == ["FILLED", "FILLED"]
    assert state.legs[0].mt_ticket == str(next(iter(a.account.positions)))
    assert commands(a) == {"h-14-E0": 1}


async def test_a_partial_fill_completes_flagged(sims: StartSims, coordinator: Coordinator, nc: NatsClient) -> None:
    a, _ = await sims(["A", "B"], fill_latency_ms=5, tick_interval_ms=0)
    a.account.faults.append(SimFault(fill_ratio=0.5))
    state = await act(nc, hedge("h-15"))
    assert (state.state, state.code) == ("COMPLETED", errors.PARTIAL_FILL)
    assert (state.legs[0].status, state.legs[0].filled_volume) == ("PARTIALLY_FILLED", 0.5)
    assert state.legs[1].status == "FILLED"


async def test_the_action_sync_fan_out_measurement(nats_server: NatsServer) -> None:
    from hedgebridge.cli.bench_sync import measure_action_sync

    figures = await measure_action_sync(nats_server.url, n_subscribers=5, n_actions=10)
    assert (len(figures.measured), figures.measured_missing, figures.baseline_missing) == (50, 0, 0)
    assert len(figures.baseline) == 50
    assert min(figures.measured) > 0
    assert min(figures.baseline) > 0
