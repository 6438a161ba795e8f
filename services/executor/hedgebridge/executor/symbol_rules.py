"""The symbols' trading rules as pure functions: what a terminal's SYMBOL_SPECS report changes in what is known
of its account (``merge``), and what an order may send under a symbol's rules (``screen_open``,
``screen_close``). No I/O, no clock.

- A volume is tradable when it lies in [volumeMin, volumeMax] and is a multiple of volumeStep (counted from 0,
  as MT5 checks it), within a millionth of a step (float noise: 0.1 + 0.2 is on a 0.01 step). Off the step it
  is INVALID (``INVALID_VOLUME``) with the allowed values and the two nearest volumes in the message, or, when
  the request asks for it (``roundVolume``), rounded down to the step; a rounded volume is checked against the
  minimum and maximum like any other.
- The trade mode: DISABLED refuses every order, CLOSE_ONLY every OPEN, LONG_ONLY an OPEN SELL, SHORT_ONLY an
  OPEN BUY. These are REJECTED (``TRADE_DISABLED``), not INVALID: the request is well formed and the broker's
  rule may change; the trade server would refuse it with the retcode the message names.
- Arithmetic is decimal, on the numbers as written (``repr``), so 0.07 is seven steps of 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

from hedgebridge.protocol import AccountSymbols, SymbolSpec, SymbolSpecs, errors, retcodes

TOLERANCE = Decimal("1e-6")  # of a step


@dataclass(frozen=True, slots=True)
class Allowed:
    """The order may go: with ``volume`` (rounded down to the step when ``roundedFrom`` is set; None: a CLOSE
    of the whole position)."""

    volume: float | None
    rounded_from: float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing is sent: the answer is ``status`` with the registry ``code`` and ``message``."""

    status: Literal["INVALID", "REJECTED"]
    code: str
    message: str


Screened = Allowed | Refused


def number(value: float | Decimal) -> str:
    """A volume as a person writes it: 0.01, 100, 0.00001 (never 1e-05 or 100.0)."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value))
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


def _refuse_mode(spec: SymbolSpec, account: str, retcode: int, rule: str) -> Refused:
    message = (
        f"{rule} on {spec.symbol} on account {account} (trade mode {spec.trade_mode}); nothing was sent "
        f"(the trade server would refuse it with {retcode} {retcodes.name(retcode)})"
    )
    return Refused("REJECTED", errors.TRADE_DISABLED, message)


def _trade_mode(spec: SymbolSpec, account: str, opening: str | None) -> Refused | None:
    """``opening``: the side of an OPEN, None for a CLOSE."""
    mode = spec.trade_mode
    if mode == "DISABLED":
        return _refuse_mode(spec, account, retcodes.TRADE_DISABLED, "trading is disabled")
    if opening is None or mode == "FULL":
        return None
    if mode == "CLOSE_ONLY":
        return _refuse_mode(spec, account, retcodes.CLOSE_ONLY, "only closing positions is allowed")
    if mode == "LONG_ONLY" and opening == "SELL":
        return _refuse_mode(spec, account, retcodes.LONG_ONLY, "only BUY (long) positions may be opened")
    if mode == "SHORT_ONLY" and opening == "BUY":
        return _refuse_mode(spec, account, retcodes.SHORT_ONLY, "only SELL (short) positions may be opened")
    return None


def _volume(spec: SymbolSpec, account: str, volume: float, round_volume: bool) -> Screened:
    v, step, lo, hi = _dec(volume), _dec(spec.volume_step), _dec(spec.volume_min), _dec(spec.volume_max)
    where = f"{spec.symbol} on account {account}"
    allowed = f"allowed: {number(lo)} to {number(hi)} in steps of {number(step)}"
    slack = step * TOLERANCE
    steps = v / step
    off_step = abs(steps - steps.to_integral_value(ROUND_HALF_EVEN)) > TOLERANCE
    below = (steps + TOLERANCE).to_integral_value(ROUND_FLOOR) * step
    rounded_from: float | None = None
    said = f"volume {number(v)}"
    if off_step and round_volume:
        rounded_from, v = volume, below
        said = f"volume {number(volume)} rounded down to the step {number(step)} is {number(v)}, which"
    if v <= 0 or v < lo - slack:
        message = f"{said} is below the minimum {number(lo)} of {where}; {allowed}; nothing was sent"
        return Refused("INVALID", errors.INVALID_VOLUME, message)
    if v > hi + slack:
        message = f"{said} is over the maximum {number(hi)} of {where}; {allowed}; nothing was sent"
        return Refused("INVALID", errors.INVALID_VOLUME, message)
    if off_step and rounded_from is None:
        nearest = [number(x) for x in (below, below + step) if lo - slack <= x <= hi + slack]
        near = f"the nearest {'are' if len(nearest) > 1 else 'is'} {' and '.join(nearest)}; " if nearest else ""
        message = (
            f"{said} is not a multiple of the volume step {number(step)} of {where}; {allowed} "
            f"({near}roundVolume rounds down to the step); nothing was sent"
        )
        return Refused("INVALID", errors.INVALID_VOLUME, message)
    return Allowed(float(v), rounded_from)


def screen_open(spec: SymbolSpec, account: str, side: str, volume: float, *, round_volume: bool = False) -> Screened:
    """What an OPEN of ``volume`` lots on ``side`` may send under ``spec``."""
    refused = _trade_mode(spec, account, side)
    return refused if refused is not None else _volume(spec, account, volume, round_volume)


def screen_close(spec: SymbolSpec, account: str, volume: float | None, *, round_volume: bool = False) -> Screened:
    """What a CLOSE (of ``volume`` lots; None: the whole position) may send under ``spec``."""
    refused = _trade_mode(spec, account, None)
    if refused is not None:
        return refused
    return Allowed(None) if volume is None else _volume(spec, account, volume, round_volume)


def broker_name(spec: SymbolSpec) -> str:
    """The name the trade server knows ``spec``'s symbol by (``symbol`` is the canonical name, which a symbol map
    change may change): what the rules are kept and looked up by."""
    return spec.broker_symbol or spec.symbol


def find(rules: AccountSymbols | None, broker_symbol: str) -> SymbolSpec | None:
    """The rules of the symbol the trade server calls ``broker_symbol``."""
    if rules is None:
        return None
    return next((s for s in rules.symbols if broker_name(s) == broker_symbol), None)


def merge(stored: AccountSymbols | None, report: SymbolSpecs) -> AccountSymbols | None:
    """The account's rules once ``report`` is applied; None when it changes nothing. A symbol takes the report's
    rules unless they are the same as known, or the rules known were set by a later report (two reports of one
    account can be applied out of order). Symbols are kept by their broker name (``broker_name``), and so is
    ``changedAt``; they are listed in that order."""
    specs = {broker_name(s): s for s in stored.symbols} if stored is not None else {}
    changed_at = dict(stored.changed_at) if stored is not None else {}
    touched = False
    for spec in report.symbols:
        name = broker_name(spec)
        since = changed_at.get(name)
        if (since is not None and since > report.timestamp) or specs.get(name) == spec:
            continue
        specs[name] = spec
        changed_at[name] = report.timestamp
        touched = True
    if not touched:
        return None
    return AccountSymbols(
        account_id=report.account_id,
        symbols=[specs[name] for name in sorted(specs)],
        changed_at={name: changed_at[name] for name in sorted(changed_at)},
    )


def unknown_symbol(rules: AccountSymbols, account: str, symbol: str, broker: str | None) -> Refused | None:
    """An OPEN of ``symbol`` (sent as ``broker`` when the account's symbol map renames it) that the account's
    terminal does not know: none of the symbols it reported has that name. None when it reported none (an EA
    that does not report them: its own checks apply)."""
    if not rules.symbols:
        return None
    sent = f"{symbol} (sent as {broker} by the account's symbol map)" if broker else symbol
    known = sorted(broker_name(s) for s in rules.symbols)
    listed = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    message = (
        f"symbol {sent} is not known to the terminal of account {account} (it reports {listed}); map it with "
        f"`hedgebridge symbols set --account {account} {symbol}=BROKER_SYMBOL`; nothing was sent"
    )
    return Refused("INVALID", errors.UNKNOWN_SYMBOL, message)


def trading_disabled(rules: AccountSymbols | None) -> bool:
    """Whether any symbol of the account is DISABLED (then even a full CLOSE needs its position's symbol)."""
    return rules is not None and any(s.trade_mode == "DISABLED" for s in rules.symbols)
