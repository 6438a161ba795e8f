"""The symbols' rules the terminals report, and the check of an order against them before it is sent.

- Where they are kept: the JetStream KV bucket ``hb_symbols``, one key per account (``AccountSymbols``). The
  replica that projects a terminal's SYMBOL_SPECS report (the cache queue group) merges it in by compare-and-set
  (``symbol_rules.merge``; a report that changes nothing writes nothing). Every replica mirrors the bucket in
  memory through a watch, so checking an order costs no round trip, and a replica that starts reads every
  account's rules before it serves. The rules outlive a cache flush and an executor restart: they are what the
  trade server said last, not a projection to rebuild.
- ``screen``: an OPEN's symbol is first given its broker name by the account's symbol map (``Mapping``), then
  checked against that symbol's rules (trade mode, volume). On an account with a symbol map, a symbol without
  an entry of its own (named by the prefix/suffix, or as it is) that the terminal does not know (not among the
  symbols it reported) is INVALID ``UNKNOWN_SYMBOL``, naming the symbol and the account; an entry is the
  admin's word and goes as written. Without a map nothing changes: a terminal reports the rules of the symbols
  it quotes, trades and holds, and may trade others. A CLOSE is checked
  against its position's symbol (the book by ticket, else the cache's positions) when it closes part of a
  position or when a symbol of the account is DISABLED. No rules known for the account (an older EA that never
  reports them, a terminal that has not reported yet), or for a CLOSE's symbol: nothing is checked here, the
  terminal's own checks apply. Rules are found by the broker's name of the symbol (``symbol_rules.find``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hedgebridge.common import logs
from hedgebridge.common.kv_mirror import KvMirror
from hedgebridge.common.symbol_map import Mapping, MapRefused
from hedgebridge.protocol import (
    AccountSymbols,
    CloseCommand,
    CloseOrder,
    OpenCommand,
    OpenOrder,
    OrderCommand,
    OrderResult,
    ProtocolError,
    SymbolSpec,
    SymbolSpecs,
    pack,
    unpack,
)

from . import orders, symbol_rules
from .symbol_rules import Refused

log = logs.get("executor")

WRITE_ATTEMPTS = 10  # compare-and-set rounds of one report against replicas writing the same account

PositionSymbol = Callable[[CloseCommand], Awaitable[str | None]]


class RulesUnavailable(Exception):
    """The bucket could not be read at start."""


class SymbolBook:
    def __init__(self, bucket: Callable[[], KeyValue]) -> None:
        self._bucket = bucket
        self.known: dict[str, AccountSymbols] = {}  # account -> its rules, as the bucket holds them
        self._mirror = KvMirror(self._on_entry)

    # --- the mirror -----------------------------------------------------------------------------------------

    async def start(self, timeout_s: float = 10.0) -> None:
        """Read every account's rules, then follow changes in the background."""
        try:
            await self._mirror.start(self._bucket(), timeout_s)
        except TimeoutError:
            raise RulesUnavailable(f"cannot read the symbols' rules within {timeout_s:g}s") from None

    async def stop(self) -> None:
        await self._mirror.stop()

    def _on_entry(self, account_id: str, value: bytes | None, initial: bool) -> None:
        if not value:
            self.known.pop(account_id, None)
            return
        try:
            self.known[account_id] = unpack(value, AccountSymbols)
        except ProtocolError as exc:
            log.warning("unreadable symbol rules", account=account_id, error=exc.message)

    def rules(self, account_id: str) -> AccountSymbols | None:
        return self.known.get(account_id)

    def spec(self, account_id: str, broker_symbol: str) -> SymbolSpec | None:
        return symbol_rules.find(self.known.get(account_id), broker_symbol)

    # --- reports --------------------------------------------------------------------------------------------

    async def record(self, report: SymbolSpecs) -> None:
        """Merge a terminal's report into its account's key (compare-and-set against other replicas)."""
        bucket = self._bucket()
        key = report.account_id
        for _ in range(WRITE_ATTEMPTS):
            try:
                entry = await bucket.get(key)
            except KeyNotFoundError:
                stored, revision = None, None
            else:
                stored = unpack(entry.value, AccountSymbols) if entry.value else None
                revision = entry.revision
            merged = symbol_rules.merge(stored, report)
            if merged is None:
                return
            try:
                if revision is None:
                    await bucket.create(key, pack(merged))
                else:
                    await bucket.update(key, pack(merged), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica wrote the account meanwhile: merge into what it wrote
            log.info("symbol rules changed", account=key, symbols=[s.symbol for s in report.symbols])
            return
        log.warning("symbol rules not written: the account's key kept changing", account=key)

    # --- the check before sending ---------------------------------------------------------------------------

    async def screen(
        self,
        request: OpenOrder | CloseOrder,
        command: OpenCommand | CloseCommand,
        position_symbol: PositionSymbol,
        elapsed_ms: float,
        mapping: Mapping | None = None,
    ) -> Screened | OrderResult:
        """The command to send (its volume rounded down when the request asked) with the broker symbol an OPEN
        goes out as (None: the canonical name), or the result that refuses it."""
        broker: str | None = None
        if isinstance(command, OpenCommand) and mapping is not None:
            try:
                broker = mapping.to_broker(command.symbol)
            except MapRefused as exc:
                return _refused(Refused("INVALID", exc.code, exc.message), command, elapsed_ms)
        named = None if broker == getattr(command, "symbol", None) else broker
        rules = self.known.get(command.account_id)
        if rules is None:
            return Screened(command, named)
        if isinstance(command, OpenCommand):
            spec = symbol_rules.find(rules, broker or command.symbol)
            if spec is None:  # unknown to the terminal: refused when the map names it by a rule, not an entry
                guessed = mapping is not None and command.symbol not in mapping.symbols
                unknown = symbol_rules.unknown_symbol(rules, command.account_id, command.symbol, named)
                if guessed and unknown is not None:
                    return _refused(unknown, command, elapsed_ms, named)
                return Screened(command, named)
            screened = symbol_rules.screen_open(
                spec, command.account_id, command.side, command.volume, round_volume=request.round_volume
            )
        else:
            if command.volume is None and not symbol_rules.trading_disabled(rules):
                return Screened(command)
            symbol = await position_symbol(command)
            spec = symbol_rules.find(rules, _broker_of(mapping, symbol)) if symbol is not None else None
            if spec is None:
                return Screened(command)
            screened = symbol_rules.screen_close(
                spec, command.account_id, command.volume, round_volume=request.round_volume
            )
        if isinstance(screened, Refused):
            return _refused(screened, command, elapsed_ms, named)
        if screened.rounded_from is None or screened.volume is None:
            return Screened(command, named)
        return Screened(msgspec.structs.replace(command, volume=screened.volume), named)


@dataclass(frozen=True, slots=True)
class Screened:
    """An order the rules let go: ``command`` (in canonical symbols, as recorded) and ``broker_symbol``, the
    name an OPEN is sent as when the account's symbol map renames its symbol."""

    command: OrderCommand
    broker_symbol: str | None = None


def _broker_of(mapping: Mapping | None, canonical: str) -> str:
    if mapping is None:
        return canonical
    try:
        return mapping.to_broker(canonical)
    except MapRefused:
        return canonical


def _refused(refusal: Refused, command: OrderCommand, elapsed_ms: float, broker: str | None = None) -> OrderResult:
    refused = orders.failure(refusal.status, refusal.code, refusal.message, command, elapsed_ms)
    # an OPEN refused here opened nothing: no positionId names it
    if isinstance(command, OpenCommand):
        return msgspec.structs.replace(refused, position_id=None, broker_symbol=broker)
    return refused
