"""The monitor against real servers: each alert opens and resolves under the simulator, transitions are kept
in HB_ALERTS, a restarted monitor keeps its open alerts without firing them again, health checks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.servers import NatsServer, ValkeyServer, free_port
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.gateway.server import Gateway
from hedgebridge.monitor import rules
from hedgebridge.monitor.config import MonitorConfig
from hedgebridge.monitor.service import Monitor
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    Alert,
    CloseOrder,
    Conflict,
    ConsistencyStatus,
    HealthReport,
    OpenOrder,
    pack,
    retcodes,
    subjects,
    unpack,
    utcnow,
)
from hedgebridge.sim import SimConfig
from hedgebridge.sim.account import SimFault
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import StartSims, gateway_config
from ..helpers import RawEa, ea_token, order, wait_for
from .test_observability import readyz

StartMonitor = Callable[..., Awaitable[Monitor]]


@pytest.fixture
async def start_monitor(nats_server: NatsServer, cache_server: ValkeyServer) -> AsyncIterator[StartMonitor]:
    started: list[Monitor] = []

    async def start(**overrides: object) -> Monitor:
        values: dict[str, object] = {
            "nats_url": nats_server.url,
            "redis_url": f"{cache_server.url}/0",
            "id": "mon-test",
            "evaluate_ms": 50,
            "report_ms": 200,
            "check_infra_s": 0.2,
            "check_websocket_s": 0.2,
            "check_terminals_s": 0.2,
            "check_coordinator_s": 0.2,
            "recovery_samples": 1,
        }
        values.update(overrides)
        monitor = Monitor(MonitorConfig(**values))  # type: ignore[arg-type]
        await monitor.start()
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        await monitor.stop()


class Transitions:
    """Every ALERT published on NATS, in order."""

    def __init__(self) -> None:
        self.seen: list[Alert] = []

    async def on(self, msg: Msg) -> None:
        self.seen.append(unpack(msg.data, Alert))

    def of(self, rule: str, account: str = "") -> list[str]:
        return [a.state for a in self.seen if a.key == rules.alert_key(rule, account)]


@pytest.fixture
async def transitions(nc: NatsClient) -> Transitions:
    seen = Transitions()
    await nc.subscribe(subjects.ALL_ALERTS, cb=seen.on)
    await nc.flush()
    return seen


async def stored(nc: NatsClient, rule: str, account: str) -> list[Alert]:
    """Every transition HB_ALERTS keeps for the key."""
    js = nc.jetstream()
    sub = await js.subscribe(subjects.alert(rule, account), ordered_consumer=True)
    out: list[Alert] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.3)
            except TimeoutError:
                return out
            out.append(unpack(msg.data, Alert))
    finally:
        await sub.unsubscribe()


def is_open(monitor: Monitor, rule: str, account: str = "") -> bool:
    return rules.alert_key(rule, account) in monitor.alerts.open


async def test_low_margin_opens_and_resolves_and_survives_a_restart(
    sims: StartSims, nc: NatsClient, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    monitor = await start_monitor(margin_level_pct=1_000_000.0)  # any position's margin level is under it
    await sims(["M1"], fill_latency_ms=1, tick_interval_ms=0)
    opened = await order(nc, OpenOrder(account_id="M1", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.status == "FILLED"
    await wait_for(lambda: is_open(monitor, rules.MARGIN_LEVEL, "M1"), "the margin alert to open")
    await wait_for(lambda: transitions.of(rules.MARGIN_LEVEL, "M1") == ["OPEN"], "the OPEN transition on NATS")

    await monitor.stop()
    restarted = await start_monitor(margin_level_pct=1_000_000.0)
    assert is_open(restarted, rules.MARGIN_LEVEL, "M1")  # loaded from HB_ALERTS
    await wait_for(lambda: restarted.latency.samples.get("nats_rtt") is not None, "the restarted monitor's checks")
    # the terminal keeps reporting the low margin level: the open alert is not fired again
    await wait_for(lambda: restarted.events >= 1, "an event after the restart")
    await wait_for(lambda: restarted.picture.terminals.get("M1") is not None, "the terminal in the liveness report")
    assert restarted.events >= 1
    assert transitions.of(rules.MARGIN_LEVEL, "M1") == ["OPEN"]

    closed = await order(nc, CloseOrder(account_id="M1", mt_ticket=opened.mt_ticket))
    assert closed.status == "FILLED"
    await wait_for(lambda: not is_open(restarted, rules.MARGIN_LEVEL, "M1"), "the margin alert to resolve")
    await wait_for(lambda: transitions.of(rules.MARGIN_LEVEL, "M1") == ["OPEN", "RESOLVED"], "RESOLVED on NATS")
    kept = await stored(nc, rules.MARGIN_LEVEL, "M1")
    assert [(a.state, a.seq) for a in kept] == [("OPEN", 1), ("RESOLVED", 2)]


async def test_three_rejected_orders_in_a_row_open_an_alert_a_fill_resolves_it(
    sims: StartSims, nc: NatsClient, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    monitor = await start_monitor()
    [terminal] = await sims(["F1"], fill_latency_ms=1, tick_interval_ms=0)
    for _ in range(3):
        terminal.account.faults.append(SimFault(retcode=retcodes.NO_MONEY))
    for i in range(3):
        result = await order(nc, OpenOrder(account_id="F1", symbol="EURUSD", side="BUY", volume=0.1))
        assert result.status == "REJECTED"
        if i < 2:
            assert not is_open(monitor, rules.CONSECUTIVE_FAILURES, "F1")
    await wait_for(lambda: is_open(monitor, rules.CONSECUTIVE_FAILURES, "F1"), "the failures alert to open")
    alert = monitor.alerts.open[rules.alert_key(rules.CONSECUTIVE_FAILURES, "F1")]
    assert (alert.severity, alert.code) == ("ERROR", "ORDERS_FAILING")
    filled = await order(nc, OpenOrder(account_id="F1", symbol="EURUSD", side="BUY", volume=0.1))
    assert filled.status == "FILLED"
    await wait_for(lambda: not is_open(monitor, rules.CONSECUTIVE_FAILURES, "F1"), "the failures alert to resolve")
    assert monitor.snapshot().order_results == {"FILLED": 1, "REJECTED": 3}
    await wait_for(lambda: transitions.of(rules.CONSECUTIVE_FAILURES, "F1") == ["OPEN", "RESOLVED"], "transitions")


async def test_slow_fills_open_the_execution_latency_alert_fast_ones_resolve_it(
    sims: StartSims, nc: NatsClient, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    monitor = await start_monitor(execution_latency_ms=150.0)
    [terminal] = await sims(["L1"], fill_latency_ms=300, tick_interval_ms=0)
    slow = await order(nc, OpenOrder(account_id="L1", symbol="EURUSD", side="BUY", volume=0.1))
    assert slow.status == "FILLED"
    assert slow.elapsed_ms > 150
    await wait_for(lambda: is_open(monitor, rules.EXECUTION_LATENCY, "L1"), "the latency alert to open")
    terminal.account.config = dataclasses.replace(terminal.account.config, fill_latency_ms=0)
    fast = await order(nc, OpenOrder(account_id="L1", symbol="EURUSD", side="SELL", volume=0.1))
    assert fast.status == "FILLED"
    if fast.elapsed_ms <= 150:  # the machine may be slow; the alert then stays open, which is right
        await wait_for(lambda: not is_open(monitor, rules.EXECUTION_LATENCY, "L1"), "the latency alert to resolve")
        await wait_for(
            lambda: transitions.of(rules.EXECUTION_LATENCY, "L1") == ["OPEN", "RESOLVED"], "the transitions on NATS"
        )
    hops = {h.hop: h for h in monitor.latency.hops()}
    assert hops["execution"].count == 2
    assert hops["execution"].max_ms == pytest.approx(max(slow.elapsed_ms, fast.elapsed_ms), abs=0.01)


async def test_a_dropped_terminal_opens_terminal_down_and_reconnecting_resolves_it(
    gateway: Gateway, ea_url: str, secret: str, executor: object, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    monitor = await start_monitor(downtime_s=0.3)
    terminals = make_terminals(ea_url, ["D1"], lambda a: ea_token(secret, a), rules_sim_config(), seed=1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_terminals(terminals, stop))
    await wait_for(lambda: monitor.picture.terminals.get("D1") is not None, "the terminal to be seen")
    stop.set()
    await task  # the terminal is gone
    await wait_for(lambda: is_open(monitor, rules.TERMINAL_DOWN, "D1"), "the downtime alert to open")
    again = make_terminals(ea_url, ["D1"], lambda a: ea_token(secret, a), rules_sim_config(), seed=2)
    stop = asyncio.Event()
    task = asyncio.create_task(run_terminals(again, stop))
    try:
        await wait_for(lambda: not is_open(monitor, rules.TERMINAL_DOWN, "D1"), "the downtime alert to resolve")
        await wait_for(
            lambda: transitions.of(rules.TERMINAL_DOWN, "D1") == ["OPEN", "RESOLVED"], "the transitions on NATS"
        )
    finally:
        stop.set()
        await task


def rules_sim_config() -> SimConfig:
    return SimConfig(fill_latency_ms=1, tick_interval_ms=0)


async def test_a_terminal_without_events_opens_terminal_silent_an_event_resolves_it(
    sims: StartSims, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    monitor = await start_monitor(silent_s=0.5)
    [terminal] = await sims(["S1"], tick_interval_ms=0, account_update_interval_ms=600_000)
    await wait_for(lambda: is_open(monitor, rules.TERMINAL_SILENT, "S1"), "the silence alert to open")
    assert terminal.connected.is_set()  # heartbeats go on: only events are missing
    await terminal.send(terminal.account.account_update(utcnow()))
    await wait_for(lambda: not is_open(monitor, rules.TERMINAL_SILENT, "S1"), "the silence alert to resolve")
    await wait_for(lambda: transitions.of(rules.TERMINAL_SILENT, "S1")[:2] == ["OPEN", "RESOLVED"], "transitions")


async def test_a_slow_heartbeat_round_trip_opens_websocket_latency(
    nats_server: NatsServer, secret: str, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    gw = Gateway(gateway_config(nats_server.url, secret, id="gw-live", liveness_interval_ms=200))
    await gw.start()
    monitor = await start_monitor(websocket_latency_ms=40.0)
    ea = await RawEa.connect(f"ws://127.0.0.1:{gw.port}/ea", ea_token(secret, "W1"))
    stall = [True]

    async def read_slowly() -> None:
        """Read every frame, with reading paused most of the time: the gateway's pings wait for their pongs."""
        transport = ea.ws.transport
        while True:
            if stall[0]:
                transport.pause_reading()
                await asyncio.sleep(0.15)
                transport.resume_reading()
            with contextlib.suppress(TimeoutError):
                await ea.recv(timeout_s=0.01)

    beats = ea.keep_alive(0.1)
    reading = asyncio.create_task(read_slowly())
    try:
        await wait_for(lambda: is_open(monitor, rules.WEBSOCKET_LATENCY, "W1"), "the websocket latency alert to open")
        alert = monitor.alerts.open[rules.alert_key(rules.WEBSOCKET_LATENCY, "W1")]
        assert alert.value is not None
        assert alert.value > 40
        stall[0] = False
        await wait_for(lambda: not is_open(monitor, rules.WEBSOCKET_LATENCY, "W1"), "the alert to resolve")
        await wait_for(
            lambda: transitions.of(rules.WEBSOCKET_LATENCY, "W1") == ["OPEN", "RESOLVED"], "the transitions on NATS"
        )
        assert monitor.picture.terminals["W1"].last_heartbeat is not None
    finally:
        beats.cancel()
        reading.cancel()
        await ea.close()
        await gw.stop()


async def test_a_slow_action_opens_sync_latency_a_fast_one_resolves_it(
    sims: StartSims, nc: NatsClient, coordinator: Coordinator, start_monitor: StartMonitor, transitions: Transitions
) -> None:
    monitor = await start_monitor(sync_latency_ms=250.0)
    terminals = await sims(["H1", "H2"], fill_latency_ms=400, tick_interval_ms=0)

    async def hedge(action_id: str) -> None:
        request = ActionRequest(
            action_id=action_id,
            kind="HEDGE_ENTRY",
            legs=[
                ActionLeg(account_id="H1", symbol="EURUSD", side="BUY", volume=0.1),
                ActionLeg(account_id="H2", symbol="EURUSD", side="SELL", volume=0.1),
            ],
        )
        await nc.request(subjects.ACTION_REQUEST, pack(request), timeout=30)

    await hedge("slow-1")
    await wait_for(lambda: is_open(monitor, rules.SYNC_LATENCY), "the sync latency alert to open")
    alert = monitor.alerts.open[rules.alert_key(rules.SYNC_LATENCY)]
    assert alert.value is not None
    assert alert.value >= 400
    for terminal in terminals:
        terminal.account.config = dataclasses.replace(terminal.account.config, fill_latency_ms=0)
    await hedge("fast-1")
    await wait_for(lambda: len(monitor.latency.samples["action"]) == 2, "the second action's sample")
    assert monitor.snapshot().action_outcomes == {"COMPLETED": 2}
    if monitor.latency.samples["action"][-1] <= 250:  # a slow machine keeps it open, which is right
        await wait_for(lambda: not is_open(monitor, rules.SYNC_LATENCY), "the sync latency alert to resolve")
        await wait_for(lambda: transitions.of(rules.SYNC_LATENCY) == ["OPEN", "RESOLVED"], "the transitions on NATS")


async def test_health_checks_are_published_and_named_in_readyz(
    gateway: Gateway, executor: object, cache_server: ValkeyServer, start_monitor: StartMonitor, nc: NatsClient
) -> None:
    port = free_port()
    monitor = await start_monitor(
        gateway_url=f"ws://127.0.0.1:{gateway.port}", health_host="127.0.0.1", health_port=port, ready_on_checks=True
    )
    reports: list[HealthReport] = []

    async def on_health(msg: Msg) -> None:
        reports.append(unpack(msg.data, HealthReport))

    await nc.subscribe(subjects.health("monitor"), cb=on_health)
    await wait_for(lambda: set(monitor.check_names) <= set(monitor.checks), "every check to run once")
    assert monitor.checks["nats"].ok
    assert monitor.checks["cache"].ok
    assert monitor.checks["websocket"].ok, monitor.checks["websocket"].detail
    assert monitor.checks["websocket"].latency_ms is not None
    assert not monitor.checks["coordinator"].ok  # no coordinator runs in this test
    assert monitor.checks["coordinator"].code == "COORDINATOR_UNAVAILABLE"

    last: list[object] = []

    async def failing(names: list[str]) -> bool:
        status, ready = await readyz(port)
        last[:] = [status, ready]
        return ready["failed"] == names and status == 503

    await wait_for(lambda: failing(["coordinator"]), lambda: f"/readyz to name the coordinator: {last}")
    await wait_for(lambda: any(not r.ready for r in reports), "a HEALTH report on NATS")
    cache_server.stop()
    await wait_for(lambda: failing(["cache", "coordinator"]), "/readyz to name the cache too")
    assert monitor.checks["cache"].code == "CACHE_UNREACHABLE"
    cache_server.start()
    await wait_for(lambda: failing(["coordinator"]), "the cache check to pass again", timeout_s=15)


async def test_readiness_without_the_system_checks_is_the_monitors_own(
    executor: object, start_monitor: StartMonitor
) -> None:
    port = free_port()
    monitor = await start_monitor(redis_url="", health_host="127.0.0.1", health_port=port)
    assert "cache" not in monitor.check_names  # no cache URL: no cache check
    status, ready = await readyz(port)
    assert (status, ready["failed"]) == (200, [])
    assert set(cast(dict[str, str], ready["checks"])) == {"nats", "jetstream", "subscriptions", "alert_store"}


async def test_a_transition_made_while_nats_is_down_is_stored_once_it_is_back(
    gateway: Gateway, ea_url: str, secret: str, executor: object, nats_server: NatsServer, start_monitor: StartMonitor
) -> None:
    monitor = await start_monitor(downtime_s=1.0)
    terminals = make_terminals(ea_url, ["N1"], lambda a: ea_token(secret, a), rules_sim_config(), seed=1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_terminals(terminals, stop))
    await wait_for(lambda: "N1" in monitor.picture.terminals, "the terminal to be seen")
    stop.set()
    await task
    await wait_for(lambda: not monitor.picture.terminals["N1"].connected, "the disconnect to be seen")
    nats_server.kill()
    await wait_for(lambda: is_open(monitor, rules.TERMINAL_DOWN, "N1"), "the downtime alert to open")
    ready = await monitor.obs.health.readiness()
    assert ready["alert_store"] == "1 alert transitions not stored yet"
    nats_server.start()
    await wait_for(lambda: monitor._pending == [], "the transition to be stored", timeout_s=20)
    assert (await monitor.obs.health.readiness())["alert_store"] == "ok"
    client = await nats.connect(nats_server.url)
    try:
        kept = await stored(client, rules.TERMINAL_DOWN, "N1")
    finally:
        await client.close()
    assert [(a.state, a.seq) for a in kept] == [("OPEN", 1)]


async def test_unreadable_events_and_conflicts_fail_their_checks(
    nats_server: NatsServer, start_monitor: StartMonitor, nc: NatsClient
) -> None:
    monitor = await start_monitor(redis_url="")
    await wait_for(lambda: "integrity" in monitor.checks, "the first integrity check")
    assert monitor.checks["integrity"].ok
    await nc.publish(subjects.event("X1", "PRICE"), b"\x81\xa4type\xa5PRICE")  # a PRICE without its fields
    await wait_for(lambda: not monitor.checks["integrity"].ok, "the integrity check to fail")
    assert monitor.checks["integrity"].code == "UNREADABLE_EVENT"
    assert monitor.checks["integrity"].detail == "1 unreadable events since the last check"
    await wait_for(lambda: monitor.checks["integrity"].ok, "the integrity check to pass again")

    conflict = Conflict(kind="MISSING_POSITION", account_id="X1", mt_ticket="9", detected_at=utcnow())
    await nc.publish(subjects.CONFLICTS, pack(conflict))
    status = ConsistencyStatus(
        timestamp=utcnow(), consistent=False, accounts_checked=1, open_conflicts=1, conflicts=[conflict]
    )
    await nc.publish(subjects.CONSISTENCY_STATUS, pack(status))
    await wait_for(lambda: not monitor.checks["position_sync"].ok, "the position sync check to fail")
    assert monitor.checks["position_sync"].code == "POSITION_CONFLICT"
    snapshot = monitor.snapshot()
    assert (snapshot.conflicts, snapshot.open_conflicts) == (1, 1)
    fixed = msgspec.structs.replace(status, consistent=True, open_conflicts=0, conflicts=[])
    await nc.publish(subjects.CONSISTENCY_STATUS, pack(fixed))
    await wait_for(lambda: monitor.checks["position_sync"].ok, "the position sync check to pass again")
