"""MT5 bridge configuration: the ``Mt5BridgeConfig`` Struct, read from ``HEDGEBRIDGE_MT5BRIDGE_*`` and the shared
``HEDGEBRIDGE_*`` settings (``hedgebridge.common.config.HealthConfig``), and the checks of its values.

Every field carries its meaning. The table of the variables, their defaults and meanings is generated from
the Struct: at the end of this docstring (at import), and in services/mt5bridge/README.md (``python -m
hedgebridge.cli.config_tables``).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from hedgebridge.common.config import ConfigError, HealthConfig, load, setting
from hedgebridge.common.config_docs import with_table
from hedgebridge.protocol import names

PREFIX = "HEDGEBRIDGE_MT5BRIDGE_"
_OFFSET = re.compile(r"^([+-])(\d{1,2})(?::(\d{2}))?$")


class Mt5BridgeConfig(HealthConfig, frozen=True, kw_only=True):
    account_id: Annotated[
        str,
        setting(
            "the account id the system knows this terminal by (what an EA's token would name), 1-64 of A-Z a-z 0-9 _ -",
            default="(required)",
        ),
    ] = ""
    terminal_path: Annotated[
        str, setting("terminal64.exe to start or attach to; empty: the package finds the installed terminal")
    ] = ""
    login: Annotated[int, setting("MT5 login; 0: the account the terminal is logged in to")] = 0
    password: Annotated[str, setting("the login's password (never logged)")] = ""
    server: Annotated[str, setting("trade server name, e.g. MetaQuotes-Demo")] = ""
    init_timeout_ms: Annotated[int, setting("initialize/login timeout")] = 60_000
    magic: Annotated[int, setting("magic number of every order (the EA's default)")] = 7_700_101
    deviation: Annotated[int, setting("maximum price deviation of market orders, points")] = 10
    history_days: Annotated[int, setting('how far back the "already executed" search looks in the deal history')] = 30
    server_utc_offset: Annotated[
        str,
        setting(
            "the trade server's clock minus UTC, e.g. +03:00 or -04:30 (fixed: it does not follow the server's"
            " daylight saving changes); empty: derived from fresh ticks and deals",
            default="(derived)",
        ),
    ] = ""
    deal_wait_ms: Annotated[
        int,
        setting(
            "how long a fill waits for its deals to reach the terminal's history (a CLOSE's profit; without them"
            " CLOSED says its profit is an estimate)"
        ),
    ] = 5_000
    symbols: Annotated[str, setting("comma-separated symbols streamed as PRICE; empty: no PRICE")] = ""
    price_interval_ms: Annotated[int, setting("how often prices are read (changed ones sent)")] = 250
    poll_interval_ms: Annotated[
        int, setting("how often positions and account figures are read for changes (and outside closes)")
    ] = 250
    account_interval_ms: Annotated[int, setting("ACCOUNT_UPDATE at least this often (and on every change)")] = 2_000
    positions_interval_ms: Annotated[int, setting("POSITION_UPDATE at least this often (and on every change)")] = 5_000
    backoff_initial_ms: Annotated[
        int, setting("first pause before attaching to the terminal again, doubling (full jitter below it)")
    ] = 500
    backoff_max_ms: Annotated[int, setting("longest pause")] = 30_000
    book_dir: Annotated[
        str,
        setting(
            "where book_<account>.jsonl keeps the positionId/actionId of each position (by identifier) until its"
            " close is reported",
            default="$HEDGEBRIDGE_HOME/mt5bridge",
        ),
    ] = ""
    id: Annotated[str, setting("this bridge's name (TERMINAL_STATUS gatewayId, logs)", default="mt5-<host>-<pid>")] = ""

    def __repr__(self) -> str:  # the password never reaches a log or a traceback
        return f"Mt5BridgeConfig(account_id={self.account_id!r}, login={self.login}, server={self.server!r})"

    @property
    def bridge_id(self) -> str:
        return self.id or f"mt5-{socket.gethostname()}-{os.getpid()}"

    @property
    def server_offset_s(self) -> int | None:
        """The configured offset of the trade server's clock from UTC, in seconds; None: derive it."""
        return parse_offset(self.server_utc_offset)

    @property
    def price_symbols(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.symbols.split(",") if s.strip())

    @property
    def book_path(self) -> Path:
        base = Path(self.book_dir) if self.book_dir else _home() / "mt5bridge"
        return base / f"book_{self.account_id}.jsonl"


def parse_offset(text: str) -> int | None:
    """``+03:00``, ``-4``, ``+05:30``, ``0`` in seconds; None for an empty text; ValueError otherwise."""
    text = text.strip()
    if not text:
        return None
    if text in ("0", "Z"):
        return 0
    match = _OFFSET.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an offset such as +03:00 or -04:30")
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    total = hours * 60 + minutes
    if minutes >= 60 or minutes % 15 or total > 14 * 60:
        raise ValueError(f"{text!r}: an offset is whole quarters of an hour, from -14:00 to +14:00")
    return (-1 if sign == "-" else 1) * total * 60


def _home() -> Path:
    return Path(os.environ.get("HEDGEBRIDGE_HOME") or Path.home() / ".hedgebridge")


def from_env(environ: Mapping[str, str] | None = None) -> Mt5BridgeConfig:
    return check(load(Mt5BridgeConfig, PREFIX, environ))


def check(cfg: Mt5BridgeConfig) -> Mt5BridgeConfig:
    """Reject values the bridge cannot run with; the message names the variable."""
    if not names.is_account_id(cfg.account_id):
        raise ConfigError(f"{PREFIX}ACCOUNT_ID is required: 1-64 of A-Z a-z 0-9 _ - (got {cfg.account_id!r})")
    if cfg.login < 0:
        raise ConfigError(f"{PREFIX}LOGIN must not be negative")
    if cfg.login == 0 and (cfg.password or cfg.server):
        raise ConfigError(f"{PREFIX}PASSWORD and SERVER need {PREFIX}LOGIN")
    if not 0 <= cfg.magic < 2**63:
        raise ConfigError(f"{PREFIX}MAGIC must be between 0 and 2^63-1")
    if cfg.deviation < 0 or cfg.history_days < 1:
        raise ConfigError(f"{PREFIX}DEVIATION must not be negative, HISTORY_DAYS must be at least 1")
    intervals = (
        cfg.init_timeout_ms,
        cfg.price_interval_ms,
        cfg.poll_interval_ms,
        cfg.account_interval_ms,
        cfg.positions_interval_ms,
        cfg.backoff_initial_ms,
    )
    if min(intervals) <= 0:
        raise ConfigError(
            f"{PREFIX}{{INIT_TIMEOUT,PRICE_INTERVAL,POLL_INTERVAL,ACCOUNT_INTERVAL,POSITIONS_INTERVAL,"
            "BACKOFF_INITIAL}_MS must be positive"
        )
    try:
        parse_offset(cfg.server_utc_offset)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}SERVER_UTC_OFFSET: {exc}") from None
    if cfg.deal_wait_ms < 0:
        raise ConfigError(f"{PREFIX}DEAL_WAIT_MS must not be negative")
    if cfg.backoff_max_ms < cfg.backoff_initial_ms:
        raise ConfigError(f"{PREFIX}BACKOFF_MAX_MS must not be below BACKOFF_INITIAL_MS")
    bad = [s for s in cfg.price_symbols if not names.is_symbol(s)]
    if bad:
        raise ConfigError(f"{PREFIX}SYMBOLS: {bad[0]!r} is not a protocol symbol (1-32 of A-Z a-z 0-9 . _ # + -)")
    return cfg


__doc__ = with_table(__doc__, Mt5BridgeConfig, PREFIX)
