"""``token``, ``order`` and ``sim``, and the NATS connection of a command (``cli_connect``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError

from hedgebridge.common import auth, bus, executor_client, logs, loop, streams
from hedgebridge.common.config import ConfigError
from hedgebridge.common.executor_client import Silence
from hedgebridge.protocol import (
    CloseOrder,
    ModifyOrder,
    OpenOrder,
    OrderRequest,
    OrderResult,
    to_builtins,
)
from hedgebridge.protocol import errors as codes
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from . import output, sim_ea, state
from .state import CliError

# Exit codes of `hedgebridge order`.
_T = TypeVar("_T")

EXIT_OK = 0  # FILLED
EXIT_FAILED = 1  # REJECTED: the terminal or the trade server refused the order
EXIT_USAGE = 2
EXIT_OUTCOME_UNKNOWN = 3  # sent, no result in time: being reconciled, never resent
EXIT_NOT_SENT = 4  # EXPIRED: the account stayed unreachable; nothing was sent
EXIT_INVALID = 5  # the request was rejected by validation
EXIT_UNAVAILABLE = 6  # NATS or the executor could not be reached
EXIT_PARTIAL = 7  # PARTIALLY_FILLED: part of the volume executed; the rest was not sent again
EXIT_IN_FLIGHT = 8  # an order with this actionId is still running

_EXIT_BY_STATUS = {
    "FILLED": EXIT_OK,
    "REJECTED": EXIT_FAILED,
    "OUTCOME_UNKNOWN": EXIT_OUTCOME_UNKNOWN,
    "EXPIRED": EXIT_NOT_SENT,
    "INVALID": EXIT_INVALID,
    "PARTIALLY_FILLED": EXIT_PARTIAL,
    "IN_FLIGHT": EXIT_IN_FLIGHT,
}


def cmd_token(args: argparse.Namespace) -> int:
    secret = state.resolve_secret(args.secret, state.home(args.home))
    accounts: list[str] = args.account or []
    if args.role == "ea":
        if len(accounts) != 1:
            raise CliError("an ea token needs exactly one --account")
        subject, accounts = accounts[0], []
    else:
        subject = args.subject or args.role  # a system token's scope: --account and --user
    users: list[str] = (args.user or []) if args.role == "system" else []
    if args.role != "system":
        accounts = []
    try:
        print(auth.mint_token(secret, role=args.role, subject=subject, ttl_s=args.ttl, accounts=accounts, users=users))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Put a token id on the revocation list: every gateway refuses the token and closes its sessions (1008)."""
    try:
        jti = auth.check_token_id(args.jti)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    url = state.resolve_nats_url(args.nats_url, state.home(args.home))
    replicas = int(os.environ.get("HEDGEBRIDGE_STREAM_REPLICAS", "1") or 1)

    async def run() -> int:
        nc = await cli_connect(url)
        try:
            return await streams.revoke(nc.jetstream(), jti, replicas, note=args.reason or "")
        finally:
            await nc.close()

    revision = asyncio.run(run())
    print(f"revoked {jti} (revision {revision})")
    return 0


def build_request(args: argparse.Namespace) -> OrderRequest:
    try:
        # what every order of the command line carries: its account, idempotency key, user and time limits
        common: dict[str, Any] = {
            "account_id": args.account,
            "action_id": args.action_id,
            "user_id": args.user_id,
            "timeout_ms": int(args.timeout * 1000),
            "ttl_ms": None if args.ttl is None else int(args.ttl * 1000),
        }
        if args.order_command == "open":
            return OpenOrder(
                symbol=args.symbol,
                side=args.side,
                volume=args.volume,
                round_volume=args.round_volume,
                stop_loss=args.sl,
                take_profit=args.tp,
                **common,
            )
        position = {"position_id": args.position_id, "mt_ticket": args.ticket}
        if args.order_command == "modify":
            return ModifyOrder(**position, stop_loss=args.sl, take_profit=args.tp, **common)
        return CloseOrder(
            **position, volume=args.volume, exit_reason=args.reason, round_volume=args.round_volume, **common
        )
    except (TypeError, ValueError, msgspec.ValidationError) as exc:
        raise CliError(f"invalid order: {exc}", EXIT_INVALID) from None


def explain(result: OrderResult) -> str:
    where = f"account {result.account_id}"
    ids = f"(actionId {result.action_id}, positionId {result.position_id})"
    if result.status == "REJECTED":
        retcode = f", MT5 retcode {result.retcode} ({result.retcode_class})" if result.retcode else ""
        return f"order rejected on {where} [{result.code}]: {result.message}{retcode} {ids}"
    if result.status == "OUTCOME_UNKNOWN":
        return (
            f"order sent to {where} but no result arrived in time: the outcome is unknown and is being "
            f"reconciled from the terminal's positions; it will not be sent again. Asking again with the same "
            f"actionId returns the reconciled result {ids}. ({result.message})"
        )
    if result.status == "EXPIRED":
        reason = f"{where} stayed unreachable past the order's time-to-live"
        if result.code == codes.EXECUTOR_UNAVAILABLE:
            reason = "no executor answered"
        return f"order not sent: {reason}; nothing was executed (the same --action-id may be used again)"
    if result.status == "PARTIALLY_FILLED":
        return f"order partially filled on {where}: {result.message} {ids}"
    if result.status == "IN_FLIGHT":
        return f"an order with actionId {result.action_id} is still running ({result.state}); ask again later"
    return f"order invalid [{result.code}]: {result.message}"


async def cli_connect(url: str, wait_s: float = 2.0) -> NatsClient:
    """One NATS connection for a command: fails fast with a CliError (exit 6) instead of retrying."""

    async def quiet(_: Exception) -> None:
        return None

    try:
        security = bus.connect_options(bus.security_from_env())  # HEDGEBRIDGE_NATS_USER… and TLS files
    except (ConfigError, OSError) as exc:
        raise CliError(str(exc)) from None
    await _reachable(url, wait_s)
    try:
        async with asyncio.timeout(wait_s + 1):
            return await nats.connect(
                servers=url.split(","),
                connect_timeout=wait_s,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=quiet,
                name="hedgebridge-cli",
                **security,
            )
    except (NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
        reason = bus.redact(str(exc) or type(exc).__name__)
        raise CliError(f"cannot reach NATS at {bus.redact(url)}: {reason}", EXIT_UNAVAILABLE) from None


async def _reachable(url: str, wait_s: float) -> None:
    """Fail at once, with the reason, when no server of ``url`` accepts a TCP connection."""
    reason = "no server in the URL"
    for server in url.split(","):
        parsed = urlsplit(server.strip() if "://" in server else f"nats://{server.strip()}")
        try:
            async with asyncio.timeout(wait_s):
                _, writer = await asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 4222)
            writer.close()
            return
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
    raise CliError(f"cannot reach NATS at {bus.redact(url)}: {reason}", EXIT_UNAVAILABLE)


async def _order(args: argparse.Namespace, request: OrderRequest) -> int:
    url = state.resolve_nats_url(args.nats_url, state.home(args.home))
    nc = await cli_connect(url)
    try:
        wait = args.timeout + 5  # the executor answers by the order timeout; leave room for transport
        try:
            answer = await executor_client.ask(nc, request, wait)
        except executor_client.UnreadableAnswer as exc:
            raise CliError(str(exc), EXIT_UNAVAILABLE) from None
        if answer.silence is Silence.NO_EXECUTOR:
            raise CliError("no executor is running (no responders on the order subject)", EXIT_UNAVAILABLE)
        if answer.silence is Silence.NO_REPLY:
            raise CliError(
                f"no answer from the executor within {wait:g}s: the outcome is unknown; "
                "check positions before retrying",
                EXIT_OUTCOME_UNKNOWN,
            )
        result = answer.result
    finally:
        await nc.close()
    if result.event is not None:
        print(json.dumps(to_builtins(result.event)))
    if args.result:
        print(json.dumps(to_builtins(result)), file=sys.stderr)
    if result.status != "FILLED":
        print(f"hedgebridge: {explain(result)}", file=sys.stderr)
    elif result.rounded_from is not None or result.retcode_class == "NO_CHANGES":
        print(f"hedgebridge: {result.message}", file=sys.stderr)
    return _EXIT_BY_STATUS[result.status]


def cmd_order(args: argparse.Namespace) -> int:
    if args.order_command in ("close", "modify") and not (args.position_id or args.ticket):
        raise CliError(f"order {args.order_command} needs --position-id or --ticket")
    if args.order_command == "modify" and args.sl is None and args.tp is None:
        raise CliError("order modify needs --sl or --tp (0 removes a stop)")
    return asyncio.run(_order(args, build_request(args)))


def cmd_sim(args: argparse.Namespace) -> int:
    base = state.home(args.home)
    secret = state.resolve_secret(args.secret, base)
    url = state.resolve_gateway_url(args.url, base)
    logs.setup("sim", args.log_level, "text")
    accounts = args.account or [f"{args.prefix}{i:03d}" for i in range(1, args.accounts + 1)]

    def token_for(account: str) -> str:
        return auth.mint_token(secret, role="ea", subject=account, ttl_s=30 * 86_400)

    if args.terminal == "ea":
        return sim_ea.run(args, url, accounts, token_for)
    config = SimConfig(
        symbols=tuple(args.symbols.split(",")),
        fill_latency_ms=_given(args.fill_latency_ms, 20.0),
        slippage_points=_given(args.slippage_points, 0),
        reject_rate=_given(args.reject_rate, 0.0),
        tick_interval_ms=args.tick_interval_ms,
        balance=_given(args.balance, 10_000.0),
        disconnect_rate=_given(args.disconnect_rate, 0.0),
    )

    terminals = make_terminals(url, accounts, token_for, config, seed=args.seed)
    print(f"simulating {len(terminals)} terminal(s) against {url}: {', '.join(accounts)}", flush=True)

    async def main() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        with output.stop_when_closed(stop.set):  # sim | head -1: the reader gone, the terminals stop
            await run_terminals(terminals, stop)

    loop.run(main())
    return 0


def _given(value: _T | None, default: _T) -> _T:
    """An option of the Python simulator: its default when not given (None tells --terminal ea it was not)."""
    return default if value is None else value
