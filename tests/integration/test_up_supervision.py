"""`hedgebridge up` heals itself, with real processes on free ports: a killed executor, NATS or cache comes
back (a new pid) and orders still fill — NATS with the JetStream data written before the kill, the cache
rebuilt; a service that exits at once every time is given up while the rest keeps running; Ctrl-C (sent to
the whole process group, as a terminal does) and SIGTERM stop everything in order, with no restart and no
process left; the JetStream data survives a restart of `up` itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import nats
import pytest
import redis
from nats.js.errors import KeyNotFoundError, NotFoundError

from hedgebridge.cli import state
from hedgebridge.common import streams
from hedgebridge.common.servers import free_port

from ..helpers import hedgebridge_command

pytestmark = pytest.mark.integration

T = TypeVar("T")


def _until(probe: Callable[[], T | None], what: str, timeout_s: float = 60) -> T:
    """``probe``'s first truthy value, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
    return value


@dataclass
class Up:
    """One ``hedgebridge up`` process, in a process group of its own (its pid is the group's id)."""

    home: Path
    process: subprocess.Popen[str]
    output: Path

    def env(self) -> dict[str, str]:
        return _env(self.home)

    def text(self) -> str:
        return self.output.read_text()

    def info(self) -> state.StackState:
        info = state.read_state(self.home)
        assert info is not None, self.text()
        return info

    def service(self, name: str) -> state.ServiceState:
        return self.info().services[name]

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*hedgebridge_command(), *args], env=self.env(), capture_output=True, text=True, timeout=timeout_s
        )

    def order_fills(self, timeout_s: float = 60) -> dict[str, object]:
        """An order opened through the CLI fills; "not sent" answers (exit 4, 6) are retried until the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.cli("order", "open", "--account", "SIM-001", "--symbol", "EURUSD", "--side", "BUY",
                              "--volume", "0.1", "--ttl", "5")  # fmt: skip
            if result.returncode == 0:
                event: dict[str, object] = json.loads(result.stdout)
                assert event["status"] == "SUCCESS", event
                return event
            assert result.returncode in (4, 6), f"exit {result.returncode}: {result.stderr}"
            if time.monotonic() >= deadline:  # the wait's deadline, not a speed check
                pytest.fail(f"no order filled within {timeout_s}s: {result.stderr}")
            time.sleep(0.2)

    def revoked(self, jti: str) -> bool:
        """Whether NATS's JetStream holds ``jti`` in the revocation bucket (False while NATS is unreachable)."""
        password = state.nats_password_path(self.home).read_text().strip()
        url = state.with_credentials(self.info().nats_url, state.NATS_USER, password)

        async def read() -> bool:
            try:
                nc = await nats.connect(url, allow_reconnect=False, connect_timeout=1, max_reconnect_attempts=0)
            except Exception:
                return False
            try:
                kv = await nc.jetstream().key_value(streams.REVOKED_BUCKET)
                return await kv.get(jti) is not None
            except (KeyNotFoundError, NotFoundError):
                return False
            finally:
                await nc.close()

        return asyncio.run(read())

    def restarted(self, name: str, old_pid: int) -> state.ServiceState:
        """``name``'s state once it runs again under a pid other than ``old_pid``."""

        def back() -> state.ServiceState | None:
            service = self.service(name)
            return service if service.state == "running" and service.pid not in (0, old_pid) else None

        return _until(back, f"{name} to be restarted")

    def signal_group(self, sig: signal.Signals) -> int:
        os.killpg(self.process.pid, sig)
        return self.process.wait(60)

    def stopped_in_order(self) -> list[str]:
        return [line.split()[1] for line in self.text().splitlines() if line.startswith("  stopped ")]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    return {**env, "HEDGEBRIDGE_HOME": str(home), **extra}


def _start_up(home: Path, *args: str, **extra_env: str) -> Up:
    output = home / f"up-{time.monotonic_ns()}.out"
    ports = ["--nats-port", str(free_port()), "--redis-port", str(free_port()), "--gateway-port", str(free_port())]
    with open(output, "w") as out:
        process = subprocess.Popen(
            [*hedgebridge_command(), "up", *ports, *args],
            env=_env(home, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    up = Up(home, process, output)
    try:
        _until(lambda: "hedgebridge is up" in up.text() or process.poll() is not None, "hedgebridge up", 90)
        assert process.poll() is None, up.text()
    except BaseException:
        _end(up)
        raise
    return up


def _end(up: Up) -> None:
    """Stop ``up`` if it still runs, and any process of its stack it left behind (a failed test's)."""
    if up.process.poll() is None:
        os.killpg(up.process.pid, signal.SIGINT)
        try:
            up.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.process.pid, signal.SIGKILL)
            up.process.wait()
    with contextlib.suppress(OSError, ValueError):
        left = json.loads(state.state_path(up.home).read_text())["pids"]
        for pid in left.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """A stack whose coordinator is misconfigured: it exits at start every time."""
    home = tmp_path_factory.mktemp("home")
    stack = _start_up(
        home,
        "--demo",
        "--accounts",
        "1",
        "--fill-latency-ms",
        "5",
        HEDGEBRIDGE_COORDINATOR_HEALTH_PORT="not-a-port",
    )
    try:
        yield stack
    finally:
        _end(stack)


def test_a_service_that_exits_at_once_every_time_is_given_up_while_the_rest_runs(up: Up) -> None:
    text = up.text()
    assert "coordinator exited with code 78: restarting it in 0.5s (restart 1; log: " in text
    assert "coordinator exited with code 78: restarting it in 4s (restart 4; log: " in text
    assert "coordinator exited with code 78, its exit 5 within 60s: given up" in text
    assert "hedgebridge is up, without coordinator (given up)" in text
    coordinator = up.service("coordinator")
    assert (coordinator.state, coordinator.pid, coordinator.restarts) == ("given up", 0, 4)
    assert coordinator.last_exit == "exited with code 78"
    assert "coordinator" not in up.info().pids
    others = {name: s.state for name, s in up.info().services.items() if name != "coordinator"}
    assert others == dict.fromkeys(("nats", "cache", "gateway", "executor", "monitor", "sim"), "running")
    status = up.cli("status")
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("coordinator "))
    assert row.split()[1:5] == ["given", "up", "-", "4"]
    assert row.endswith("exited with code 78")
    assert up.order_fills()["accountId"] == "SIM-001"
    assert up.service("coordinator").state == "given up"  # not started again


def test_a_killed_executor_comes_back_and_orders_still_fill(up: Up) -> None:
    before = up.service("executor")
    os.kill(before.pid, signal.SIGKILL)
    after = up.restarted("executor", before.pid)
    assert after.restarts == before.restarts + 1
    assert after.last_exit == "was killed by SIGKILL (signal 9)"
    assert after.last_restart.endswith("Z")
    assert up.info().pids["executor"] == after.pid
    assert f"executor was killed by SIGKILL (signal 9): restarting it in 0.5s (restart {after.restarts}; " in up.text()
    assert f"executor restarted (pid {after.pid})" in up.text()
    up.order_fills()
    status = up.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["processes"]["executor"]
    assert (shown["pid"], shown["restarts"], shown["last_restart"]) == (after.pid, after.restarts, after.last_restart)


def test_a_killed_nats_comes_back_on_its_port_with_its_jetstream_data(up: Up) -> None:
    jti = f"before-the-kill-{time.monotonic_ns()}"
    revoke = up.cli("token", "revoke", jti)
    assert revoke.returncode == 0, revoke.stderr
    assert up.revoked(jti)
    before = up.service("nats")
    url = up.info().nats_url
    os.kill(before.pid, signal.SIGKILL)
    after = up.restarted("nats", before.pid)
    assert (after.restarts, after.last_exit) == (before.restarts + 1, "was killed by SIGKILL (signal 9)")
    assert up.info().nats_url == url  # the same port: the services and clients reconnect to it
    _until(lambda: up.revoked(jti), "the record written before the kill", 30)
    up.order_fills()


def test_a_killed_cache_comes_back_and_is_rebuilt(up: Up) -> None:
    before = up.service("cache")
    os.kill(before.pid, signal.SIGKILL)
    after = up.restarted("cache", before.pid)
    assert after.restarts == before.restarts + 1
    event = up.order_fills()
    cache = redis.Redis.from_url(up.info().redis_url, decode_responses=True)
    try:
        _until(lambda: cache.hget("hb:balance:{SIM-001}", "balance"), "the account rebuilt in the cache", 30)
        _until(lambda: str(event["mtTicket"]) in cache.hgetall("hb:positions:{SIM-001}"), "the position", 30)
    finally:
        cache.close()


def test_ctrl_c_and_sigterm_stop_everything_in_order_and_jetstream_survives_a_restart_of_up(tmp_path: Path) -> None:
    first = _start_up(tmp_path)
    try:
        jti = f"kept-across-runs-{time.monotonic_ns()}"
        assert first.cli("token", "revoke", jti).returncode == 0
        first_url = first.info().nats_url
        pids = list(first.info().pids.values())
        assert len(pids) == 6  # NATS, the cache and the four services
        assert first.signal_group(signal.SIGINT) == 0  # Ctrl-C: the whole group gets it
    finally:
        _end(first)
    text = first.text()
    assert first.stopped_in_order() == ["coordinator", "monitor", "executor", "gateway", "cache", "nats"], text
    assert "restarting" not in text
    # the servers were stopped by up, after the services (SIGTERM), not by the Ctrl-C (SIGINT)
    nats_log = (tmp_path / "nats" / "nats-server.log").read_text()
    assert 'Trapped "terminated" signal' in nats_log
    assert 'Trapped "interrupt" signal' not in nats_log
    cache_log = (tmp_path / "cache" / "valkey-server.log").read_text()
    assert "Received SIGTERM" in cache_log
    assert "Received SIGINT" not in cache_log
    assert not state.state_path(tmp_path).exists()
    _until(lambda: not any(state.pid_alive(pid) for pid in pids), "every process of the stack to exit", 10)

    second = _start_up(tmp_path)
    try:
        store = f"JetStream data in {tmp_path / 'nats' / 'jetstream'}"
        assert store in text
        assert store in second.text()  # the same store, whatever port NATS got this time
        if second.info().nats_url == first_url:
            pytest.fail("the second run got the same NATS port: the test proves less than it says")
        _until(lambda: second.revoked(jti), "the record written by the first run", 30)
        pids = list(second.info().pids.values())
        os.kill(second.process.pid, signal.SIGTERM)
        assert second.process.wait(60) == 0
    finally:
        _end(second)
    assert second.stopped_in_order() == ["coordinator", "monitor", "executor", "gateway", "cache", "nats"]
    assert "restarting" not in second.text()
    _until(lambda: not any(state.pid_alive(pid) for pid in pids), "every process of the stack to exit", 10)


def test_a_hangup_stops_everything_in_order(tmp_path: Path) -> None:
    """The terminal `up` runs in is closed: SIGHUP stops the stack as Ctrl-C does, nothing is left running."""
    up = _start_up(tmp_path)
    try:
        pids = list(up.info().pids.values())
        os.kill(up.process.pid, signal.SIGHUP)
        assert up.process.wait(60) == 0
    finally:
        _end(up)
    assert up.stopped_in_order() == ["coordinator", "monitor", "executor", "gateway", "cache", "nats"], up.text()
    _until(lambda: not any(state.pid_alive(pid) for pid in pids), "every process of the stack to exit", 10)


def test_an_up_killed_with_sigkill_leaves_nothing_running_once_the_next_up_starts(tmp_path: Path) -> None:
    """SIGKILL gives up no chance to stop its processes (each in a session of its own): the next ``up`` on the
    home stops them before it opens the same JetStream store; meanwhile a second ``up`` is refused."""
    first = _start_up(tmp_path)
    try:
        refused = subprocess.run(
            [*hedgebridge_command(), "up"], env=_env(tmp_path), capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"a stack is already running from {tmp_path} (pid {first.process.pid})" in refused.stderr
        pids = dict(first.info().pids)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(60)
        assert all(state.pid_alive(pid) for pid in pids.values())  # left running, as the record says
    except BaseException:
        _end(first)
        raise
    second = _start_up(tmp_path)
    try:
        text = second.text()
        assert f"an earlier up (pid {first.process.pid}) did not stop its processes: stopping coordinator" in text
        _until(lambda: not any(state.pid_alive(pid) for pid in pids.values()), "the earlier processes to exit", 10)
        assert second.cli("status").returncode == 0
    finally:
        _end(second)
