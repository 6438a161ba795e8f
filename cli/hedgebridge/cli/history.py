"""``hedgebridge history [--account A …] [--type T,…] [--since WHEN] [--until WHEN] [--limit N]``: the
persisted events (OPENED, CLOSED, MODIFIED, ORDER_RESULT, ACTION_STATE, CONFLICT, ALERT) as JSON lines, oldest first,
read from JetStream page by page (``common.history``; NATS as for ``order``, every account).

Each line is one HISTORY_PAGE entry: ``time`` (when JetStream stored it), ``stream``, ``seq``, ``type``,
``accounts`` (absent for a system-wide alert) and ``data`` (the event). Exit 0 with at least one line; 1 when
nothing matched; 2 for bad input (an unknown type, a time that is neither ISO 8601 nor a duration, until
before since); 6 when NATS is unreachable or the history cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime

import nats.errors
from nats.aio.client import Client as NatsClient

from hedgebridge.common.history import reader
from hedgebridge.common.history.core import HistoryError, Position, Query, parse_since
from hedgebridge.protocol import names, to_builtins, utcnow
from hedgebridge.protocol.client import HISTORY_LIMIT_MAX, HISTORY_TYPES

from . import state
from .commands import EXIT_UNAVAILABLE, cli_connect
from .state import CliError

EXIT_NOTHING = 1


def _account(text: str) -> str:
    if not names.is_account_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an account id")
    return text


def _types(text: str) -> list[str]:
    wanted = [t.strip().upper() for t in text.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in HISTORY_TYPES]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(f"{text!r}: the types are {','.join(HISTORY_TYPES)}")
    return wanted


def _when(text: str) -> datetime:
    try:
        return parse_since(text, utcnow())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = sub.add_parser(
        "history",
        help="the persisted trades, order results, action states, conflicts and alerts as JSON lines, oldest first",
    )
    history.add_argument("--account", action="append", type=_account, help="only this account (repeatable)")
    history.add_argument(
        "--type",
        action="append",
        type=_types,
        help=f"only these types, comma-separated (repeatable): {','.join(HISTORY_TYPES)}",
    )
    history.add_argument(
        "--since", type=_when, help="stored from then on: ISO 8601 (UTC without a zone) or a duration (15m, 1h, 2d)"
    )
    history.add_argument("--until", type=_when, help="stored until then (as --since)")
    history.add_argument("--limit", type=_count, help="at most N events, the oldest first (default: all)")
    history.add_argument("--nats-url", help="default $HEDGEBRIDGE_NATS_URL or the local stack's")
    history.set_defaults(func=cmd_history)


def query_of(args: argparse.Namespace, limit: int) -> Query:
    types = sorted({t for group in args.type for t in group}, key=HISTORY_TYPES.index) if args.type else HISTORY_TYPES
    if args.since is not None and args.until is not None and args.until < args.since:
        raise CliError("--until is before --since")
    accounts = None if not args.account else frozenset(args.account)
    return Query(tuple(types), accounts, args.since, args.until, limit)


async def _print_history(nc: NatsClient, args: argparse.Namespace) -> int:
    js = nc.jetstream()
    cursor: dict[str, Position] = {}
    printed = 0
    while args.limit is None or printed < args.limit:
        left = HISTORY_LIMIT_MAX if args.limit is None else min(HISTORY_LIMIT_MAX, args.limit - printed)
        page = await reader.read_page(js, query_of(args, left), cursor)
        for entry in page.entries:
            print(json.dumps(to_builtins(entry), separators=(",", ":")))
        printed += len(page.entries)
        if not page.more:
            break
        cursor = page.cursor
    return printed


def cmd_history(args: argparse.Namespace) -> int:
    url = state.resolve_nats_url(args.nats_url, state.home(args.home))
    query_of(args, 1)  # bad input is refused before connecting

    async def run() -> int:
        nc = await cli_connect(url)
        try:
            return await _print_history(nc, args)
        except HistoryError as exc:
            raise CliError(f"the history changed while it was read: {exc.message}", EXIT_UNAVAILABLE) from None
        except (nats.errors.Error, TimeoutError) as exc:
            raise CliError(f"the history cannot be read: {exc!r}", EXIT_UNAVAILABLE) from None
        finally:
            await nc.close()

    if asyncio.run(run()) == 0:
        print("hedgebridge: no event matched", file=sys.stderr)
        return EXIT_NOTHING
    return 0
