"""``hedgebridge sim --terminal ea``: compiled Expert Advisors instead of the Python simulator.

One EA process per account (accounts and tokens as for the Python simulator), each on its own simulated trade
server, connected to the gateway through its own WebSocket proxy. The EA's transport is ``--transport dll``
(the WebSocket library, built with ``make -C dll linux``) or ``native`` (MQL5 sockets). Options only the Python
simulator has are refused; ``--symbols`` and ``--tick-interval-ms`` become the EA's PRICE symbols and interval.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from hedgebridge.sim.ea import launch

from . import output
from .state import CliError

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 6

# options of the Python simulator the compiled EA has no equivalent for, and their defaults
PYTHON_SIM_ONLY = {
    "fill_latency_ms": "--fill-latency-ms",
    "slippage_points": "--slippage-points",
    "reject_rate": "--reject-rate",
    "disconnect_rate": "--disconnect-rate",
    "balance": "--balance",
    "seed": "--seed",
}


def refused_options(args: argparse.Namespace) -> list[str]:
    """The Python-simulator options given on the command line (their parser default is None)."""
    return [flag for name, flag in PYTHON_SIM_ONLY.items() if getattr(args, name, None) is not None]


def gateway_address(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a ``ws://`` gateway URL; the proxy reads frames, so ``wss://`` cannot pass it."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise CliError(f"--terminal ea needs a ws:// gateway URL (the EA's proxy reads the frames), not {url}")
    try:
        port = parts.port or 80
    except ValueError:
        raise CliError(f"invalid gateway URL {url}") from None
    return parts.hostname or "127.0.0.1", port, parts.path or "/ea"


def run(args: argparse.Namespace, url: str, accounts: list[str], token_for: Callable[[str], str]) -> int:
    refused = refused_options(args)
    if refused:
        raise CliError(f"{', '.join(refused)}: not supported with --terminal ea", EXIT_USAGE)
    transport = launch.check_transport(args.transport)
    host, port, path = gateway_address(url)
    if args.tick_interval_ms < 0:
        raise CliError("--tick-interval-ms must be 0 or more", EXIT_USAGE)
    symbols = tuple(s for s in args.symbols.split(",") if s)
    settings = launch.EaSettings(
        symbol=symbols[0] if symbols else "EURUSD",
        price_symbols=symbols,
        price_interval_ms=args.tick_interval_ms,
        reconnect_min_ms=500,
        reconnect_max_ms=30_000,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with tempfile.TemporaryDirectory(prefix="hedgebridge-ea-") as files:
            eas = await launch.start_many(
                accounts,
                token_for,
                transport,
                gateway_host=host,
                gateway_port=port,
                gateway_path=path,
                files_root=Path(files),
                settings=settings,
            )
            names = ", ".join(ea.account_id for ea in eas)
            print(f"running {len(eas)} compiled EA(s), {transport} transport, against {url}: {names}", flush=True)
            try:
                with output.stop_when_closed(stop.set):
                    await stop.wait()
            finally:
                await asyncio.gather(*(ea.stop("hedgebridge sim stopped") for ea in eas), return_exceptions=True)

    try:
        asyncio.run(main())
    except launch.EaUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    return 0
