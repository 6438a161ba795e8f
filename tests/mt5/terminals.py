"""Terminals under test, behind one small interface: the simulated EA on a gateway, and the MetaTrader5-package
bridge driving the simulated package (``fake_mt5``). Shared contract tests run against both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hedgebridge.mt5bridge.config import Mt5BridgeConfig
from hedgebridge.mt5bridge.service import Mt5Bridge
from hedgebridge.sim.account import SimFault
from hedgebridge.sim.terminal import SimTerminal

from ..helpers import wait_for
from .fake_mt5 import FakeFault, FakeMT5

LATE_REPORT_S = 1.0  # a "lost" report on the bridge: the trade server answers after the order's timeout


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to the next order instead of a clean fill: a trade server retcode (nothing executes), a
    partial fill, or an execution whose report does not reach the executor in time."""

    retcode: int | None = None
    fill_ratio: float | None = None
    lost_report: bool = False


class Terminal(Protocol):
    @property
    def account_id(self) -> str: ...

    @property
    def received(self) -> list[str]:
        """actionIds of every OPEN/CLOSE the terminal received, repeats included."""
        ...

    def inject(self, fault: Fault) -> None: ...

    def positions(self) -> dict[str, float]:
        """Open positions on the trade server: ticket -> volume."""
        ...


StartTerminals = Callable[..., Awaitable[list[Terminal]]]


class SimEa:
    def __init__(self, terminal: SimTerminal) -> None:
        self.terminal = terminal

    @property
    def account_id(self) -> str:
        return self.terminal.account_id

    @property
    def received(self) -> list[str]:
        return self.terminal.account.received

    def inject(self, fault: Fault) -> None:
        self.terminal.account.faults.append(
            SimFault(retcode=fault.retcode, fill_ratio=fault.fill_ratio, report=not fault.lost_report)
        )

    def positions(self) -> dict[str, float]:
        return {str(t): p.volume for t, p in self.terminal.account.positions.items()}


class BridgedTerminal:
    def __init__(self, bridge: Mt5Bridge, mt5: FakeMT5) -> None:
        self.bridge = bridge
        self.mt5 = mt5

    @property
    def account_id(self) -> str:
        return self.bridge.account_id

    @property
    def received(self) -> list[str]:
        return self.bridge.received

    def inject(self, fault: Fault) -> None:
        delay = LATE_REPORT_S if fault.lost_report else 0.0
        self.mt5.faults.append(FakeFault(retcode=fault.retcode, fill_ratio=fault.fill_ratio, delay_s=delay))

    def positions(self) -> dict[str, float]:
        return {str(t): v for t, v in self.mt5.open_positions().items()}


def bridge_config(nats_url: str, account: str, book_dir: Path, **overrides: object) -> Mt5BridgeConfig:
    values: dict[str, object] = {
        "account_id": account,
        "nats_url": nats_url,
        "book_dir": str(book_dir),
        "symbols": "EURUSD",
        "price_interval_ms": 20,
        "poll_interval_ms": 50,
        "account_interval_ms": 60_000,
        "positions_interval_ms": 60_000,
        "backoff_initial_ms": 20,
        "backoff_max_ms": 200,
        "id": f"mt5-test-{account}",
    }
    values.update(overrides)
    return Mt5BridgeConfig(**values)  # type: ignore[arg-type]


class Bridges:
    """Starts bridges on simulated packages and stops them all at the end."""

    def __init__(self, nats_url: str, book_dir: Path) -> None:
        self.nats_url = nats_url
        self.book_dir = book_dir
        self.running: list[Mt5Bridge] = []

    async def start(self, account: str, mt5: FakeMT5 | None = None, **overrides: object) -> BridgedTerminal:
        fake = mt5 if mt5 is not None else FakeMT5()
        book_dir = Path(str(overrides.pop("book_dir", self.book_dir)))
        bridge = Mt5Bridge(bridge_config(self.nats_url, account, book_dir, **overrides), mt5=fake)
        await bridge.start()
        self.running.append(bridge)
        await wait_for(bridge.connected.is_set, f"the bridge for {account} to attach")
        return BridgedTerminal(bridge, fake)

    async def stop(self, bridge: Mt5Bridge) -> None:
        if bridge in self.running:
            self.running.remove(bridge)
            await bridge.stop()

    async def close(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.running), return_exceptions=True)
        self.running = []
