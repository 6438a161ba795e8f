"""Health endpoints, metrics, traces and profiles, against real servers (nats-server, valkey) and services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from hedgebridge.common import auth, profiles
from hedgebridge.common.config import ConfigError
from hedgebridge.common.obs import tracing
from hedgebridge.common.servers import NatsServer, ValkeyServer, free_port
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.config import from_env as gateway_from_env
from hedgebridge.gateway.server import Gateway
from hedgebridge.monitor.config import MonitorConfig
from hedgebridge.monitor.service import Monitor
from hedgebridge.protocol import (
    CloseOrder,
    GatewayLiveness,
    OpenedEvent,
    OpenOrder,
    Welcome,
    encode_frame,
    pack,
    subjects,
    subprotocol,
    unpack,
    utcnow,
)
from hedgebridge.protocol.client import ClientRequest
from hedgebridge.protocol.messages import ActionLeg, ActionRequest, OrderResult, PriceTick
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals

from ..conftest import StartSims, executor_config, gateway_config
from ..helpers import RawEa, ea_token, http_get, order, wait_for
from ..mt5.terminals import EaBuild, EaTerminals
from .conftest import coordinator_config

pytestmark = pytest.mark.integration


# --- HTTP and exposition helpers ---------------------------------------------------------------------------


async def readyz(port: int) -> tuple[int, dict[str, object]]:
    status, body = await http_get(port, "/readyz")
    answer: dict[str, object] = json.loads(body)
    return status, answer


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    status, body = await http_get(port, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


# --- fixtures: services with their health ports ------------------------------------------------------------


@pytest.fixture
def health_port() -> int:
    return free_port()


@pytest.fixture
async def executor(nats_server: NatsServer, cache_server: ValkeyServer, health_port: int) -> AsyncIterator[Executor]:
    """The suite's executor, with its health endpoints on ``health_port``."""
    ex = Executor(
        executor_config(nats_server.url, f"{cache_server.url}/0", health_host="127.0.0.1", health_port=health_port)
    )
    await ex.start()
    yield ex
    await ex.stop()


@pytest.fixture
async def gateway(nats_server: NatsServer, secret: str) -> AsyncIterator[Gateway]:
    """The suite's gateway, pinging its terminals every 200 ms (their WebSocket round trips are measured)."""
    gw = Gateway(gateway_config(nats_server.url, secret, id="gw-test-1", liveness_interval_ms=200))
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
def span_exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure("test", exporter=exporter)
    yield exporter
    tracing.shutdown()


def open_request(account: str, action_id: str | None = None) -> OpenOrder:
    return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.1, action_id=action_id)


# --- metrics -----------------------------------------------------------------------------------------------


async def test_metrics_after_a_burst_of_orders(
    sims: StartSims, nc: NatsClient, gateway: Gateway, executor: Executor, health_port: int
) -> None:
    await sims(["OB1", "OB2"], fill_latency_ms=2, tick_interval_ms=0)
    before_ex, before_gw = await scrape(health_port), await scrape(gateway.port)
    results = await asyncio.gather(*(order(nc, open_request(f"OB{1 + i % 2}")) for i in range(20)))
    assert [r.status for r in results] == ["FILLED"] * 20
    closed = await order(nc, CloseOrder(account_id="OB1", position_id="no-such-position"))
    assert closed.status == "REJECTED"
    await wait_for(lambda: executor._running == {}, "the orders' records to settle")

    ex, gw = await scrape(health_port), await scrape(gateway.port)

    def grew(samples: Samples, before: Samples, name: str, **labels: str) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    # outcomes by status and retcode class
    assert grew(ex, before_ex, "hedgebridge_orders_total", status="FILLED", retcode_class="done") == 20
    assert grew(ex, before_ex, "hedgebridge_orders_total", status="REJECTED") == 1
    # execution latency: 21 observations, each between the fill delay and the order timeout
    count = grew(ex, before_ex, "hedgebridge_order_duration_seconds_count")
    seconds = grew(ex, before_ex, "hedgebridge_order_duration_seconds_sum")
    assert count == 21
    assert 0.002 * 20 <= seconds <= 3.0 * count
    assert grew(ex, before_ex, "hedgebridge_order_duration_seconds_bucket", kind="OPEN", le="+Inf") == 20
    # the hops the executor measures on its own clock
    assert grew(ex, before_ex, "hedgebridge_hop_latency_seconds_count", hop="executor_delivery") == 21
    assert grew(ex, before_ex, "hedgebridge_hop_latency_seconds_count", hop="executor_report_wait") == 21
    assert value(ex, "hedgebridge_queue_depth", queue="pending_orders") == 0
    assert "hedgebridge_cache_rebuilds_total" in {name for name, _ in ex}

    # the gateway: round trips of commands to the terminals, frames by type, connections
    assert grew(gw, before_gw, "hedgebridge_ws_command_round_trip_seconds_count", type="OPENED") == 20
    rtt = grew(gw, before_gw, "hedgebridge_ws_command_round_trip_seconds_sum", type="OPENED")
    assert 0.002 * 20 <= rtt <= 3.0 * 20  # each round trip includes the terminal's 2 ms fill delay
    assert grew(gw, before_gw, "hedgebridge_ws_frames_total", direction="out", endpoint="ea", type="OPEN") == 20
    assert grew(gw, before_gw, "hedgebridge_ws_frames_total", direction="in", endpoint="ea", type="OPENED") == 20
    assert grew(gw, before_gw, "hedgebridge_hop_latency_seconds_count", hop="gateway_command_write") == 21
    assert grew(gw, before_gw, "hedgebridge_hop_latency_seconds_count", hop="gateway_report_publish") == 21
    assert value(gw, "hedgebridge_connections", kind="terminal") == 2
    assert value(gw, "hedgebridge_connections", kind="client") == 0
    assert 0 <= value(gw, "hedgebridge_terminal_silence_max_seconds") < 3.0  # heartbeat timeout of the tests
    assert value(gw, "hedgebridge_margin_level_min_ratio") > 1.0  # positions open, equity well above margin

    # the WebSocket round trip of the gateway's Pings
    async def pinged() -> bool:
        return value(await scrape(gateway.port), "hedgebridge_ws_round_trip_seconds_count") >= 2

    await wait_for(pinged, "WebSocket round trips")
    samples = await scrape(gateway.port)
    mean = value(samples, "hedgebridge_ws_round_trip_seconds_sum") / value(
        samples, "hedgebridge_ws_round_trip_seconds_count"
    )
    assert 0 < mean < 3.0


async def test_a_terminal_reconnecting_is_counted(sims: StartSims, gateway: Gateway, executor: Executor) -> None:
    [terminal] = await sims(["RC1"], tick_interval_ms=0)
    await wait_for(lambda: executor.rebuilds == 1, "the start-up cache rebuild")  # its SYNC can race a WELCOME
    await wait_for(lambda: terminal.connected.is_set(), "the terminal to be connected")
    connections = terminal.connections
    before = value(await scrape(gateway.port), "hedgebridge_reconnects_total", peer="terminal")
    await terminal.drop()
    await wait_for(
        lambda: terminal.connections == connections + 1 and terminal.connected.is_set(), "the terminal to reconnect"
    )
    after = value(await scrape(gateway.port), "hedgebridge_reconnects_total", peer="terminal")
    assert after - before == 1


@pytest.mark.parametrize("transport", ["native", "dll"])
async def test_the_compiled_ea_answers_the_pings_that_ride_on_its_heartbeat_replies(
    transport: str, gateway: Gateway, nc: NatsClient, secret: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The gateway writes each Ping in one write with the frame after a liveness report (a heartbeat reply):
    the EA's own socket code (native) and the DLL read both frames and answer the Ping, and the round trip is
    in the next report."""
    build: EaBuild = request.getfixturevalue(f"ea_{transport}_build")
    round_trips: list[float] = []

    async def on_report(msg: Msg) -> None:
        report = unpack(msg.data, GatewayLiveness)
        round_trips.extend(t.rtt_ms for t in report.terminals if t.account_id == "PING1" and t.rtt_ms is not None)

    sub = await nc.subscribe(subjects.GATEWAY_LIVENESS, cb=on_report)
    try:
        async with EaTerminals(build, gateway.port, secret, tmp_path / "ea") as eas:
            await eas.start(["PING1"])
            await wait_for(lambda: len(round_trips) >= 3, "three round trips of the EA in the liveness reports")
    finally:
        await sub.unsubscribe()
    assert all(0 < rtt < 3000 for rtt in round_trips)


# --- health and readiness ----------------------------------------------------------------------------------


async def test_executor_readiness_names_the_failed_check(
    executor: Executor, health_port: int, nats_server: NatsServer, cache_server: ValkeyServer
) -> None:
    status, body = await http_get(health_port, "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, ready = await readyz(health_port)
    assert (status, ready["status"], ready["failed"]) == (200, "ready", [])
    assert ready["checks"] == {"nats": "ok", "jetstream": "ok", "redis": "ok", "subscriptions": "ok"}

    cache_server.kill()
    await wait_for(lambda: _failed(health_port, ["redis"]), "readiness to fail on the cache")
    status, body = await http_get(health_port, "/healthz")
    assert status == 200  # alive all along: only readiness depends on the servers
    cache_server.start()
    await wait_for(lambda: _failed(health_port, []), "readiness back with the cache")

    nats_server.kill()
    await wait_for(lambda: _failed(health_port, ["jetstream", "nats"]), "readiness to fail on NATS")
    nats_server.start()
    await wait_for(lambda: _failed(health_port, []), "readiness back with NATS", timeout_s=20)


async def _failed(port: int, names: list[str]) -> bool:
    status, ready = await readyz(port)
    return ready["failed"] == names and status == (503 if names else 200)


async def test_health_server_answers_bad_requests_with_errors(executor: Executor, health_port: int) -> None:
    status, body = await http_get(health_port, "/nothing")
    assert (status, json.loads(body)["error"]) == (404, "Not Found")
    reader, writer = await asyncio.open_connection("127.0.0.1", health_port)
    writer.write(b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.1 405 ")
    reader, writer = await asyncio.open_connection("127.0.0.1", health_port)
    writer.write(b"garbage\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_gateway_serves_health_on_its_websocket_port(gateway: Gateway, nats_server: NatsServer) -> None:
    status, body = await http_get(gateway.port, "/healthz")
    assert (status, json.loads(body)["service"]) == (200, "gateway")
    status, ready = await readyz(gateway.port)
    assert (status, ready["failed"]) == (200, [])
    status, body = await http_get(gateway.port, "/metrics")
    assert status == 200
    assert b"hedgebridge_connections" in body
    # the WebSocket endpoints still work next to the plain HTTP paths
    token = ea_token(gateway.config.jwt_secret, "HG1")
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ea",
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=[subprotocol()],  # type: ignore[list-item]
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "WELCOME"

    nats_server.kill()
    await wait_for(lambda: _failed(gateway.port, ["nats"]), "the gateway's readiness to fail on NATS")
    nats_server.start()
    await wait_for(lambda: _failed(gateway.port, []), "the gateway's readiness back", timeout_s=20)


async def test_coordinator_and_monitor_health(
    nats_server: NatsServer, cache_server: ValkeyServer, health_port: int
) -> None:
    coordinator = Coordinator(
        coordinator_config(nats_server.url, f"{cache_server.url}/0", health_host="127.0.0.1", health_port=health_port)
    )
    monitor_port = free_port()
    monitor = Monitor(MonitorConfig(nats_url=nats_server.url, health_host="127.0.0.1", health_port=monitor_port))
    await coordinator.start()
    await monitor.start()
    try:
        for port, service in ((health_port, "coordinator"), (monitor_port, "monitor")):
            status, body = await http_get(port, "/healthz")
            assert (status, json.loads(body)["service"]) == (200, service)
            status, ready = await readyz(port)
            assert (status, ready["failed"]) == (200, []), service
        assert set(json.loads((await http_get(health_port, "/readyz"))[1])["checks"]) == {
            "nats",
            "jetstream",
            "redis",
            "subscriptions",
        }
        cache_server.kill()
        await wait_for(lambda: _failed(health_port, ["redis"]), "the coordinator's readiness to fail on the cache")
        await wait_for(lambda: _failed(monitor_port, []), "the monitor to stay ready (it uses no cache)")
        nats_server.kill()
        await wait_for(lambda: _failed(monitor_port, ["jetstream", "nats"]), "the monitor's readiness to fail on NATS")
    finally:
        await monitor.stop()
        await coordinator.stop()


# --- traces ------------------------------------------------------------------------------------------------


async def test_one_trace_spans_every_hop_of_an_order(
    span_exporter: InMemorySpanExporter, sims: StartSims, nc: NatsClient, gateway: Gateway, executor: Executor
) -> None:
    await sims(["TR1"], tick_interval_ms=0)
    tracer = tracing._state.provider.get_tracer("test")  # type: ignore[union-attr]
    with tracer.start_as_current_span("client.request") as root:
        headers = tracing.headers()
        assert headers is not None
        reply = await nc.request(
            subjects.ORDER_REQUEST, pack(open_request("TR1", "trace-1")), timeout=10, headers=headers
        )
    assert unpack(reply.data, OrderResult).status == "FILLED"
    trace_id = root.get_span_context().trace_id

    def spans() -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for span in span_exporter.get_finished_spans():
            found.setdefault(span.name, []).append(span)
        return found

    await wait_for(lambda: {"executor.order", "gateway.command", "gateway.report"} <= set(spans()), "the spans")
    by_name = {name: [s for s in found if s.context.trace_id == trace_id] for name, found in spans().items()}
    [executor_span] = by_name["executor.order"]
    [command_span] = by_name["gateway.command"]
    [report_span] = by_name["gateway.report"]
    # one trace: client -> executor -> gateway command -> (terminal echo) -> gateway report
    assert executor_span.parent.span_id == root.get_span_context().span_id
    assert command_span.parent.span_id == executor_span.context.span_id
    assert report_span.parent.span_id == command_span.context.span_id  # linked through the terminal's echo
    assert report_span.attributes["hedgebridge.echoed"] is True
    assert executor_span.attributes["hedgebridge.status"] == "FILLED"
    assert executor_span.attributes["hedgebridge.action_id"] == "trace-1"


async def test_commands_carry_trace_context_only_while_tracing(
    request: pytest.FixtureRequest, nc: NatsClient, ea_url: str, secret: str, executor: Executor
) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "NT1"))
    beat = ea.keep_alive()
    try:
        await ea.recv_type(Welcome)
        for traced in (False, True):
            if traced:
                exporter = InMemorySpanExporter()
                tracing.configure("test", exporter=exporter)
                request.addfinalizer(tracing.shutdown)
            pending = asyncio.create_task(order(nc, open_request("NT1", f"nt-{traced}")))
            while True:
                raw = await asyncio.wait_for(ea.ws.recv(), 5)
                if json.loads(raw)["type"] == "OPEN":
                    break
            frame = json.loads(raw)
            assert ("traceparent" in frame) is traced
            if traced:
                assert frame["traceparent"].split("-")[1] == format(
                    exporter.get_finished_spans()[0].context.trace_id, "032x"
                )  # the gateway's command span, written into the frame
            await ea.send(
                OpenedEvent(
                    timestamp=utcnow(),
                    account_id="NT1",
                    position_id=frame["positionId"],
                    action_id=frame["actionId"],
                    mt_ticket=f"7{int(traced)}",
                    price=1.1,
                    volume=0.1,
                    status="SUCCESS",
                )
            )  # an EA that does not echo the trace context still works
            assert (await pending).status == "FILLED"
    finally:
        beat.cancel()
        await ea.close()


# --- profiles ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["latency", "throughput"])
async def test_profiles_change_what_the_gateway_does(profile: str, nats_server: NatsServer, secret: str) -> None:
    config = gateway_from_env(
        {
            "HEDGEBRIDGE_PROFILE": profile,
            "HEDGEBRIDGE_NATS_URL": nats_server.url,
            "HEDGEBRIDGE_JWT_SECRET": secret,
            "HEDGEBRIDGE_GATEWAY_PORT": "0",
        }
    )
    throughput = profile == "throughput"
    gw = Gateway(config)
    await gw.start()
    try:
        ea = await RawEa.connect(f"ws://127.0.0.1:{gw.port}/ea", ea_token(secret, "PF1"))
        welcome = await ea.recv_type(Welcome)
        assert isinstance(welcome, Welcome)
        assert (welcome.heartbeat_interval_ms, welcome.heartbeat_timeout_ms) == (
            (5000, 15000) if throughput else (1000, 3500)
        )
        extensions = ea.ws.response.headers.get("Sec-WebSocket-Extensions") or ""  # type: ignore[union-attr]
        assert ("permessage-deflate" in extensions) is throughput
        admin = auth.mint_token(secret, role="admin", subject="ops")
        async with connect(
            f"ws://127.0.0.1:{gw.port}/client",
            additional_headers={"Authorization": f"Bearer {admin}"},
            subprotocols=[subprotocol()],  # type: ignore[list-item]
        ) as client:
            assert client.response is not None
            assert ("permessage-deflate" in (client.response.headers.get("Sec-WebSocket-Extensions") or "")) is (
                throughput
            )
            assert json.loads(await client.recv())["type"] == "CLIENT_WELCOME"
            await client.send(json.dumps({"type": "SUBSCRIBE", "requestId": "s1", "topics": ["prices"]}))
            assert json.loads(await client.recv())["type"] == "SUBSCRIBED"
            # a burst of ticks: queued faster than written, so the throughput profile writes them in batches
            for i in range(300):
                await ea.send(PriceTick(account_id="PF1", symbol="EURUSD", bid=1.0 + i / 1e5, ask=1.1, time=utcnow()))
            bids: list[float] = []
            while len(bids) < 300:
                frame = json.loads(await asyncio.wait_for(client.recv(), 10))
                if frame["type"] == "EVENT":
                    bids.append(frame["data"]["bid"])
            assert bids == [1.0 + i / 1e5 for i in range(300)]  # every tick, in order
        await ea.close()
    finally:
        await gw.stop()


async def test_explicit_settings_win_over_the_profile(secret: str) -> None:
    config = gateway_from_env(
        {
            "HEDGEBRIDGE_PROFILE": "throughput",
            "HEDGEBRIDGE_JWT_SECRET": secret,
            "HEDGEBRIDGE_GATEWAY_HEARTBEAT_INTERVAL_MS": "2000",
            "HEDGEBRIDGE_GATEWAY_COMPRESSION": "false",
        }
    )
    assert (config.heartbeat_interval_ms, config.heartbeat_timeout_ms) == (2000, 15000)
    assert (config.compression, config.client_batch_max, config.client_priority) == (False, 50, False)
    with pytest.raises(ConfigError, match="HEDGEBRIDGE_PROFILE"):
        gateway_from_env({"HEDGEBRIDGE_PROFILE": "fastest", "HEDGEBRIDGE_JWT_SECRET": secret})
    latency = make_terminals("ws://127.0.0.1:1/ea", ["X1"], lambda a: a, SimConfig(), profile=profiles.named("latency"))
    throughput = make_terminals(
        "ws://127.0.0.1:1/ea", ["X1"], lambda a: a, SimConfig(), profile=profiles.named("throughput")
    )
    assert (latency[0].immediate_reconnect, throughput[0].immediate_reconnect) == (True, False)


async def test_one_trace_from_a_client_action_to_every_terminal_reply(
    span_exporter: InMemorySpanExporter,
    sims: StartSims,
    gateway: Gateway,
    executor: Executor,
    coordinator: Coordinator,
    secret: str,
) -> None:
    await sims(["TA1", "TA2"], tick_interval_ms=0)
    legs = [
        ActionLeg(account_id="TA1", symbol="EURUSD", side="BUY", volume=0.1),
        ActionLeg(account_id="TA2", symbol="EURUSD", side="SELL", volume=0.1),
    ]
    request = ClientRequest(request_id="a1", body=ActionRequest(kind="HEDGE_ENTRY", action_id="hedge-1", legs=legs))
    admin = auth.mint_token(secret, role="admin", subject="ops")
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/client",
        additional_headers={"Authorization": f"Bearer {admin}"},
        subprotocols=[subprotocol()],  # type: ignore[list-item]
    ) as client:
        assert json.loads(await client.recv())["type"] == "CLIENT_WELCOME"
        await client.send(encode_frame(request).decode())
        while True:
            frame = json.loads(await asyncio.wait_for(client.recv(), 15))
            if frame["type"] == "REPLY":
                break
    assert frame["result"]["state"] == "COMPLETED", frame

    def named(name: str) -> list[Any]:
        return [s for s in span_exporter.get_finished_spans() if s.name == name]

    await wait_for(lambda: len(named("gateway.report")) >= 2, "both terminals' reports")
    [root] = named("gateway.client_request")
    trace_id = root.context.trace_id
    [action] = named("coordinator.action")
    assert (action.context.trace_id, action.parent.span_id) == (trace_id, root.context.span_id)
    orders = named("executor.order")  # one per request: a leg asked again (a retry) has a span of its own
    assert {o.attributes["hedgebridge.action_id"] for o in orders} == {"hedge-1-E0", "hedge-1-E1"}
    assert {(o.context.trace_id, o.parent.span_id) for o in orders} == {(trace_id, action.context.span_id)}
    for account in ("TA1", "TA2"):
        commands = [c for c in named("gateway.command") if c.attributes["hedgebridge.account"] == account]
        [report] = [r for r in named("gateway.report") if r.attributes["hedgebridge.account"] == account]
        assert commands
        assert {c.context.trace_id for c in commands} == {trace_id}
        assert {c.parent.span_id for c in commands} <= {o.context.span_id for o in orders}
        assert report.parent.span_id in {c.context.span_id for c in commands}  # the terminal's echo
