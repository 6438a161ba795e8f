"""``action`` and ``watch``: the client API from the command line (through the SDK, ``hedgebridge.client``).

Both find the gateway and a token the way the other commands find the stack: ``--url`` (else
``$HEDGEBRIDGE_CLIENT_URL``, else the local stack's gateway with the path ``/client``) and ``--token`` (else
``$HEDGEBRIDGE_TOKEN``, else an admin token minted with the local stack's key).

``action`` prints every state of the action as one JSON line until it is final, and exits with:

| exit | meaning |
|---|---|
| 0 | COMPLETED: every leg filled |
| 1 | PARTIAL, COMPENSATED or FAILED: some legs failed (the state says which and what the policy did) |
| 2 | usage error |
| 3 | not final within ``--timeout``: follow it with ``hedgebridge watch --topic actions`` |
| 5 | REJECTED, or refused by the gateway (FORBIDDEN, INVALID_FIELD…) |
| 6 | the gateway or the coordinator is unreachable |

``watch`` prints one JSON line per event (``{"topic": …, "data": {…}}``, with ``epoch`` and ``seq`` on
STREAM topics) until Ctrl-C or SIGTERM (exit 0), or until ``--count`` events were printed; 5 when the
subscription is refused, 6 when the connection ends for good. A connection that ends is opened again and
every topic resumes from the last event printed; each reconnect, each RESYNC (the history did not reach
back: events may be missing) and each resumed topic is told on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hedgebridge.client import ClientError, ConnectionLost, HedgebridgeClient, Leg, Notice, Reconnected, parse_leg
from hedgebridge.common import auth
from hedgebridge.protocol import FINAL_ACTION_STATES, ActionRequest, ActionState, errors, to_builtins
from hedgebridge.protocol.client import RECENT_MAX, TOPICS, Push, Resync

from . import output, state
from .state import CliError

EXIT_OK = 0
EXIT_LEGS_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FINAL = 3
EXIT_REFUSED = 5
EXIT_UNAVAILABLE = 6

_EXIT_BY_STATE = {
    "COMPLETED": EXIT_OK,
    "PARTIAL": EXIT_LEGS_FAILED,
    "COMPENSATED": EXIT_LEGS_FAILED,
    "FAILED": EXIT_LEGS_FAILED,
    "REJECTED": EXIT_REFUSED,
}
_UNAVAILABLE_CODES = {errors.COORDINATOR_UNAVAILABLE, errors.EXECUTOR_UNAVAILABLE}


def client_url(gateway_url: str) -> str:
    """The ``/client`` URL of the gateway whose terminal URL (``ws://host:port/ea``) the stack recorded."""
    parts = urlsplit(gateway_url)
    return urlunsplit((parts.scheme, parts.netloc, "/client", "", ""))


def resolve_url(flag: str | None, home: str | None) -> str:
    if flag:
        return flag
    env = os.environ.get("HEDGEBRIDGE_CLIENT_URL")
    if env:
        return env
    return client_url(state.resolve_gateway_url(None, state.home(home)))


def resolve_token(flag: str | None, home: str | None) -> str:
    token = flag or os.environ.get("HEDGEBRIDGE_TOKEN")
    if token:
        return token
    secret = state.resolve_secret(None, state.home(home))
    return auth.mint_token(secret, role="admin", subject="hedgebridge-cli", ttl_s=86_400.0)


async def _connect(args: argparse.Namespace, *, reconnect: bool = False) -> HedgebridgeClient:
    url = resolve_url(args.url, args.home)
    token = resolve_token(args.token, args.home)
    try:
        return await HedgebridgeClient.connect(url, token, open_timeout_s=5.0, reconnect=reconnect)
    except ClientError as exc:
        raise CliError(f"the gateway refused the connection: {exc}", EXIT_REFUSED) from None
    except (OSError, TimeoutError) as exc:
        raise CliError(f"cannot reach the gateway at {url}: {exc or type(exc).__name__}", EXIT_UNAVAILABLE) from None
    except Exception as exc:  # websockets' InvalidStatus / InvalidHandshake: the handshake was refused
        response = getattr(exc, "response", None)
        if response is not None:
            body = response.body.decode(errors="replace").strip()
            raise CliError(
                f"the gateway refused the connection: HTTP {response.status_code} {body}", EXIT_REFUSED
            ) from None
        raise CliError(f"cannot connect to the gateway at {url}: {exc}", EXIT_UNAVAILABLE) from None


def _print(value: Any) -> None:
    print(json.dumps(value, separators=(",", ":")), flush=True)


# --- action ------------------------------------------------------------------------------------------------


def build_action(args: argparse.Namespace) -> ActionRequest:
    action_id = args.action_id or uuid.uuid4().hex
    try:
        if args.action_command == "hedge":
            legs: list[Leg] = [parse_leg(text) for text in args.leg]
            return ActionRequest(
                kind="HEDGE_ENTRY",
                legs=[leg.to_message() for leg in legs],
                policy=args.policy.upper(),
                action_id=action_id,
                user_id=args.user_id,
            )
        if args.action_command == "exit":
            return ActionRequest(
                kind="EXIT", target_action_id=args.target_action_id, action_id=action_id, user_id=args.user_id
            )
        return ActionRequest(kind="CLOSE_ALL", account_ids=args.account, action_id=action_id, user_id=args.user_id)
    except (TypeError, ValueError) as exc:
        raise CliError(f"invalid action: {exc}", EXIT_USAGE) from None


async def _action(args: argparse.Namespace, request: ActionRequest) -> int:
    client = await _connect(args)
    async with client:
        try:
            feed = await client.subscribe(["actions"])  # before the request, so that no state is missed
            state_ = await client.action(request)
        except ClientError as exc:
            code = EXIT_UNAVAILABLE if exc.code in _UNAVAILABLE_CODES else EXIT_REFUSED
            if isinstance(exc, ConnectionLost):
                code = EXIT_UNAVAILABLE
            raise CliError(str(exc), code) from None
        _print(to_builtins(state_))
        try:
            async with asyncio.timeout(args.timeout):
                while state_.state not in FINAL_ACTION_STATES:
                    push = await feed.next()
                    data = push.data
                    if isinstance(data, ActionState) and data.action_id == state_.action_id and data.seq > state_.seq:
                        state_ = data
                        _print(to_builtins(state_))
        except TimeoutError:
            print(
                f"hedgebridge: action {state_.action_id} is {state_.state} after {args.timeout:g}s; "
                "follow it with 'hedgebridge watch --topic actions'",
                file=sys.stderr,
            )
            return EXIT_NOT_FINAL
        except ConnectionLost as exc:
            raise CliError(
                f"connection lost while following action {state_.action_id}: {exc}", EXIT_NOT_FINAL
            ) from None
    if state_.state != "COMPLETED":
        print(f"hedgebridge: action {state_.action_id} ended {state_.state}: {state_.message}", file=sys.stderr)
    return _EXIT_BY_STATE.get(state_.state, EXIT_NOT_FINAL)


def cmd_action(args: argparse.Namespace) -> int:
    return asyncio.run(_action(args, build_action(args)))


# --- watch -------------------------------------------------------------------------------------------------


async def _watch(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        with output.stop_when_closed(stop.set):  # watch | head -1: stop once head has gone, even between events
            client = await _connect(args, reconnect=True)
            async with client:
                try:
                    feed = await client.subscribe(args.topic or list(TOPICS), args.account, recent=args.recent)
                except ClientError as exc:
                    raise CliError(f"subscription refused: {exc}", EXIT_REFUSED) from None
                _note(
                    f"watching {', '.join(feed.topics)} on "
                    + (", ".join(feed.accounts) if feed.accounts is not None else "every account")
                )
                printed = 0
                stopped = asyncio.ensure_future(stop.wait())
                resumed = False
                try:
                    while args.count is None or printed < args.count:
                        nxt = asyncio.ensure_future(feed.next_item())
                        await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
                        if not nxt.done():
                            nxt.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await nxt
                            break
                        try:
                            item = nxt.result()
                        except ConnectionLost as exc:
                            raise CliError(
                                f"connection lost: {exc.close_code} {exc.close_reason}", EXIT_UNAVAILABLE
                            ) from None
                        except StopAsyncIteration:
                            break
                        if isinstance(item, Push):
                            line: dict[str, Any] = {"topic": item.topic, "data": to_builtins(item.data)}
                            if item.seq is not None:
                                line.update(epoch=item.epoch, seq=item.seq)
                            _print(line)
                            printed += 1
                        else:
                            resumed = _tell(item, resumed)
                finally:
                    stopped.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def _note(text: str) -> None:
    print(f"hedgebridge: {text}", file=sys.stderr, flush=True)


def _tell(notice: Notice, resumed: bool) -> bool:
    """A line on stderr for a reconnect, a RESYNC, and each topic resumed after a reconnect; whether the
    topics' starts that follow are resumptions."""
    if isinstance(notice, Reconnected):
        why = " ".join(str(p) for p in (notice.close_code, notice.close_reason) if p)
        _note(f"connection lost ({why or 'no close frame'}); reconnected, resuming")
        return True
    if isinstance(notice, Resync):
        _note(f"RESYNC {notice.topic}: {notice.reason}: {notice.message}; events may be missing, a fresh start follows")
    elif resumed and notice.epoch is not None:
        _note(f"{notice.topic} resumed at {notice.epoch}:{notice.seq} ({notice.replayed} events replayed)")
    return resumed


def cmd_watch(args: argparse.Namespace) -> int:
    return asyncio.run(_watch(args))


# --- parsers -----------------------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _recent(text: str) -> int:
    value = int(text)
    if not 0 <= value <= RECENT_MAX:
        raise argparse.ArgumentTypeError(f"must be between 0 and {RECENT_MAX}, got {text}")
    return value


def _leg(text: str) -> str:
    try:
        parse_leg(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(sub: Any) -> None:
    """Add ``action`` and ``watch`` to the ``hedgebridge`` command's subparsers."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--url", help="the gateway's /client URL (default $HEDGEBRIDGE_CLIENT_URL or the local stack's)"
    )
    connection.add_argument(
        "--token", help="a system or admin JWT (default $HEDGEBRIDGE_TOKEN, or an admin token for the local stack)"
    )

    action = sub.add_parser("action", help="run an action across accounts (hedge, exit, close-all)")
    action_sub = action.add_subparsers(dest="action_command", required=True, metavar="KIND")
    common = argparse.ArgumentParser(add_help=False, parents=[connection])
    common.add_argument("--action-id", help="idempotency key; generated when absent")
    common.add_argument("--user-id", default="", help="on whose behalf (default: the token's subject)")
    common.add_argument(
        "--timeout", type=_positive_float, default=60.0, help="seconds to wait for the final state (default 60)"
    )
    hedge = action_sub.add_parser("hedge", parents=[common], help="open legs on several accounts at once")
    hedge.add_argument(
        "--leg",
        action="append",
        required=True,
        type=_leg,
        metavar="ACCOUNT:SYMBOL:SIDE:VOLUME[:SL[:TP]]",
        help="repeatable; SL and TP: the leg's stop loss and take profit prices",
    )
    hedge.add_argument(
        "--policy",
        type=str.lower,
        choices=("compensate", "keep"),
        default="compensate",
        help="when some legs fail: close the filled ones (compensate, default) or keep them (keep)",
    )
    exit_ = action_sub.add_parser("exit", parents=[common], help="close every open leg of an earlier action")
    exit_.add_argument("target_action_id", metavar="ACTION_ID")
    close_all = action_sub.add_parser("close-all", parents=[common], help="close every open position of accounts")
    close_all.add_argument("--account", action="append", required=True, help="repeatable")
    action.set_defaults(func=cmd_action)

    watch = sub.add_parser("watch", parents=[connection], help="print live events as JSON lines")
    watch.add_argument(
        "--topic", action="append", choices=TOPICS, help="repeatable (default: every topic the token may see)"
    )
    watch.add_argument("--account", action="append", help="repeatable (default: every account the token may see)")
    watch.add_argument("--count", type=_positive_int, help="stop after this many events")
    watch.add_argument(
        "--recent",
        type=_recent,
        default=0,
        metavar="N",
        help="start with the last N events of each topic kept in JetStream (trades, orders, actions, alerts…)",
    )
    watch.set_defaults(func=cmd_watch)
