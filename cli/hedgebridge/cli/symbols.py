"""``hedgebridge symbols specs --account A [--symbol S …] [--json]`` (``set``, ``list`` and ``rm``, the symbol
maps, are ``symbol_maps.py``'s): the trading rules of every symbol the
account's terminals reported (SYMBOL_SPECS), as the executor checks orders against them: volume minimum,
maximum and step, contract size, digits, trade mode, filling modes and when they last changed. Read from the
JetStream KV bucket ``hb_symbols`` (NATS as for ``order``).

Exit 0 with the table (or JSON); 1 when nothing is known of the account (its terminal never reported since
the bucket was made, or it runs an EA that does not report them: the executor then checks nothing) or of a
``--symbol`` asked for; 6 when NATS is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal

import msgspec
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from hedgebridge.protocol import AccountSymbols, ProtocolError, SymbolSpec, subjects, to_builtins, unpack

from . import state, symbol_maps
from .commands import EXIT_UNAVAILABLE, cli_connect
from .state import CliError

EXIT_UNKNOWN = 1
COLUMNS = ("symbol", "volume min", "volume max", "step", "contract", "digits", "trade mode", "filling", "changed")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    symbols = sub.add_parser("symbols", help="the symbols' trading rules the terminals report, and the symbol maps")
    actions = symbols.add_subparsers(dest="symbols_command", required=True, metavar="ACTION")
    specs = actions.add_parser(
        "specs", help="an account's symbols: volume min/max/step, contract size, digits, trade mode, filling modes"
    )
    specs.add_argument("--account", required=True, help="the MT5 account id")
    specs.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    specs.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    specs.add_argument("--nats-url", help="default $HEDGEBRIDGE_NATS_URL or the local stack's")
    specs.set_defaults(func=cmd_specs)
    symbol_maps.register(actions)  # set, list, rm: the symbol maps


def number(value: float) -> str:
    text = format(Decimal(repr(value)).normalize(), "f")
    return "0" if text == "-0" else text


def row(spec: SymbolSpec, changed: str) -> tuple[str, ...]:
    broker = f" ({spec.broker_symbol})" if spec.broker_symbol and spec.broker_symbol != spec.symbol else ""
    return (
        spec.symbol + broker,
        number(spec.volume_min),
        number(spec.volume_max),
        number(spec.volume_step),
        number(spec.contract_size),
        str(spec.digits),
        spec.trade_mode,
        ",".join(spec.filling_modes) or "-",
        changed,
    )


def format_table(rules: AccountSymbols) -> str:
    rows: list[tuple[str, ...]] = [COLUMNS]
    for spec in rules.symbols:
        changed = rules.changed_at.get(spec.broker_symbol or spec.symbol)
        rows.append(row(spec, changed.isoformat(timespec="seconds").replace("+00:00", "Z") if changed else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def as_json(rules: AccountSymbols) -> dict[str, object]:
    symbols = []
    for spec in rules.symbols:
        shown = to_builtins(spec)
        assert isinstance(shown, dict)
        changed = rules.changed_at.get(spec.broker_symbol or spec.symbol)
        if changed is not None:
            shown["changedAt"] = msgspec.to_builtins(changed)
        symbols.append(shown)
    return {"accountId": rules.account_id, "symbols": symbols}


async def fetch(url: str, account_id: str) -> AccountSymbols | None:
    nc = await cli_connect(url)
    try:
        bucket = await nc.jetstream().key_value(subjects.SYMBOLS_BUCKET)
        entry = await bucket.get(account_id)
    except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
        return None
    finally:
        await nc.close()
    if not entry.value:
        return None
    try:
        return unpack(entry.value, AccountSymbols)
    except ProtocolError as exc:
        raise CliError(f"the rules kept for {account_id} cannot be read: {exc.message}", EXIT_UNAVAILABLE) from None


def cmd_specs(args: argparse.Namespace) -> int:
    url = state.resolve_nats_url(args.nats_url, state.home(args.home))
    rules = asyncio.run(fetch(url, args.account)) or AccountSymbols(account_id=args.account)
    wanted: list[str] = args.symbol or []
    if wanted:
        rules = msgspec.structs.replace(rules, symbols=[s for s in rules.symbols if s.symbol in wanted])
    missing = sorted(set(wanted) - {s.symbol for s in rules.symbols})
    if args.json:
        print(json.dumps(as_json(rules)))
    elif rules.symbols:
        print(format_table(rules))
    if not rules.symbols or missing:
        what = ", ".join(missing) if wanted else "any symbol"
        print(
            f"hedgebridge: no rules reported for {what} on account {args.account} (its terminals have not reported "
            "them, or run an EA that does not: the executor checks nothing then)",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    return 0
