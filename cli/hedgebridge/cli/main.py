"""The ``hedgebridge`` command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from hedgebridge.common import auth

from . import bench, client_commands, commands, history, output, stack, symbols
from .state import CliError
from .status import cmd_ping, cmd_status


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _price(text: str) -> float:
    """A stop's price: 0 or more (0: none)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (none) or a price, got {text}")
    return value


def _service(module: str) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        entry = importlib.import_module(f"hedgebridge.{module}.__main__")
        code: int = entry.main()
        return code

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hedgebridge",
        description="Bridge MetaTrader 5 terminals to a backend of services over WebSocket and NATS.",
    )
    parser.add_argument(
        "--home", help="state directory of the local stack (default $HEDGEBRIDGE_HOME or ~/.hedgebridge)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole stack on this machine (no Docker)")
    up.add_argument("--demo", action="store_true", help="also run simulated terminals")
    up.add_argument("--accounts", type=int, default=3, help="simulated terminals with --demo (default 3)")
    up.add_argument("--fill-latency-ms", type=float, default=20.0, help="simulated fill latency (default 20)")
    up.add_argument("--nats-url", help="use this running NATS server instead of starting one")
    up.add_argument("--redis-url", help="use this running Redis-compatible server instead of starting one")
    up.add_argument("--nats-port", type=int, help="port for the NATS server up starts (default 4222, or a free one)")
    up.add_argument("--redis-port", type=int, help="port for the cache up starts (default 6379, or a free one)")
    up.add_argument(
        "--gateway-port", type=int, help="gateway port (default $HEDGEBRIDGE_GATEWAY_PORT, else 8765 or a free one)"
    )
    up.add_argument(
        "--host",
        default=os.environ.get("HEDGEBRIDGE_GATEWAY_HOST", "127.0.0.1"),
        help="gateway listen address (default $HEDGEBRIDGE_GATEWAY_HOST or 127.0.0.1)",
    )
    up.set_defaults(func=stack.cmd_up)

    token = sub.add_parser("token", help="print a JWT the running stack accepts")
    token.add_argument("--role", choices=auth.ROLES, default="ea")
    token.add_argument(
        "--account",
        action="append",
        help="role ea: the MT5 account id (the subject); role system: an account in scope (repeatable)",
    )
    token.add_argument("--user", action="append", help="role system: a user whose actions it may watch (repeatable)")
    token.add_argument("--subject", help="the subject for system/admin tokens")
    token.add_argument("--ttl", type=_positive(float), default=86_400.0, help="lifetime in seconds (default 1 day)")
    token.add_argument("--secret", help="the HS256 key (default $HEDGEBRIDGE_JWT_SECRET, or the local stack's)")
    token.set_defaults(func=commands.cmd_token)
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id (jti): gateways close its sessions (1008)")
    revoke.add_argument("jti", help="the token's jti claim")
    revoke.add_argument("--reason", help="a note kept with the revocation")
    revoke.add_argument("--nats-url", help="NATS (default $HEDGEBRIDGE_NATS_URL or the local stack's)")
    revoke.set_defaults(func=commands.cmd_token_revoke)

    order = sub.add_parser("order", help="open, close or modify a position and print the terminal's answer")
    order_sub = order.add_subparsers(dest="order_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--account", required=True, help="the MT5 account id")
    common.add_argument("--action-id", help="idempotency key; generated when absent")
    common.add_argument("--user-id", default="", help="who asks (carried in the command's metadata)")
    common.add_argument("--timeout", type=_positive(float), default=10.0, help="seconds to wait for the result")
    common.add_argument(
        "--ttl", type=_positive(float), help="seconds the order may wait for an unreachable account (default 3)"
    )
    common.add_argument("--nats-url", help="default $HEDGEBRIDGE_NATS_URL or the local stack's")
    common.add_argument("--result", action="store_true", help="also print the executor's full result on stderr")
    volumes = argparse.ArgumentParser(add_help=False)
    volumes.add_argument(
        "--round-volume",
        action="store_true",
        help="round a volume off the symbol's step down to it (else the order is INVALID)",
    )
    open_ = order_sub.add_parser("open", parents=[common, volumes], help="open a position")
    open_.add_argument("--symbol", required=True)
    open_.add_argument("--side", required=True, type=str.upper, choices=("BUY", "SELL"))
    open_.add_argument("--volume", required=True, type=_positive(float), help="lots")
    open_.add_argument("--sl", type=_price, help="stop loss price")
    open_.add_argument("--tp", type=_price, help="take profit price")
    modify = order_sub.add_parser("modify", parents=[common], help="set a position's stop loss and take profit")
    modify.add_argument("--position-id", help="the positionId from OPENED")
    modify.add_argument("--ticket", help="the MT5 ticket")
    modify.add_argument("--sl", type=_price, help="stop loss price (0: remove it; absent: keep it)")
    modify.add_argument("--tp", type=_price, help="take profit price (0: remove it; absent: keep it)")
    close = order_sub.add_parser("close", parents=[common, volumes], help="close a position")
    close.add_argument("--position-id", help="the positionId from OPENED")
    close.add_argument("--ticket", help="the MT5 ticket")
    close.add_argument("--volume", type=_positive(float), help="close only this many lots (default: all)")
    close.add_argument("--reason", default="manual", help="exit reason (default manual)")
    order.set_defaults(func=commands.cmd_order)

    sim = sub.add_parser("sim", help="run simulated MT5 terminals (EAs) against a gateway")
    sim.add_argument("--accounts", type=int, default=3, help="how many terminals (default 3)")
    sim.add_argument("--account", action="append", help="explicit account id (repeatable; overrides --accounts)")
    sim.add_argument("--prefix", default="SIM-", help="account id prefix (default SIM-)")
    sim.add_argument("--url", help="gateway URL (default $HEDGEBRIDGE_GATEWAY_URL or the local stack's)")
    sim.add_argument("--secret", help="key to mint the terminals' tokens (default as for 'token')")
    sim.add_argument(
        "--terminal",
        choices=["python", "ea"],
        default="python",
        help="python: the Python simulator (default); ea: the compiled Expert Advisor, one process per account",
    )
    sim.add_argument("--transport", choices=["dll", "native"], default="native", help="the EA's (--terminal ea)")
    sim.add_argument("--symbols", default="EURUSD,GBPUSD,USDJPY,XAUUSD")
    sim.add_argument("--fill-latency-ms", type=float, help="simulated fill latency (default 20)")
    sim.add_argument("--slippage-points", type=int, help="(default 0)")
    sim.add_argument("--reject-rate", type=float, help="probability an OPEN is rejected (0..1, default 0)")
    sim.add_argument("--tick-interval-ms", type=int, default=250, help="price ticks per symbol; 0 = none")
    sim.add_argument("--disconnect-rate", type=float, help="random drops per second per terminal (default 0)")
    sim.add_argument("--balance", type=float, help="(default 10000)")
    sim.add_argument("--seed", type=int, help="random seed for reproducible runs")
    sim.add_argument("--log-level", default="INFO")
    sim.set_defaults(func=commands.cmd_sim)

    status = sub.add_parser("status", help="terminals and order counts, from the monitor")
    status.add_argument("--nats-url", help="default $HEDGEBRIDGE_NATS_URL or the local stack's")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    ping = sub.add_parser("ping", help="exit 0 when a service answers (a health probe)")
    ping.add_argument("target", choices=("gateway", "executor", "monitor", "coordinator"))
    ping.add_argument("--nats-url", help="for executor/monitor: default $HEDGEBRIDGE_NATS_URL or the local stack's")
    ping.add_argument("--host", help="for gateway: default $HEDGEBRIDGE_GATEWAY_HOST or 127.0.0.1")
    ping.add_argument("--port", type=int, help="gateway, or --http: the port (default from the environment)")
    ping.add_argument("--timeout", type=_positive(float), default=3.0, help="seconds (default 3)")
    ping.add_argument(
        "--http",
        action="store_true",
        help="probe the service's /healthz on this host (the gateway's port, or $HEDGEBRIDGE_<SERVICE>_HEALTH_PORT)",
    )
    ping.set_defaults(func=cmd_ping)

    for name in ("gateway", "executor", "monitor", "coordinator"):
        svc = sub.add_parser(name, help=f"run the {name} service (configured by environment variables)")
        svc.set_defaults(func=_service(name))
    mt5bridge = sub.add_parser(
        "mt5bridge",
        help="drive a MetaTrader 5 terminal through the MetaTrader5 package (Windows; environment variables)",
    )
    mt5bridge.set_defaults(func=_service("mt5bridge"))

    bench_parser = sub.add_parser("bench", help="measure latencies against raw baselines and print a table")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(func=bench.main)

    client_commands.register(sub)  # action, watch
    symbols.register(sub)  # symbols specs
    history.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Its output may go to a pipe whose reader stops early (``| head -3``): the command then
    ends with 141, as one SIGPIPE ended, without a traceback (``output``)."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # a reader gone is noticed here, not in Python's flush at exit
    except BrokenPipeError:
        if not output.reader_gone():
            raise
        output.silence()
        return output.EXIT_BROKEN_PIPE
    return output.EXIT_BROKEN_PIPE if output.closed() else code


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "sim" and args.reject_rate is not None and not 0 <= args.reject_rate <= 1:
        parser.error("--reject-rate must be between 0 and 1")
    try:
        code: int = args.func(args)
    except CliError as exc:
        print(f"hedgebridge: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code
