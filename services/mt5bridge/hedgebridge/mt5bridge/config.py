"""Bridge configuration, from environment variables (prefix ``HEDGEBRIDGE_MT5BRIDGE_``).

| variable                                   | default               | meaning                                        |
|--------------------------------------------|-----------------------|------------------------------------------------|
| HEDGEBRIDGE_NATS_URL                       | nats://127.0.0.1:4222 | NATS server(s), comma-separated                |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S         | 30                    | give up (exit 69) when NATS is unreachable     |
| HEDGEBRIDGE_MT5BRIDGE_ACCOUNT_ID           | (required)            | the account id the system knows this terminal  |
|                                            |                       | by (an EA's token subject), 1-64 of A-Z a-z    |
|                                            |                       | 0-9 _ -                                        |
| HEDGEBRIDGE_MT5BRIDGE_TERMINAL_PATH        | (empty)               | terminal64.exe to start or attach to; empty:   |
|                                            |                       | the package finds the installed terminal       |
| HEDGEBRIDGE_MT5BRIDGE_LOGIN                | 0                     | MT5 login; 0: the account the terminal is      |
|                                            |                       | logged in to                                   |
| HEDGEBRIDGE_MT5BRIDGE_PASSWORD             | (empty)               | the login's password (never logged)            |
| HEDGEBRIDGE_MT5BRIDGE_SERVER               | (empty)               | trade server name, e.g. ``MetaQuotes-Demo``    |
| HEDGEBRIDGE_MT5BRIDGE_INIT_TIMEOUT_MS      | 60000                 | ``initialize``/``login`` timeout               |
| HEDGEBRIDGE_MT5BRIDGE_MAGIC                | 7700101               | magic number of every order (the EA's default) |
| HEDGEBRIDGE_MT5BRIDGE_DEVIATION            | 10                    | maximum price deviation of market orders,      |
|                                            |                       | points                                         |
| HEDGEBRIDGE_MT5BRIDGE_HISTORY_DAYS         | 30                    | how far back the "already executed" search     |
|                                            |                       | looks in the deal history                      |
| HEDGEBRIDGE_MT5BRIDGE_SYMBOLS              | (empty)               | comma-separated symbols streamed as PRICE;     |
|                                            |                       | empty: no PRICE                                |
| HEDGEBRIDGE_MT5BRIDGE_PRICE_INTERVAL_MS    | 250                   | how often prices are read (changed ones sent)  |
| HEDGEBRIDGE_MT5BRIDGE_POLL_INTERVAL_MS     | 250                   | how often positions and account figures are    |
|                                            |                       | read for changes (and outside closes)          |
| HEDGEBRIDGE_MT5BRIDGE_ACCOUNT_INTERVAL_MS  | 2000                  | ACCOUNT_UPDATE at least this often             |
| HEDGEBRIDGE_MT5BRIDGE_POSITIONS_INTERVAL_MS| 5000                  | POSITION_UPDATE at least this often            |
| HEDGEBRIDGE_MT5BRIDGE_BACKOFF_INITIAL_MS   | 500                   | first pause before attaching to the terminal   |
|                                            |                       | again, doubling                                |
| HEDGEBRIDGE_MT5BRIDGE_BACKOFF_MAX_MS       | 30000                 | longest pause                                  |
| HEDGEBRIDGE_MT5BRIDGE_BOOK_DIR             | $HEDGEBRIDGE_HOME/    | where ``book_<account>.jsonl`` keeps the       |
|                                            | mt5bridge             | positionId/actionId of each open ticket        |
| HEDGEBRIDGE_MT5BRIDGE_ID                   | mt5-<host>-<pid>      | this bridge's name (TERMINAL_STATUS            |
|                                            |                       | ``gatewayId``, logs)                           |
| HEDGEBRIDGE_MT5BRIDGE_HEALTH_HOST          | 0.0.0.0               | where /healthz, /readyz and /metrics listen    |
| HEDGEBRIDGE_MT5BRIDGE_HEALTH_PORT          | 0 (off)               | their port                                     |
| HEDGEBRIDGE_LOG_LEVEL / HEDGEBRIDGE_LOG_FORMAT | INFO / json       | logging                                        |
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

import msgspec

from hedgebridge.common.config import ConfigError, load

PREFIX = "HEDGEBRIDGE_MT5BRIDGE_"
_ACCOUNT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Mt5BridgeConfig(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str = ""
    health_host: str = "0.0.0.0"
    health_port: int = 0
    nats_url: str = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: float = 30.0
    terminal_path: str = ""
    login: int = 0
    password: str = ""
    server: str = ""
    init_timeout_ms: int = 60_000
    magic: int = 7_700_101
    deviation: int = 10
    history_days: int = 30
    symbols: str = ""
    price_interval_ms: int = 250
    poll_interval_ms: int = 250
    account_interval_ms: int = 2_000
    positions_interval_ms: int = 5_000
    backoff_initial_ms: int = 500
    backoff_max_ms: int = 30_000
    book_dir: str = ""
    id: str = ""
    log_level: str = "INFO"
    log_format: str = "json"

    def __repr__(self) -> str:  # the password never reaches a log or a traceback
        return f"Mt5BridgeConfig(account_id={self.account_id!r}, login={self.login}, server={self.server!r})"

    @property
    def bridge_id(self) -> str:
        return self.id or f"mt5-{socket.gethostname()}-{os.getpid()}"

    @property
    def price_symbols(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.symbols.split(",") if s.strip())

    @property
    def book_path(self) -> Path:
        base = Path(self.book_dir) if self.book_dir else _home() / "mt5bridge"
        return base / f"book_{self.account_id}.jsonl"


def _home() -> Path:
    return Path(os.environ.get("HEDGEBRIDGE_HOME") or Path.home() / ".hedgebridge")


def from_env(environ: Mapping[str, str] | None = None) -> Mt5BridgeConfig:
    return check(load(Mt5BridgeConfig, PREFIX, environ))


def check(cfg: Mt5BridgeConfig) -> Mt5BridgeConfig:
    """Reject values the bridge cannot run with; the message names the variable."""
    if not _ACCOUNT.match(cfg.account_id):
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
    if cfg.backoff_max_ms < cfg.backoff_initial_ms:
        raise ConfigError(f"{PREFIX}BACKOFF_MAX_MS must not be below BACKOFF_INITIAL_MS")
    bad = [s for s in cfg.price_symbols if not re.match(r"^[A-Za-z0-9._#+-]{1,32}$", s)]
    if bad:
        raise ConfigError(f"{PREFIX}SYMBOLS: {bad[0]!r} is not a protocol symbol (1-32 of A-Z a-z 0-9 . _ # + -)")
    return cfg
