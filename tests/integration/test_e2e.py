"""End to end, as a user runs it: `hedgebridge up --demo` as a process tree, the CLI as separate processes,
and a terminal written only from the README's protocol description (plain websockets + json)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from websockets.asyncio.client import connect

from hedgebridge.cli import state
from hedgebridge.common.servers import NatsServer, free_port

from ..helpers import hedgebridge_command

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    home: Path
    process: subprocess.Popen[str]
    output: Path
    info: state.StackState

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
        env["HEDGEBRIDGE_HOME"] = str(self.home)
        return env

    def cli(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*hedgebridge_command(), *args], env=self.env(), capture_output=True, text=True, timeout=timeout_s
        )

    async def acli(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *hedgebridge_command(),
            *args,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )


def _wait(predicate: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("home")
    output = home / "up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env["HEDGEBRIDGE_HOME"] = str(home)
    args = [
        "up",
        "--demo",
        "--accounts",
        "2",
        "--fill-latency-ms",
        "5",
        "--nats-port",
        str(free_port()),
        "--redis-port",
        str(free_port()),
        "--gateway-port",
        str(free_port()),
    ]
    with open(output, "w") as out:
        process = subprocess.Popen(
            [*hedgebridge_command(), *args], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        _wait(
            lambda: "hedgebridge is up" in output.read_text() or process.poll() is not None,
            "hedgebridge up",
            60,
        )
        assert process.poll() is None, output.read_text()
        info = state.read_state(home)
        assert info is not None
        yield Stack(home, process, output, info)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_up_reports_what_it_started(stack: Stack) -> None:
    text = stack.output.read_text()
    assert stack.info.gateway_url in text
    assert "executor   ready" in text
    assert "monitor    ready" in text
    assert "SIM-001, SIM-002" in text
    assert stack.info.accounts == ["SIM-001", "SIM-002"]


def test_order_open_and_close_through_the_cli(stack: Stack) -> None:
    opened = stack.cli(
        "order", "open", "--account", "SIM-001", "--symbol", "EURUSD", "--side", "buy", "--volume", "0.2"
    )
    assert opened.returncode == 0, opened.stderr
    event = json.loads(opened.stdout)
    assert event["type"] == "OPENED"
    assert event["status"] == "SUCCESS"
    assert event["accountId"] == "SIM-001"
    ticket = event["mtTicket"]

    cache = redis.Redis.from_url(stack.info.redis_url, decode_responses=True)
    _wait(lambda: ticket in cache.hgetall("hb:positions:{SIM-001}"), "the position in the cache")
    position = json.loads(cache.hget("hb:positions:{SIM-001}", ticket) or "{}")
    assert position["positionId"] == event["positionId"]
    assert position["volume"] == 0.2
    assert cache.hget("hb:balance:{SIM-001}", "balance") is not None

    closed = stack.cli("order", "close", "--account", "SIM-001", "--position-id", event["positionId"])
    assert closed.returncode == 0, closed.stderr
    close_event = json.loads(closed.stdout)
    assert (close_event["type"], close_event["status"], close_event["mtTicket"]) == ("CLOSED", "SUCCESS", ticket)
    assert isinstance(close_event["profit"], float)
    _wait(lambda: ticket not in cache.hgetall("hb:positions:{SIM-001}"), "the position to leave the cache")

    again = stack.cli("order", "close", "--account", "SIM-001", "--position-id", event["positionId"])
    assert again.returncode == 1
    assert "order rejected" in again.stderr
    assert "[ALREADY_CLOSED]" in again.stderr
    assert "10036" in again.stderr


def test_order_modify_through_the_cli(stack: Stack) -> None:
    opened = stack.cli(
        "order", "open", "--account", "SIM-002", "--symbol", "EURUSD", "--side", "SELL", "--volume", "0.1",
        "--sl", "9", "--result",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    event = json.loads(opened.stdout)
    assert (event["type"], event["stopLoss"]) == ("OPENED", 9.0)
    ticket, price = event["mtTicket"], event["price"]
    tp = round(price - 0.005, 5)
    modified = stack.cli("order", "modify", "--account", "SIM-002", "--ticket", ticket, "--tp", str(tp), "--sl", "0")
    assert modified.returncode == 0, modified.stderr
    report = json.loads(modified.stdout)
    assert (report["type"], report["status"], report["mtTicket"]) == ("MODIFIED", "SUCCESS", ticket)
    assert (report["stopLoss"], report["takeProfit"]) == (0.0, tp)
    same = stack.cli("order", "modify", "--account", "SIM-002", "--position-id", event["positionId"], "--tp", str(tp))
    assert same.returncode == 0, same.stderr  # nothing to change: the position has these stops
    assert "no changes" in same.stderr
    wrong = stack.cli(
        "order", "modify", "--account", "SIM-002", "--ticket", ticket, "--sl", str(round(price - 0.01, 5))
    )
    assert wrong.returncode == 1  # a SELL's stop loss below the price
    assert "[INVALID_STOPS]" in wrong.stderr
    assert "10016" in wrong.stderr
    usage = stack.cli("order", "modify", "--account", "SIM-002", "--ticket", ticket)
    assert usage.returncode == 2
    assert "--sl or --tp" in usage.stderr
    assert stack.cli("order", "close", "--account", "SIM-002", "--ticket", ticket).returncode == 0


def test_order_to_an_offline_account_is_not_sent(stack: Stack) -> None:
    result = stack.cli(
        "order", "open", "--account", "NOBODY", "--symbol", "EURUSD", "--side", "BUY", "--volume", "1", "--ttl", "0.2"
    )
    assert result.returncode == 4
    assert "unreachable past the order's time-to-live" in result.stderr
    assert result.stdout == ""


def test_status_lists_the_terminals(stack: Stack) -> None:
    result = stack.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    connected = {t["accountId"] for t in snapshot["terminals"] if t["connected"]}
    assert {"SIM-001", "SIM-002"} <= connected


async def test_a_terminal_written_from_the_readme(stack: Stack) -> None:
    token = stack.cli("token", "--role", "ea", "--account", "RAW-1")
    assert token.returncode == 0, token.stderr
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    async with connect(stack.info.gateway_url, additional_headers=headers, subprotocols=["hedgebridge.v1"]) as ws:  # type: ignore[list-item]
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "WELCOME"
        order = await stack.acli("order", "open", "--account", "RAW-1", "--symbol", "GBPUSD", "--side", "SELL",
                                 "--volume", "0.3", "--action-id", "readme-1")  # fmt: skip
        command = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert command["type"] == "OPEN"
        assert (command["symbol"], command["side"], command["volume"]) == ("GBPUSD", "SELL", 0.3)
        assert command["actionId"] == "readme-1"
        assert command["metadata"]["executionType"] == "ENTRY"
        reply = {
            "type": "OPENED",
            "timestamp": "2026-11-24T10:00:00.050Z",
            "accountId": "RAW-1",
            "positionId": command["positionId"],
            "actionId": command["actionId"],
            "mtTicket": "777",
            "price": 1.2651,
            "status": "SUCCESS",
        }
        await ws.send(json.dumps(reply))
        out, err = await asyncio.wait_for(order.communicate(), 30)
        assert order.returncode == 0, err.decode()
        event = json.loads(out)
        assert (event["mtTicket"], event["price"], event["positionId"]) == ("777", 1.2651, command["positionId"])

        # a terminal that refuses: exit 1 with the retcode in the message
        order = await stack.acli("order", "open", "--account", "RAW-1", "--symbol", "GBPUSD", "--side", "BUY",
                                 "--volume", "0.1")  # fmt: skip
        command = json.loads(await asyncio.wait_for(ws.recv(), 20))
        reply = {"type": "OPENED", "timestamp": "2026-11-24T10:00:01Z", "accountId": "RAW-1",
                 "positionId": command["positionId"], "actionId": command["actionId"], "status": "FAILED",
                 "errorMessage": "Market is closed", "errorCode": 10018}  # fmt: skip
        await ws.send(json.dumps(reply))
        out, err = await asyncio.wait_for(order.communicate(), 30)
        assert order.returncode == 1
        assert "Market is closed" in err.decode()
        assert "10018" in err.decode()

        # a terminal that never answers: a definite "outcome unknown" after the timeout, exit 3
        order = await stack.acli("order", "open", "--account", "RAW-1", "--symbol", "GBPUSD", "--side", "BUY",
                                 "--volume", "0.1", "--timeout", "1")  # fmt: skip
        command = json.loads(await asyncio.wait_for(ws.recv(), 20))
        assert command["type"] == "OPEN"
        out, err = await asyncio.wait_for(order.communicate(), 30)
        assert order.returncode == 3
        assert "outcome is unknown" in err.decode()


def test_token_refuses_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env["HEDGEBRIDGE_HOME"] = str(tmp_path)
    result = subprocess.run(
        [*hedgebridge_command(), "token", "--role", "ea", "--account", "A1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no JWT key" in result.stderr


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env["HEDGEBRIDGE_HOME"] = str(tmp_path)
    output = tmp_path / "up.out"
    ports = [str(free_port()) for _ in range(3)]
    with open(output, "w") as out:
        process = subprocess.Popen(
            [
                *hedgebridge_command(),
                "up",
                "--nats-port",
                ports[0],
                "--redis-port",
                ports[1],
                "--gateway-port",
                ports[2],
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _wait(lambda: "hedgebridge is up" in output.read_text() or process.poll() is not None, "up", 60)
        info = state.read_state(tmp_path)
        assert info is not None
        pids = list(info.pids.values())
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopped" in output.read_text()
    assert not state.state_path(tmp_path).exists()
    _wait(lambda: not any(state.pid_alive(pid) for pid in pids), "every service process to exit", 10)


def test_ping_probes(stack: Stack) -> None:
    gateway_port = stack.info.gateway_url.rsplit(":", 1)[1].split("/")[0]
    for target in ("executor", "monitor"):
        result = stack.cli("ping", target)
        assert result.returncode == 0, result.stderr
    assert stack.cli("ping", "gateway", "--port", gateway_port).returncode == 0
    refused = stack.cli("ping", "gateway", "--port", str(free_port()), "--timeout", "1")
    assert refused.returncode == 1
    assert "does not answer" in refused.stderr


def test_order_exits_6_when_nats_or_the_executor_is_missing(tmp_path: Path, nats_server: NatsServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env["HEDGEBRIDGE_HOME"] = str(tmp_path)
    base = [*hedgebridge_command(), "order", "open", "--account", "A1", "--symbol", "EURUSD", "--side", "BUY"]
    unreachable = subprocess.run(
        [*base, "--volume", "1", "--nats-url", f"nats://127.0.0.1:{free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unreachable.returncode == 6
    assert "cannot reach NATS" in unreachable.stderr
    no_executor = subprocess.run(
        [*base, "--volume", "1", "--nats-url", nats_server.url], env=env, capture_output=True, text=True, timeout=30
    )
    assert no_executor.returncode == 6
    assert "no executor is running" in no_executor.stderr
