"""``hedgebridge up``: the whole stack on one machine, no Docker.

Starts nats-server (JetStream, data in ``<home>/nats``) and valkey-server from the pip-installed binaries
unless ``--nats-url`` / ``--redis-url`` name running ones, then the gateway, executor, monitor and coordinator
as separate processes (and, with ``--demo``, simulated terminals). A default port that is taken is never
shared: ``up`` says so and takes a free one. Servers it did not start are never stopped.

Every process ``up`` started is supervised (``hedgebridge.cli.supervise``, rules in
``hedgebridge.cli.supervision``): one that exits is restarted after a growing delay — NATS on the same port
with the same JetStream store, the cache empty (the services rebuild it from the terminals' snapshots) — and
one that keeps exiting is given up on while the rest keeps running; ``<home>/stack.json`` says which, for
``hedgebridge status``. Servers and services run in sessions of their own, so that a Ctrl-C in the terminal
reaches ``up`` alone; Ctrl-C, SIGTERM or SIGHUP — or the reader of ``up``'s output going away (``up | head``;
``up`` then exits with 141) — stops the clients and services first, then the cache and NATS.

The NATS server ``up`` starts requires a login: user ``hedgebridge`` with a password generated once and kept
in ``<home>/nats-password`` (mode 0600); the services get it in ``HEDGEBRIDGE_NATS_USER`` /
``HEDGEBRIDGE_NATS_PASSWORD`` and the other commands read it through the state file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient

from hedgebridge.common.servers import (
    NatsServer,
    ServerError,
    ValkeyServer,
    free_port,
    port_is_free,
    terminate,
    wait_for_port,
)
from hedgebridge.protocol import subjects

from . import leftovers, output, state
from .activity import Activity
from .output import say
from .state import CliError
from .supervise import Supervision

DEFAULT_NATS_PORT = 4222
DEFAULT_REDIS_PORT = 6379
DEFAULT_GATEWAY_PORT = 8765
READY_TIMEOUT_S = 60.0


def choose_port(explicit: int | None, default: int, what: str, flag: str, host: str) -> int:
    if explicit is not None:
        if explicit and not port_is_free(explicit, host):
            raise CliError(f"{flag} {explicit}: the port is already in use")
        return explicit or free_port(host)
    if port_is_free(default, host):
        return default
    chosen = free_port(host)
    say(f"port {default} is taken (another {what} on this machine?): using {chosen} instead ({flag} to choose)")
    return chosen


@dataclass
class Child:
    """A service (or the simulated terminals) as a process of its own, its output appended to ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout_s)


@dataclass
class ServerUnit:
    """A server ``up`` started (NATS or the cache), as the supervision drives it: restarted on the same port
    with the same data directory (NATS's JetStream store survives; the cache is volatile)."""

    name: str
    server: NatsServer | ValkeyServer

    @property
    def pid(self) -> int:
        return self.server.pid or 0

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def start(self) -> None:
        self.server.start()

    def exit_code(self) -> int | None:
        process = self.server.process
        return process.poll() if process is not None else None

    def stop(self) -> None:
        self.server.stop()


def _unit_name(server: NatsServer | ValkeyServer) -> str:
    return "nats" if isinstance(server, NatsServer) else "cache"


@dataclass
class Stack:
    args: argparse.Namespace
    base: Path
    servers: list[NatsServer | ValkeyServer] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    nats_password: str = ""  # set when up started NATS with a login

    def python(self, module: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", module, *extra]

    def start_servers(self) -> tuple[str, str]:
        args = self.args
        nats_url = self._server(args.nats_url, NatsServer, args.nats_port, DEFAULT_NATS_PORT, "NATS server", "nats")
        redis_url = self._server(
            args.redis_url, ValkeyServer, args.redis_port, DEFAULT_REDIS_PORT, "Redis server", "redis"
        )
        return nats_url, redis_url

    def _server(
        self,
        given_url: str | None,
        kind: type[NatsServer | ValkeyServer],
        port: int | None,
        default_port: int,
        what: str,
        option: str,
    ) -> str:
        label = "NATS" if kind is NatsServer else "cache"
        if given_url:
            say(f"{label:<10} {given_url}  (given; not managed by up)")
            return given_url
        host = "127.0.0.1"
        chosen = choose_port(port, default_port, what, f"--{option}-port", host)
        server: NatsServer | ValkeyServer
        if kind is NatsServer:
            self.nats_password = state.load_or_create_nats_password(self.base)
            server = NatsServer(
                self.base / "nats", port=chosen, host=host, user=state.NATS_USER, password=self.nats_password
            )
        else:
            server = ValkeyServer(self.base / "cache", port=chosen, host=host)
        server.new_session = True  # a Ctrl-C reaches up alone, which stops the servers last
        server.start()
        self.servers.append(server)
        leftovers.record(self.base, {_unit_name(s): s.pid or 0 for s in self.servers})
        if isinstance(server, NatsServer):
            say(
                f"{label:<10} {server.url}  (started, JetStream data in {server.data_dir / 'jetstream'}; "
                f"login {state.NATS_USER}, password in {state.nats_password_path(self.base)})"
            )
            return server.url
        say(f"{label:<10} {server.url}/0  (started, valkey-server, volatile)")
        return f"{server.url}/0"

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        for server in reversed(self.servers):
            server.stop()


async def _responds(nc: NatsClient, subject: str) -> bool:
    try:
        await nc.request(subject, b"", timeout=0.5)
    except Exception:
        return False
    return True


async def _run(stack: Stack, stop: asyncio.Event) -> int:
    args = stack.args
    base = stack.base
    secret = os.environ.get("HEDGEBRIDGE_JWT_SECRET") or state.load_or_create_secret(base)
    nats_url, redis_url = stack.start_servers()
    host = args.host
    gw_port = choose_port(args.gateway_port, DEFAULT_GATEWAY_PORT, "gateway", "--gateway-port", host)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    gateway_url = f"ws://{shown_host}:{gw_port}/ea"
    env = dict(os.environ)
    env.update(
        HEDGEBRIDGE_NATS_URL=nats_url,
        HEDGEBRIDGE_REDIS_URL=redis_url,
        HEDGEBRIDGE_JWT_SECRET=secret,
        HEDGEBRIDGE_GATEWAY_HOST=host,
        HEDGEBRIDGE_GATEWAY_PORT=str(gw_port),
        HEDGEBRIDGE_GATEWAY_URL=gateway_url,
        HEDGEBRIDGE_LOG_FORMAT="json",
    )
    login_url = nats_url
    if stack.nats_password:
        env.update(HEDGEBRIDGE_NATS_USER=state.NATS_USER, HEDGEBRIDGE_NATS_PASSWORD=stack.nats_password)
        login_url = state.with_credentials(nats_url, state.NATS_USER, stack.nats_password)
    logs_dir = base / "logs"
    accounts = [f"SIM-{i:03d}" for i in range(1, args.accounts + 1)] if args.demo else []
    published = False

    def publish() -> None:
        leftovers.record(base, {name: unit.pid for name, unit in supervision.core.units.items()})
        if published:
            state.write_state(
                base,
                state.StackState(
                    nats_url=nats_url,
                    redis_url=redis_url,
                    gateway_url=gateway_url,
                    supervisor_pid=os.getpid(),
                    pids={name: unit.pid for name, unit in supervision.core.units.items() if unit.pid},
                    accounts=accounts,
                    nats_auth=bool(stack.nats_password),
                    services=supervision.services(),
                ),
            )

    supervision = Supervision(say, publish)
    for server in stack.servers:
        await supervision.add(ServerUnit(_unit_name(server), server), running=True)
    for name, module in (
        ("gateway", "hedgebridge.gateway"),
        ("executor", "hedgebridge.executor"),
        ("monitor", "hedgebridge.monitor"),
        ("coordinator", "hedgebridge.coordinator"),
    ):
        child = Child(name, stack.python(module), logs_dir / f"{name}.log", env)
        stack.children.append(child)
        await supervision.add(child)

    async def quiet(_: Exception) -> None:
        return None

    nc = await nats.connect(
        servers=login_url.split(","), name="hedgebridge-up", max_reconnect_attempts=-1, error_cb=quiet
    )

    async def close_client() -> None:
        # before NATS stops: a client left to reconnect to a server that is gone can hold up's exit
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)

    supervising = asyncio.create_task(supervision.run(stop, before_shutdown=close_client))
    try:
        activity = Activity()
        await nc.subscribe(subjects.ALL_STATUS, cb=activity.on_status)
        for kind in ("opened", "closed"):
            await nc.subscribe(f"{subjects.PREFIX}.ea.*.evt.{kind}", cb=activity.on_result)

        async def gateway_ready() -> bool:
            return await asyncio.to_thread(wait_for_port, shown_host, gw_port, 0.2)

        checks: dict[str, Callable[[], Awaitable[bool]]] = {
            "gateway": gateway_ready,
            "executor": lambda: _responds(nc, subjects.ORDER_REQUEST),
            "monitor": lambda: _responds(nc, subjects.MONITOR_STATUS),
            "coordinator": lambda: _responds(nc, subjects.ACTION_REQUEST),
        }
        ready = {name: await _ready(supervision, name, check, stop) for name, check in checks.items()}
        if ready["gateway"]:
            say(f"gateway    {gateway_url}  (pid {supervision.pid('gateway')}); clients: {gateway_url[:-3]}/client")
        for name in ("executor", "monitor", "coordinator"):
            if ready[name]:
                say(f"{name:<10} ready  (pid {supervision.pid(name)})")

        if accounts and not stop.is_set():
            sim = Child(
                "sim",
                stack.python(
                    "hedgebridge.cli",
                    "sim",
                    "--url",
                    gateway_url,
                    "--fill-latency-ms",
                    str(args.fill_latency_ms),
                    *[a for account in accounts for a in ("--account", account)],
                ),
                logs_dir / "sim.log",
                env,
            )
            stack.children.append(sim)
            await supervision.add(sim)
            if await _ready(supervision, "sim", lambda: _all_online(activity, accounts), stop):
                say(f"sim        {len(accounts)} simulated terminal(s): {', '.join(accounts)}  (pid {sim.pid})")

        if not stop.is_set():  # else a Ctrl-C came while the stack was starting
            published = True
            publish()
            missing = [name for name, unit in supervision.core.units.items() if unit.phase == "given up"]
            _announce(accounts, missing, logs_dir)
        await supervising
        return 0
    finally:
        if not supervising.done():
            stop.set()
            await supervising
        await close_client()


def _announce(accounts: list[str], missing: list[str], logs_dir: Path) -> None:
    example = accounts[0] if accounts else "ACCOUNT"
    say("")
    without = f", without {', '.join(missing)} (given up)" if missing else ""
    say(f"hedgebridge is up{without}. In another shell:")
    say(f"  hedgebridge token --role ea --account {example}      # a token terminals connect with")
    say(f"  hedgebridge order open --account {example} --symbol EURUSD --side BUY --volume 0.1")
    say("  hedgebridge status                                 # also each process's restarts")
    if len(accounts) >= 2:
        say(f"  hedgebridge action hedge --leg {accounts[0]}:EURUSD:BUY:1 --leg {accounts[1]}:EURUSD:SELL:1")
    say("  hedgebridge watch --topic trades --topic actions")
    say(f"Logs in {logs_dir}. A process that exits is restarted. Ctrl-C stops everything.")
    say("")


async def _ready(
    supervision: Supervision,
    name: str,
    check: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    timeout_s: float = READY_TIMEOUT_S,
) -> bool:
    """Whether ``name`` became ready (False: it was given up, did not within ``timeout_s``, or a stop came)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and not supervision.given_up(name):
        if await check():
            return True
        if time.monotonic() > deadline:
            log = supervision.processes[name].log_path
            say(f"{name} is not ready after {timeout_s:g}s (log: {log}); up keeps supervising it")
            return False
        await asyncio.sleep(0.1)
    return False


async def _all_online(activity: Activity, accounts: list[str]) -> bool:
    return all(a in activity.online for a in accounts)


def cmd_up(args: argparse.Namespace) -> int:
    if args.gateway_port is None and os.environ.get("HEDGEBRIDGE_GATEWAY_PORT"):
        try:
            args.gateway_port = int(os.environ["HEDGEBRIDGE_GATEWAY_PORT"])
        except ValueError:
            raise CliError("HEDGEBRIDGE_GATEWAY_PORT is not a port number") from None
    base = state.home(args.home)
    base.mkdir(parents=True, exist_ok=True)
    lock = leftovers.hold_lock(base)  # CliError when another up runs from this home
    leftovers.stop_leftovers(base, say)  # what an up that was killed left running, on the same store
    state.clear_state(base)
    stack = Stack(args, base)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        with output.stop_when_closed(stop.set):  # up | head -3: stop as on SIGTERM once head has gone
            return await _run(stack, stop)

    try:
        return asyncio.run(main())
    except ServerError as exc:
        raise CliError(str(exc), 1) from None
    finally:
        stack.stop()
        state.clear_state(base)
        leftovers.forget(base)
        lock.close()
        say("stopped")
