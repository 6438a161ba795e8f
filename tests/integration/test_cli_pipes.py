"""The command line's output in a pipe whose reader stops early (``hedgebridge status | head -3``): the command
ends with 141, as a program SIGPIPE ended, and prints no traceback — the one-shot commands, the streaming
ones (``watch``, ``sim``) and ``up``, which first stops its stack in order. And ``--json`` where a table is
printed, with every documented key. The CLI runs as a process of its own against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hedgebridge.cli import state
from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, free_port
from hedgebridge.gateway.server import Gateway
from hedgebridge.monitor.config import MonitorConfig
from hedgebridge.monitor.service import Monitor

from ..conftest import StartSims
from ..helpers import hedgebridge_command, wait_for

pytestmark = pytest.mark.integration

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
# a reader that takes N lines, prints them and exits, closing the pipe
READ_LINES = "import sys\nfor _ in range(int(sys.argv[1])): print(sys.stdin.readline(), end='')"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    return {**env, "HEDGEBRIDGE_HOME": str(home), **extra}


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _no_traceback(stderr: str) -> None:
    for sign in ("Traceback", "BrokenPipeError", "Exception ignored"):
        assert sign not in stderr, stderr


class Cli:
    """Runs ``hedgebridge`` into pipes; what still runs at the test's end (a failed test's) is stopped."""

    def __init__(self) -> None:
        self.started: list[asyncio.subprocess.Process] = []

    async def start(self, *argv: str, **options: Any) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(*argv, **options)
        self.started.append(process)
        return process

    async def into_closed_pipe(self, env: dict[str, str], *args: str, timeout_s: float = 60) -> tuple[int, str]:
        """``hedgebridge ARGS`` with its output on a pipe whose reader is already gone: (exit status, stderr)."""
        read, write = os.pipe()
        os.close(read)
        try:
            command = await self.start(
                *hedgebridge_command(), *args, env=env, stdout=write, stderr=asyncio.subprocess.PIPE
            )
        finally:
            os.close(write)
        return await self._finish(command, timeout_s)

    async def into_reader(
        self, env: dict[str, str], lines: int, *args: str, timeout_s: float = 60
    ) -> tuple[int, str, str]:
        """``hedgebridge ARGS | (a reader of LINES lines)``: (the command's exit status, stderr, what was read)."""
        read, write = os.pipe()
        try:
            reader = await self.start(
                sys.executable, "-c", READ_LINES, str(lines), stdin=read, stdout=asyncio.subprocess.PIPE
            )
            command = await self.start(
                *hedgebridge_command(), *args, env=env, stdout=write, stderr=asyncio.subprocess.PIPE
            )
        finally:
            os.close(read)
            os.close(write)
        try:
            async with asyncio.timeout(timeout_s):
                taken, _ = await reader.communicate()
        except TimeoutError:
            raise AssertionError(f"the reader did not get {lines} lines within {timeout_s}s") from None
        code, err = await self._finish(command, timeout_s)
        return code, err, taken.decode()

    @staticmethod
    async def _finish(command: asyncio.subprocess.Process, timeout_s: float) -> tuple[int, str]:
        """The command's exit status and standard error, read while it runs."""
        try:
            async with asyncio.timeout(timeout_s):
                _, err = await command.communicate()
        except TimeoutError:
            raise AssertionError(f"the command did not exit within {timeout_s}s") from None
        assert command.returncode is not None
        return command.returncode, err.decode()

    async def end(self) -> None:
        for process in self.started:  # SIGINT first: up stops its stack in order on it
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                try:
                    async with asyncio.timeout(30):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()


@pytest.fixture
async def cli() -> AsyncIterator[Cli]:
    runner = Cli()
    yield runner
    await runner.end()


@pytest.fixture
async def monitor(nats_server: NatsServer) -> AsyncIterator[Monitor]:
    service = Monitor(MonitorConfig(nats_url=nats_server.url, id="mon-cli-pipes"))
    await service.start()
    yield service
    await service.stop()


async def test_a_printed_token_to_a_closed_pipe(cli: Cli, tmp_path: Path, secret: str) -> None:
    code, err = await cli.into_closed_pipe(_env(tmp_path), "token", "--role", "admin", "--secret", secret)
    assert (code, err) == (EXIT_BROKEN_PIPE, "")


async def test_the_simulator_to_a_closed_pipe(cli: Cli, tmp_path: Path, secret: str) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ea"
    code, err = await cli.into_closed_pipe(_env(tmp_path), "sim", "--account", "P1", "--url", url, "--secret", secret)
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)


async def test_the_simulator_stops_when_its_reader_does(
    cli: Cli, tmp_path: Path, gateway: Gateway, secret: str
) -> None:
    """``sim`` prints one line and then nothing: the pipe's reader going away is noticed without a write."""
    url = f"ws://127.0.0.1:{gateway.port}/ea"
    code, err, taken = await cli.into_reader(
        _env(tmp_path), 1, "sim", "--account", "P1", "--url", url, "--secret", secret
    )
    assert taken.startswith("simulating 1 terminal(s)")
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
async def test_status_to_a_closed_pipe(
    cli: Cli, tmp_path: Path, nats_server: NatsServer, monitor: Monitor, json_flag: tuple[str, ...]
) -> None:
    code, err = await cli.into_closed_pipe(_env(tmp_path, HEDGEBRIDGE_NATS_URL=nats_server.url), "status", *json_flag)
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)


async def test_an_order_to_a_closed_pipe(cli: Cli, tmp_path: Path, nats_server: NatsServer, sims: StartSims) -> None:
    await sims(["P1"], fill_latency_ms=1, tick_interval_ms=0)
    env = _env(tmp_path, HEDGEBRIDGE_NATS_URL=nats_server.url)
    args = ("order", "open", "--account", "P1", "--symbol", "EURUSD", "--side", "BUY", "--volume", "0.1")
    code, err = await cli.into_closed_pipe(env, *args)
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)


async def test_history_to_a_closed_pipe(cli: Cli, tmp_path: Path, nats_server: NatsServer, sims: StartSims) -> None:
    await sims(["P1"], fill_latency_ms=1, tick_interval_ms=0)
    env = _env(tmp_path, HEDGEBRIDGE_NATS_URL=nats_server.url)
    args = ("order", "open", "--account", "P1", "--symbol", "EURUSD", "--side", "BUY", "--volume", "0.1")
    code, err = await cli.into_closed_pipe(env, *args)
    assert code == EXIT_BROKEN_PIPE, err  # the order ran: its events are in the history
    code, err = await cli.into_closed_pipe(env, "history", "--account", "P1")
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)


async def test_watch_stops_when_its_reader_does(
    cli: Cli, tmp_path: Path, gateway: Gateway, secret: str, sims: StartSims
) -> None:
    await sims(["P1"], tick_interval_ms=20)  # a steady stream of prices
    url = f"ws://127.0.0.1:{gateway.port}/client"
    token = auth.mint_token(secret, role="admin", subject="pipes")
    code, err, taken = await cli.into_reader(
        _env(tmp_path), 2, "watch", "--topic", "prices", "--url", url, "--token", token
    )
    assert [json.loads(line)["topic"] for line in taken.splitlines()] == ["prices", "prices"]
    assert code == EXIT_BROKEN_PIPE, err
    assert "watching prices" in err
    _no_traceback(err)


async def test_watch_of_a_quiet_topic_stops_when_its_reader_does(
    cli: Cli, tmp_path: Path, gateway: Gateway, secret: str
) -> None:
    """No event comes, so nothing is written: watch notices the reader's going away from the pipe itself."""
    url = f"ws://127.0.0.1:{gateway.port}/client"
    token = auth.mint_token(secret, role="admin", subject="pipes")
    code, err = await cli.into_closed_pipe(_env(tmp_path), "watch", "--topic", "alerts", "--url", url, "--token", token)
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)


async def test_up_stops_its_stack_when_its_reader_does(cli: Cli, tmp_path: Path) -> None:
    ports = {"--nats-port": free_port(), "--redis-port": free_port(), "--gateway-port": free_port()}
    args = [text for flag, port in ports.items() for text in (flag, str(port))]
    code, err, taken = await cli.into_reader(_env(tmp_path), 3, "up", *args, timeout_s=120)
    assert [line.split()[0] for line in taken.splitlines()] == ["NATS", "cache", "gateway"]
    assert code == EXIT_BROKEN_PIPE, err
    _no_traceback(err)
    assert state.read_state(tmp_path) is None  # up ended as on SIGTERM: its stack stopped, its state cleared
    assert not state.state_path(tmp_path).exists()
    for port in ports.values():
        assert not _listening(port), f"something still listens on {port} after up exited"


async def test_status_json_has_every_key(
    tmp_path: Path, nats_server: NatsServer, monitor: Monitor, sims: StartSims
) -> None:
    await sims(["P1"], tick_interval_ms=0)
    env = _env(tmp_path, HEDGEBRIDGE_NATS_URL=nats_server.url)

    async def status() -> dict[str, object]:
        process = await asyncio.create_subprocess_exec(
            *hedgebridge_command(), "status", "--json", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        shown: dict[str, object] = json.loads(out)
        return shown

    async def listed() -> bool:
        terminals = (await status())["terminals"]
        return isinstance(terminals, list) and any(t["accountId"] == "P1" for t in terminals)

    await wait_for(listed, "the monitor to list P1", timeout_s=20)
    shown = await status()
    assert set(shown) == {
        "startedAt", "terminals", "ordersSucceeded", "ordersFailed", "alerts", "health", "orderResults",
        "actionOutcomes", "conflicts", "openConflicts", "processes",
    }  # fmt: skip
    assert (shown["ordersSucceeded"], shown["ordersFailed"], shown["processes"]) == (0, 0, {})
    terminals = shown["terminals"]
    assert isinstance(terminals, list)
    assert set(terminals[0]) == {
        "accountId", "connected", "sessionId", "gatewayId", "since", "reason", "lastEvent", "balance", "equity",
        "marginLevel", "openPositions", "lastHeartbeat", "rttMs",
    }  # fmt: skip

    # the processes of a stack up runs from this home, when status looks at its NATS
    state.write_state(
        tmp_path,
        state.StackState(
            nats_url=nats_server.url,
            redis_url="",
            gateway_url="",
            supervisor_pid=os.getpid(),
            services={"executor": state.ServiceState(state="running", pid=12)},
        ),
    )
    processes = (await status())["processes"]
    assert processes == {
        "executor": {"state": "running", "pid": 12, "restarts": 0, "last_restart": "", "last_exit": ""}
    }


@pytest.mark.parametrize(("reader", "gone"), [("closed", True), ("open", False), ("file", False)])
def test_a_broken_pipe_is_the_outputs_only_when_its_reader_is_gone(tmp_path: Path, reader: str, gone: bool) -> None:
    """``main`` turns a BrokenPipeError into 141 only when the output's reader is gone; one from a socket of the
    command's own is reported as the error it is."""
    probe = "import sys\nfrom hedgebridge.cli import output\nsys.stderr.write(str(output.reader_gone()))"
    if reader == "file":
        out: int = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
        keep = -1
    else:
        keep, out = os.pipe()
        if reader == "closed":
            os.close(keep)
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], stdout=out, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(out)
        if reader == "open":
            os.close(keep)
    assert result.stderr == str(gone)
