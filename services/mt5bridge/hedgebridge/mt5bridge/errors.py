"""Bridge faults."""

from __future__ import annotations

from hedgebridge.common.bus import NatsUnreachable
from hedgebridge.common.faults import Fatal, Retryable

__all__ = ["AccountMismatch", "Mt5PackageMissing", "NatsUnreachable", "TerminalLost", "TerminalUnavailable"]


class Mt5PackageMissing(Fatal):
    """The ``MetaTrader5`` package cannot be imported (it exists for Windows only: ``pip install
    'hedgebridge[mt5]'`` on the Windows host that runs the terminal)."""

    code = "MT5_PACKAGE_MISSING"


class TerminalUnavailable(Retryable):
    """``initialize`` or ``login`` failed: no terminal at the path, wrong credentials, no trade server."""

    code = "TERMINAL_UNAVAILABLE"


class TerminalLost(Retryable):
    """The package lost its link to the terminal (an IPC error): the terminal closed or hangs."""

    code = "TERMINAL_UNAVAILABLE"


class AccountMismatch(Fatal):
    """The terminal is logged in to another account than the configured login: nothing is traded."""

    code = "ACCOUNT_MISMATCH"
