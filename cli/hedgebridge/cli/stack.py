"""``hedgebridge up``: the whole stack on one machine, no Docker.

Starts nats-server (JetStream, data in ``<home>/nats``) and valkey-server from the pip-installed binaries
unless ``--nats-url`` / ``--redis-url`` name running ones, then the gateway, executor, monitor and coordinator
as separate processes (and, with ``--demo``, simulated terminals). A default port that is taken is never
shared: ``up`` says so and takes a free one. Servers it did not start are never stopped. Ctrl-C stops
everything in order.

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
from nats.aio.msg import Msg

from hedgebridge.common.servers import (
    NatsServer,
    ServerError,
    ValkeyServer,
    free_port,
    port_is_free,
    terminate,
    wait_for_port,
)
from hedgebridge.protocol import (
    ClosedEvent,
    OpenedEvent,
    ProtocolError,
    TerminalStatus,
    subjects,
    unpack,
    unpack_event,
)

from . import state
from .state import CliError

DEFAULT_NATS_PORT = 4222
DEFAULT_REDIS_PORT = 6379
DEFAULT_GATEWAY_PORT = 8765


def say(text: str) -> None:
    print(text, flush=True)


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
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=env,
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
        server.start()
        self.servers.append(server)
        if isinstance(server, NatsServer):
            say(
                f"{label:<10} {server.url}  (started, JetStream data in {server.data_dir / 'jetstream'}; "
                f"login {state.NATS_USER}, password in {state.nats_password_path(self.base)})"
            )
            return server.url
        say(f"{label:<10} {server.url}/0  (started, valkey-server, volatile)")
        return f"{server.url}/0"

    def check_alive(self) -> None:
        """Raise CliError naming the first process of the stack that has ended."""
        for child in self.children:
            code = child.exit_code()
            if code is not None:
                raise CliError(f"{child.name} exited with code {code} (log: {child.log_path})", 1)
        for server in self.servers:
            if not server.running:
                raise CliError(f"{server.name} stopped unexpectedly (log: {server.log_path})", 1)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        for server in reversed(self.servers):
            server.stop()


async def _wait_until(stack: Stack, check: Callable[[], Awaitable[bool]], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        stack.check_alive()
        await asyncio.sleep(0.1)
    raise CliError(f"{what} did not become ready within {timeout_s:g}s (logs in {stack.base / 'logs'})", 1)


async def _responds(nc: NatsClient, subject: str) -> bool:
    try:
        await nc.request(subject, b"", timeout=0.5)
    except Exception:
        return False
    return True


class Activity:
    """Prints what happens on the stack: terminals coming and going, orders filled or failed."""

    def __init__(self) -> None:
        self.online: set[str] = set()

    async def on_status(self, msg: Msg) -> None:
        with contextlib.suppress(ProtocolError):
            status = unpack(msg.data, TerminalStatus)
            if status.status == "CONNECTED":
                self.online.add(status.account_id)
                say(f"  terminal {status.account_id} connected ({status.gateway_id})")
            else:
                self.online.discard(status.account_id)
                say(f"  terminal {status.account_id} disconnected: {status.reason}")

    async def on_result(self, msg: Msg) -> None:
        with contextlib.suppress(ProtocolError):
            event = unpack_event(msg.data)
            if isinstance(event, OpenedEvent):
                if event.status == "SUCCESS":
                    lots = f"{event.volume:g} lots " if event.volume else ""
                    say(f"  OPENED   {event.account_id} ticket {event.mt_ticket} {lots}@ {event.price}")
                else:
                    say(f"  OPEN FAILED  {event.account_id}: {event.error_message} ({event.error_code})")
            elif isinstance(event, ClosedEvent):
                if event.status == "SUCCESS":
                    say(f"  CLOSED   {event.account_id} ticket {event.mt_ticket} @ {event.price} profit {event.profit}")
                else:
                    say(f"  CLOSE FAILED {event.account_id}: {event.error_message} ({event.error_code})")


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
    for name, module in (
        ("gateway", "hedgebridge.gateway"),
        ("executor", "hedgebridge.executor"),
        ("monitor", "hedgebridge.monitor"),
        ("coordinator", "hedgebridge.coordinator"),
    ):
        child = Child(name, stack.python(module), logs_dir / f"{name}.log")
        child.start(env)
        stack.children.append(child)

    nc = await nats.connect(servers=login_url.split(","), name="hedgebridge-up", max_reconnect_attempts=-1)
    try:
        activity = Activity()
        await nc.subscribe(subjects.ALL_STATUS, cb=activity.on_status)
        for kind in ("opened", "closed"):
            await nc.subscribe(f"{subjects.PREFIX}.ea.*.evt.{kind}", cb=activity.on_result)

        async def gateway_ready() -> bool:
            return await asyncio.to_thread(wait_for_port, shown_host, gw_port, 0.2)

        await _wait_until(stack, gateway_ready, "the gateway", 20)
        await _wait_until(stack, lambda: _responds(nc, subjects.ORDER_REQUEST), "the executor", 20)
        await _wait_until(stack, lambda: _responds(nc, subjects.MONITOR_STATUS), "the monitor", 20)
        await _wait_until(stack, lambda: _responds(nc, subjects.ACTION_REQUEST), "the coordinator", 20)
        say(f"gateway    {gateway_url}  (pid {stack.children[0].pid}); clients: {gateway_url[:-3]}/client")
        say(f"executor   ready  (pid {stack.children[1].pid})")
        say(f"monitor    ready  (pid {stack.children[2].pid})")
        say(f"coordinator ready  (pid {stack.children[3].pid})")

        accounts: list[str] = []
        if args.demo:
            accounts = [f"SIM-{i:03d}" for i in range(1, args.accounts + 1)]
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
            )
            sim.start(env)
            stack.children.append(sim)
            await _wait_until(stack, lambda: _all_online(activity, accounts), "the simulated terminals", 20)
            say(f"sim        {len(accounts)} simulated terminal(s): {', '.join(accounts)}  (pid {sim.pid})")

        state.write_state(
            base,
            state.StackState(
                nats_url=nats_url,
                redis_url=redis_url,
                gateway_url=gateway_url,
                supervisor_pid=os.getpid(),
                pids={c.name: c.pid for c in stack.children},
                accounts=accounts,
                nats_auth=bool(stack.nats_password),
            ),
        )
        example = accounts[0] if accounts else "ACCOUNT"
        say("")
        say("hedgebridge is up. In another shell:")
        say(f"  hedgebridge token --role ea --account {example}      # a token terminals connect with")
        say(f"  hedgebridge order open --account {example} --symbol EURUSD --side BUY --volume 0.1")
        say("  hedgebridge status")
        if len(accounts) >= 2:
            say(f"  hedgebridge action hedge --leg {accounts[0]}:EURUSD:BUY:1 --leg {accounts[1]}:EURUSD:SELL:1")
        say("  hedgebridge watch --topic trades --topic actions")
        say(f"Logs in {logs_dir}. Ctrl-C stops everything.")
        say("")
        return await _supervise(stack, stop)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _all_online(activity: Activity, accounts: list[str]) -> bool:
    return all(a in activity.online for a in accounts)


async def _supervise(stack: Stack, stop: asyncio.Event) -> int:
    while not stop.is_set():
        try:
            stack.check_alive()
        except CliError as exc:
            say(f"{exc}; stopping the stack")
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    say("stopping…")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.gateway_port is None and os.environ.get("HEDGEBRIDGE_GATEWAY_PORT"):
        try:
            args.gateway_port = int(os.environ["HEDGEBRIDGE_GATEWAY_PORT"])
        except ValueError:
            raise CliError("HEDGEBRIDGE_GATEWAY_PORT is not a port number") from None
    base = state.home(args.home)
    base.mkdir(parents=True, exist_ok=True)
    running = state.read_state(base)
    if running is not None:
        raise CliError(f"a stack is already running from {base} (pid {running.supervisor_pid})", 1)
    stack = Stack(args, base)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await _run(stack, stop)

    try:
        return asyncio.run(main())
    except ServerError as exc:
        raise CliError(str(exc), 1) from None
    finally:
        stack.stop()
        state.clear_state(base)
        say("stopped")
