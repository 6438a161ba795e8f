"""``hedgebridge symbols set|list|rm``: each account's symbol map (canonical -> broker symbol, and an optional
prefix/suffix for every other symbol), kept in the JetStream KV bucket ``hb_symbol_map`` that every service
watches (a change applies without a restart). NATS as for ``order``.

- ``set --account A EURUSD=EURUSD.m XAUUSD=GOLD`` adds or replaces entries; ``--prefix P`` / ``--suffix S``
  set the account's rule (``--suffix ""`` removes it). Prints the map as written.
- ``list [--account A]`` prints the maps (one row per entry, ``*`` for the rule); ``rm --account A EURUSD``
  removes entries.
- ``--json`` prints ``{"maps": [SYMBOL_MAP…]}`` with every field.

Exit 0 on success; 2 for a malformed entry; 5 when the change is refused (two canonical symbols on one broker
symbol, ``rm`` of a symbol the map does not list); 6 when NATS is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import msgspec

from hedgebridge.common import symbol_maps
from hedgebridge.common.symbol_map import MapRefused
from hedgebridge.protocol import (
    ListSymbolMaps,
    SymbolMapRequest,
    SymbolMaps,
    names,
)

from . import output, state
from .commands import EXIT_INVALID, EXIT_USAGE, cli_connect
from .state import CliError

COLUMNS = ("account", "symbol", "broker", "updated", "by")
RULE = "*"  # the symbol column of the row that shows the account's prefix/suffix rule
WHO = "cli"  # ``updatedBy`` of a change made here (the CLI holds NATS credentials, not a user token)


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    change = actions.add_parser("set", help="add or replace entries of an account's symbol map (CANONICAL=BROKER)")
    change.add_argument("--account", required=True, help="the MT5 account id")
    change.add_argument("entries", nargs="*", metavar="CANONICAL=BROKER", help="e.g. EURUSD=EURUSD.m XAUUSD=GOLD")
    change.add_argument("--prefix", help="the broker's prefix of every symbol without an entry ('' removes it)")
    change.add_argument("--suffix", help="the broker's suffix of every symbol without an entry ('' removes it)")
    remove = actions.add_parser("rm", help="remove entries of an account's symbol map")
    remove.add_argument("--account", required=True, help="the MT5 account id")
    remove.add_argument("symbols", nargs="+", metavar="CANONICAL", help="the canonical symbols to remove")
    listing = actions.add_parser("list", help="the symbol maps (every account's, or one's)")
    listing.add_argument("--account", help="only this account")
    for parser in (change, remove, listing):
        parser.add_argument("--json", action="store_true", help="JSON instead of the table")
        parser.add_argument("--nats-url", help="default $HEDGEBRIDGE_NATS_URL or the local stack's")
        parser.set_defaults(func=cmd_maps)


def parse_entries(entries: list[str]) -> dict[str, str]:
    """``CANONICAL=BROKER`` arguments as a map (CliError, exit 2, naming a malformed one)."""
    parsed: dict[str, str] = {}
    for entry in entries:
        canonical, sep, broker = entry.partition("=")
        for name in (canonical, broker):
            if not sep or not names.is_symbol(name):
                raise CliError(
                    f"{entry!r} is not CANONICAL=BROKER with two symbols (1-32 of A-Z a-z 0-9 . _ # + -)", EXIT_USAGE
                )
        if parsed.get(canonical, broker) != broker:
            raise CliError(f"{canonical} is given twice, as {parsed[canonical]} and {broker}", EXIT_USAGE)
        parsed[canonical] = broker
    return parsed


def request_of(args: argparse.Namespace) -> SymbolMapRequest:
    """The request the arguments ask for, validated as the client API validates it (CliError, exit 2)."""
    body: dict[str, object]
    if args.symbols_command == "list":
        body = {"type": "LIST_SYMBOL_MAPS", "accountId": args.account}
    elif args.symbols_command == "rm":
        body = {"type": "REMOVE_SYMBOL_MAP", "accountId": args.account, "symbols": list(args.symbols)}
    else:
        if not args.entries and args.prefix is None and args.suffix is None:
            raise CliError("give entries (CANONICAL=BROKER), --prefix or --suffix", EXIT_USAGE)
        body = {"type": "SET_SYMBOL_MAP", "accountId": args.account, "symbols": parse_entries(args.entries)}
        body.update({k: v for k, v in (("prefix", args.prefix), ("suffix", args.suffix)) if v is not None})
    try:
        request: SymbolMapRequest = msgspec.convert(body, SymbolMapRequest)
    except msgspec.ValidationError as exc:
        raise CliError(f"invalid request: {exc}", EXIT_USAGE) from None
    return request


def rows(maps: SymbolMaps) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = [COLUMNS]
    for stored in maps.maps:
        updated = stored.updated_at.isoformat(timespec="seconds").replace("+00:00", "Z") if stored.updated_at else "-"
        who = stored.updated_by or "-"
        table.extend((stored.account_id, c, b, updated, who) for c, b in stored.symbols.items())
        if stored.prefix or stored.suffix:
            table.append((stored.account_id, RULE, f"{stored.prefix}{RULE}{stored.suffix}", updated, who))
    return table


def format_table(maps: SymbolMaps) -> str:
    table = rows(maps)
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table)


async def run(url: str, request: SymbolMapRequest) -> SymbolMaps:
    nc = await cli_connect(url)
    try:
        kv = await symbol_maps.bucket(nc.jetstream())
        return await symbol_maps.handle(kv, request, WHO)
    finally:
        await nc.close()


def cmd_maps(args: argparse.Namespace) -> int:
    request = request_of(args)
    url = state.resolve_nats_url(args.nats_url, state.home(args.home))
    try:
        maps = asyncio.run(run(url, request))
    except MapRefused as exc:
        print(f"hedgebridge: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        output.say(json.dumps({"maps": [output.full(m) for m in maps.maps]}))
    elif len(rows(maps)) > 1:
        output.say(format_table(maps))
    elif isinstance(request, ListSymbolMaps):
        which = f"account {request.account_id}" if request.account_id else "any account"
        print(f"hedgebridge: no symbol map for {which}: the names are the broker's", file=sys.stderr)
    else:
        print(f"hedgebridge: the symbol map of account {request.account_id} is now empty", file=sys.stderr)
    return 0
