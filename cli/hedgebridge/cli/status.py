"""``status`` (the monitor's picture of the terminals, orders and alerts, with the local stack's processes) and
``ping`` (whether a service answers: a health probe for containers and scripts)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import bus
from hedgebridge.protocol import MonitorSnapshot, subjects, unpack

from . import output, state
from .commands import EXIT_UNAVAILABLE, cli_connect
from .state import CliError


async def fetch_status(url: str, wait_s: float = 2.0) -> MonitorSnapshot:
    nc = await cli_connect(url)
    try:
        reply = await nc.request(subjects.MONITOR_STATUS, b"", timeout=wait_s)
        return unpack(reply.data, MonitorSnapshot)
    except (NoRespondersError, NatsTimeoutError):
        raise CliError("the monitor is not running", EXIT_UNAVAILABLE) from None
    finally:
        await nc.close()


def format_status(snapshot: MonitorSnapshot) -> str:
    lines = [f"{'account':<16} {'state':<13} {'balance':>12} {'equity':>12} {'margin%':>9} {'pos':>4}  gateway"]
    for t in snapshot.terminals:
        level = f"{t.margin_level:.1f}" if t.margin_level is not None else "-"
        money = [f"{v:.2f}" if v is not None else "-" for v in (t.balance, t.equity)]
        state_text = "connected" if t.connected else "disconnected"
        lines.append(
            f"{t.account_id:<16} {state_text:<13} {money[0]:>12} {money[1]:>12} {level:>9} {t.open_positions:>4}  "
            f"{t.gateway_id}{'  (' + t.reason + ')' if t.reason else ''}"
        )
    if not snapshot.terminals:
        lines.append("(no terminal has connected yet)")
    lines.append(f"orders: {snapshot.orders_succeeded} succeeded, {snapshot.orders_failed} failed")
    for alert in snapshot.alerts:  # the monitor's open alerts
        lines.append(f"ALERT {alert.severity:<8} {alert.key}  {alert.message}")
    return "\n".join(lines)


def format_services(services: dict[str, state.ServiceState]) -> str:
    """The processes of the local stack: state, pid, restarts, when last restarted and how each last ended."""
    lines = [f"{'process':<12} {'state':<11} {'pid':>8} {'restarts':>8}  {'last restart':<20}  last exit"]
    for name, service in services.items():
        pid = str(service.pid) if service.pid else "-"
        lines.append(
            f"{name:<12} {service.state:<11} {pid:>8} {service.restarts:>8}  {service.last_restart or '-':<20}  "
            f"{service.last_exit or '-'}"
        )
    return "\n".join(lines)


def _local_services(args: argparse.Namespace, base: Path) -> dict[str, state.ServiceState]:
    """The processes of the stack ``up`` runs from ``base``, unless the command was pointed at another NATS."""
    running = state.read_state(base)
    if running is None:
        return {}
    chosen = args.nats_url or os.environ.get("HEDGEBRIDGE_NATS_URL")
    return running.services if chosen in (None, "", running.nats_url) else {}


def status_json(snapshot: MonitorSnapshot, services: dict[str, state.ServiceState]) -> dict[str, Any]:
    """``status --json``: the monitor's snapshot with every field (README, "Commands"), and ``processes``, the
    local stack's processes by name (empty when the command is not looking at the stack ``up`` runs here)."""
    shown: dict[str, Any] = output.full(snapshot)
    shown["processes"] = output.full(services)
    return shown


def cmd_status(args: argparse.Namespace) -> int:
    base = state.home(args.home)
    url = state.resolve_nats_url(args.nats_url, base)
    services = _local_services(args, base)
    if services and not args.json:
        print(format_services(services) + "\n", flush=True)  # shown even when the monitor does not answer
    snapshot = asyncio.run(fetch_status(url))
    if args.json:
        print(json.dumps(status_json(snapshot, services)))
    else:
        print(format_status(snapshot))
    return 0


async def _ping_gateway(host: str, port: int, wait_s: float) -> None:
    """The gateway answers HTTP on its port (a request without a WebSocket upgrade is refused with a status)."""
    try:
        async with asyncio.timeout(wait_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /ea HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError) as exc:
        raise CliError(f"gateway at {host}:{port} does not answer: {exc or type(exc).__name__}", 1) from None
    if not status_line.startswith(b"HTTP/1.1 "):
        raise CliError(f"gateway at {host}:{port} answered something other than HTTP", 1)


async def _ping_subject(url: str, subject: str, what: str, wait_s: float) -> None:
    nc = await cli_connect(url, wait_s)
    try:
        await nc.request(subject, b"", timeout=wait_s)
    except (NoRespondersError, NatsTimeoutError):
        raise CliError(f"no {what} answers on {bus.redact(url)}", 1) from None
    finally:
        await nc.close()


def _ping_http(target: str, port: int | None, wait_s: float) -> None:
    """GET /healthz of ``target`` on this host: the gateway on its own port, the others on their health port."""
    if port is None:
        variable = "HEDGEBRIDGE_GATEWAY_PORT" if target == "gateway" else f"HEDGEBRIDGE_{target.upper()}_HEALTH_PORT"
        try:
            port = int(os.environ.get(variable) or (8765 if target == "gateway" else 8080))
        except ValueError:
            raise CliError(f"{variable} is not a port number") from None
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=wait_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        raise CliError(f"{target}: {url} does not answer: {exc}", 1) from None
    if status != 200:
        raise CliError(f"{target}: {url} answered {status}", 1)


def cmd_ping(args: argparse.Namespace) -> int:
    """Exit 0 when the named service answers: a health probe for containers and scripts."""
    if args.http:
        _ping_http(args.target, args.port, args.timeout)
    elif args.target == "gateway":
        host = os.environ.get("HEDGEBRIDGE_GATEWAY_HOST", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        port = int(os.environ.get("HEDGEBRIDGE_GATEWAY_PORT", "8765"))
        asyncio.run(_ping_gateway(args.host or host, args.port or port, args.timeout))
    else:
        url = state.resolve_nats_url(args.nats_url, state.home(args.home))
        subject = {"executor": subjects.ORDER_REQUEST, "coordinator": subjects.ACTION_REQUEST}.get(
            args.target, subjects.MONITOR_STATUS
        )
        asyncio.run(_ping_subject(url, subject, args.target, args.timeout))
    return 0
