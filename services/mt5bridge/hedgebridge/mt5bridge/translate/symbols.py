"""The package's ``symbol_info`` to the protocol's SymbolSpec and SYMBOL_SPECS (pure code): volume minimum,
maximum and step, contract size, digits, the trade mode by its protocol name and the filling flags, as the EA
reads them through SymbolInfoDouble/Integer."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from hedgebridge.protocol import SymbolSpec, SymbolSpecs
from hedgebridge.protocol.messages import FillingMode, SymbolTradeMode

from .package import SYMBOL_FILLING_BOC, SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC
from .reports import is_wire_symbol

# MQL5's ENUM_SYMBOL_TRADE_MODE (SymbolInfo.trade_mode) by its protocol name
TRADE_MODES: dict[int, SymbolTradeMode] = {
    0: "DISABLED",
    1: "LONG_ONLY",
    2: "SHORT_ONLY",
    3: "CLOSE_ONLY",
    4: "FULL",
}
FILLING: tuple[tuple[int, FillingMode], ...] = (
    (SYMBOL_FILLING_FOK, "FOK"),
    (SYMBOL_FILLING_IOC, "IOC"),
    (SYMBOL_FILLING_BOC, "BOC"),
)


class SymbolInfoLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def volume_min(self) -> float: ...
    @property
    def volume_max(self) -> float: ...
    @property
    def volume_step(self) -> float: ...
    @property
    def trade_contract_size(self) -> float: ...
    @property
    def digits(self) -> int: ...
    @property
    def trade_mode(self) -> int: ...
    @property
    def filling_mode(self) -> int: ...


def symbol_spec(symbol: str, info: SymbolInfoLike) -> SymbolSpec | None:
    """The rules of ``symbol``; None when the protocol cannot carry them (a name it cannot spell, a trade mode it
    does not know, no volume rules)."""
    mode = TRADE_MODES.get(int(info.trade_mode))
    lo, hi, step = float(info.volume_min), float(info.volume_max), float(info.volume_step)
    if not is_wire_symbol(symbol) or mode is None or step <= 0 or hi <= 0 or not 0 <= lo <= hi:
        return None
    if not 0 <= int(info.digits) <= 16:
        return None
    return SymbolSpec(
        symbol=symbol,
        volume_min=lo,
        volume_max=hi,
        volume_step=step,
        contract_size=max(float(info.trade_contract_size), 0.0),
        digits=int(info.digits),
        trade_mode=mode,
        filling_modes=[name for flag, name in FILLING if int(info.filling_mode) & flag],
    )


def symbol_specs(account_id: str, specs: Iterable[SymbolSpec], now: datetime) -> SymbolSpecs | None:
    """SYMBOL_SPECS of ``specs`` (sorted by symbol); None when there are none."""
    listed = sorted(specs, key=lambda s: s.symbol)
    return SymbolSpecs(timestamp=now, account_id=account_id, symbols=listed) if listed else None
