"""The symbols' rules the terminals report, and the check of an order against them before it is sent.

- Where they are kept: the JetStream KV bucket ``hb_symbols``, one key per account (``AccountSymbols``). The
  replica that projects a terminal's SYMBOL_SPECS report (the cache queue group) merges it in by compare-and-set
  (``symbol_rules.merge``; a report that changes nothing writes nothing). Every replica mirrors the bucket in
  memory through a watch, so checking an order costs no round trip, and a replica that starts reads every
  account's rules before it serves. The rules outlive a cache flush and an executor restart: they are what the
  trade server said last, not a projection to rebuild.
- ``screen``: an OPEN is checked against its symbol's rules (trade mode, volume); a CLOSE against its position's
  symbol (the book by ticket, else the cache's positions) when it closes part of a position or when a symbol
  of the account is DISABLED. No rules known for the account or the symbol (an older EA that never reports
  them, a terminal that has not reported yet): nothing is checked here, the terminal's own checks apply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from hedgebridge.common import logs
from hedgebridge.common.kv_mirror import KvMirror
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

    def spec(self, account_id: str, symbol: str) -> SymbolSpec | None:
        return symbol_rules.find(self.known.get(account_id), symbol)

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
    ) -> OrderCommand | OrderResult:
        """The command to send (its volume rounded down when the request asked), or the result that refuses it."""
        rules = self.known.get(command.account_id)
        if rules is None:
            return command
        if isinstance(command, OpenCommand):
            spec = symbol_rules.find(rules, command.symbol)
            if spec is None:
                return command
            screened = symbol_rules.screen_open(
                spec, command.account_id, command.side, command.volume, round_volume=request.round_volume
            )
        else:
            if command.volume is None and not symbol_rules.trading_disabled(rules):
                return command
            symbol = await position_symbol(command)
            spec = symbol_rules.find(rules, symbol) if symbol is not None else None
            if spec is None:
                return command
            screened = symbol_rules.screen_close(
                spec, command.account_id, command.volume, round_volume=request.round_volume
            )
        if isinstance(screened, Refused):
            refused = orders.failure(screened.status, screened.code, screened.message, command, elapsed_ms)
            # an OPEN refused here opened nothing: no positionId names it
            return msgspec.structs.replace(refused, position_id=None) if isinstance(command, OpenCommand) else refused
        if screened.rounded_from is None or screened.volume is None:
            return command
        return msgspec.structs.replace(command, volume=screened.volume)
