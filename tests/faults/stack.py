"""The fault suite's stack: every part a real OS process on loopback, started as ``hedgebridge up`` starts them.

A three-node NATS cluster (JetStream, streams and buckets replicated three times), the cache (valkey-server),
two gateways, two executors, the coordinator and the monitor (``python -m hedgebridge.<service>``, configured
by environment variables), and the simulated terminals (``python -m tests.faults.terminal_host``). Each
service runs in a session of its own, so a kill or a pause reaches its whole process group; ``close`` kills
whatever is left, also when the test failed half-way.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsCluster, NatsServer, ValkeyServer, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Service:
    """One service process: ``python -m hedgebridge.<module>`` with ``env``, its output in ``log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str = ""  # /readyz answers 200 once the service is ready
    process: subprocess.Popen[bytes] | None = None
    stdin: bool = False
    paused: bool = False

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.PIPE if self.stdin else out,
                stderr=out,
                stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
                start_new_session=True,
            )
        self.paused = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        if not self.running:
            return False
        if not self.ready_url:
            return True
        try:
            with urllib.request.urlopen(self.ready_url, timeout=0.5) as answer:
                return bool(answer.status == 200)
        except (OSError, ValueError):
            return False

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the process group, as a crash or an out-of-memory kill."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        self.paused = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@dataclass
class FaultStack:
    """The processes of one fault run; ``start`` them, ``close`` them (always)."""

    base: Path
    accounts: list[str]
    secret: str = field(default_factory=auth.new_secret)
    cluster: NatsCluster = field(init=False)
    cache: ValkeyServer = field(init=False)
    services: dict[str, Service] = field(default_factory=dict)
    gateway_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cluster = NatsCluster(self.base / "nats", size=3)
        for node in self.cluster.nodes:
            node.new_session = True
        self.cache = ValkeyServer(self.base / "cache")
        self.cache.new_session = True

    @property
    def redis_url(self) -> str:
        return f"{self.cache.url}/0"

    @property
    def journal(self) -> Path:
        return self.base / "terminals.jsonl"

    def gateway_url(self, name: str, path: str = "ea") -> str:
        return f"ws://127.0.0.1:{self.gateway_ports[name]}/{path}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
        env.update(
            HEDGEBRIDGE_NATS_URL=self.cluster.url,
            HEDGEBRIDGE_REDIS_URL=self.redis_url,
            HEDGEBRIDGE_JWT_SECRET=self.secret,
            HEDGEBRIDGE_STREAM_REPLICAS="3",
            HEDGEBRIDGE_LOG_FORMAT="json",
            HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S="30",
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return env

    def _service(self, name: str, module: str, ready_url: str, **extra: str) -> Service:
        service = Service(
            name, [sys.executable, "-m", f"hedgebridge.{module}"], self.env(**extra), self.base / "logs" / f"{name}.log"
        )
        service.ready_url = ready_url
        self.services[name] = service
        return service

    def start(self, timeout_s: float = 60.0) -> None:
        atexit.register(self.close)  # also when the test process ends without reaching the test's finally
        self.cluster.start(timeout_s)
        self.cache.start()
        for name in ("gw-1", "gw-2"):
            port = free_port()
            self.gateway_ports[name] = port
            self._service(
                name,
                "gateway",
                f"http://127.0.0.1:{port}/readyz",
                HEDGEBRIDGE_GATEWAY_ID=name,
                HEDGEBRIDGE_GATEWAY_PORT=str(port),
                HEDGEBRIDGE_GATEWAY_HOST="127.0.0.1",
                HEDGEBRIDGE_GATEWAY_HEARTBEAT_INTERVAL_MS="250",
                HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS="1500",
            )
        for name in ("ex-1", "ex-2"):
            port = free_port()
            self._service(
                name,
                "executor",
                f"http://127.0.0.1:{port}/readyz",
                HEDGEBRIDGE_EXECUTOR_ID=name,
                HEDGEBRIDGE_EXECUTOR_HEALTH_HOST="127.0.0.1",
                HEDGEBRIDGE_EXECUTOR_HEALTH_PORT=str(port),
                HEDGEBRIDGE_EXECUTOR_ORDER_TIMEOUT_MS="4000",
                HEDGEBRIDGE_EXECUTOR_DELIVERY_TIMEOUT_MS="1000",
                HEDGEBRIDGE_EXECUTOR_COMMAND_TTL_MS="3000",
                HEDGEBRIDGE_EXECUTOR_LEASE_MS="1500",
                HEDGEBRIDGE_EXECUTOR_SYNC_TIMEOUT_MS="1500",
                HEDGEBRIDGE_EXECUTOR_CACHE_CHECK_MS="200",
            )
        port = free_port()
        self._service(
            "coordinator",
            "coordinator",
            f"http://127.0.0.1:{port}/readyz",
            HEDGEBRIDGE_COORDINATOR_ID="co-1",
            HEDGEBRIDGE_COORDINATOR_HEALTH_HOST="127.0.0.1",
            HEDGEBRIDGE_COORDINATOR_HEALTH_PORT=str(port),
            HEDGEBRIDGE_COORDINATOR_LEG_TIMEOUT_MS="5000",
            HEDGEBRIDGE_COORDINATOR_LEASE_MS="1500",
            HEDGEBRIDGE_COORDINATOR_SYNC_TIMEOUT_MS="1500",
        )
        port = free_port()
        self._service(
            "monitor",
            "monitor",
            f"http://127.0.0.1:{port}/readyz",
            HEDGEBRIDGE_MONITOR_HEALTH_HOST="127.0.0.1",
            HEDGEBRIDGE_MONITOR_HEALTH_PORT=str(port),
        )
        urls = ",".join(self.gateway_url(name) for name in ("gw-1", "gw-2"))
        terminals = Service(
            "terminals",
            [
                sys.executable,
                "-m",
                "tests.faults.terminal_host",
                "--urls",
                urls,
                "--accounts",
                ",".join(self.accounts),
                "--journal",
                str(self.journal),
                "--fill-latency-ms",
                "30",
            ],
            self.env(),
            self.base / "logs" / "terminals.log",
            stdin=True,
        )
        self.services["terminals"] = terminals
        for service in self.services.values():
            if service.name != "terminals":
                service.start()
        self.wait_ready(list(self.services)[:-1], timeout_s)
        terminals.start()

    def wait_ready(self, names: list[str], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(names)
        while waiting:
            waiting = [n for n in waiting if not self.services[n].ready()]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready within {timeout_s}s: {', '.join(waiting)} (logs in {self.base})")
            for name in waiting:
                if not self.services[name].running:
                    raise AssertionError(f"{name} exited with {self.services[name].process}: see {self.base}/logs")
            time.sleep(0.05)

    # --- the terminals' process ----------------------------------------------------------------------------

    def tell(self, line: str) -> None:
        process = self.services["terminals"].process
        assert process is not None
        assert process.stdin is not None
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()

    def terminal_state(self) -> dict[str, dict[str, object]]:
        """Every account's open tickets, balance and connection, as the terminals see them."""
        process = self.services["terminals"].process
        assert process is not None
        assert process.stdout is not None
        self.tell("state")
        answer: dict[str, dict[str, object]] = json.loads(process.stdout.readline())
        return answer

    def nats_node(self, port: int) -> NatsServer:
        return next(n for n in self.cluster.nodes if n.port == port)

    def close(self) -> None:
        """Stop everything, killing what does not stop; never raises (and may be called again)."""
        for service in reversed(list(self.services.values())):
            with contextlib.suppress(Exception):
                service.stop()
        for server in (self.cache, *self.cluster.nodes):
            with contextlib.suppress(Exception):
                if server.process is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(server.process.pid, signal.SIGCONT)
                server.stop(5)
        atexit.unregister(self.close)
