"""Terminals under test, behind one small interface: the Python simulated terminal on a gateway (``SimEa``), the
compiled EA on its simulated trade server behind a WebSocket proxy (``EaTerminal``, DLL or native transport), and
the MetaTrader5-package bridge driving the simulated package (``fake_mt5``). Shared contract tests run against
all of them. ``inject`` and ``positions`` are coroutines: the compiled EA's trade server is asked over its
control channel, and the answer is the trade server's state now, never a cached view."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from hedgebridge.mt5bridge.config import Mt5BridgeConfig
from hedgebridge.mt5bridge.service import Mt5Bridge
from hedgebridge.sim.account import SimFault
from hedgebridge.sim.ea import launch
from hedgebridge.sim.ea.launch import CompiledEa, Transport
from hedgebridge.sim.terminal import SimTerminal

from ..helpers import ea_token, wait_for
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

    async def inject(self, fault: Fault) -> None: ...

    async def positions(self) -> dict[str, float]:
        """Open positions on the trade server: ticket -> volume."""
        ...

    async def stops(self) -> dict[str, tuple[float, float]]:
        """Open positions on the trade server: ticket -> (stop loss, take profit), 0 for none."""
        ...

    async def change_symbol(self, symbol: str, **rules: float | str) -> None:
        """The broker changes a symbol's rules (``volume_min``, ``volume_max``, ``volume_step``, ``trade_mode`` by
        its protocol name): the terminal reports them as it reports any change."""
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

    async def inject(self, fault: Fault) -> None:
        self.terminal.account.faults.append(
            SimFault(retcode=fault.retcode, fill_ratio=fault.fill_ratio, report=not fault.lost_report)
        )

    async def positions(self) -> dict[str, float]:
        return {str(t): p.volume for t, p in self.terminal.account.positions.items()}

    async def stops(self) -> dict[str, tuple[float, float]]:
        return {str(t): (p.sl, p.tp) for t, p in self.terminal.account.positions.items()}

    async def change_symbol(self, symbol: str, **rules: float | str) -> None:
        await self.terminal.change_symbol(symbol, **rules)


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

    async def inject(self, fault: Fault) -> None:
        delay = LATE_REPORT_S if fault.lost_report else 0.0
        self.mt5.faults.append(FakeFault(retcode=fault.retcode, fill_ratio=fault.fill_ratio, delay_s=delay))

    async def positions(self) -> dict[str, float]:
        return {str(t): v for t, v in self.mt5.open_positions().items()}

    async def stops(self) -> dict[str, tuple[float, float]]:
        return {str(t): stops for t, stops in self.mt5.open_stops().items()}

    async def change_symbol(self, symbol: str, **rules: float | str) -> None:
        self.mt5.set_symbol(symbol, **rules)


class EaTerminal:
    """The compiled EA: faults go to its trade server (a retcode, a partial fill) or to its proxy (a lost report:
    the EA executed, the network lost the OPENED/CLOSED and the connection)."""

    def __init__(self, ea: CompiledEa) -> None:
        self.ea = ea

    @property
    def account_id(self) -> str:
        return self.ea.account_id

    @property
    def received(self) -> list[str]:
        return self.ea.proxy.received

    async def inject(self, fault: Fault) -> None:
        if fault.lost_report:
            self.ea.proxy.drop_next_report()
        if fault.retcode is not None:
            await self.ea.control("trade.fault", retcode=fault.retcode)
        if fault.fill_ratio is not None:
            await self.ea.control("trade.fault", fill_ratio=fault.fill_ratio)

    async def positions(self) -> dict[str, float]:
        return await self.ea.positions()

    async def stops(self) -> dict[str, tuple[float, float]]:
        reply = await self.ea.control("trade.positions")
        return {str(p["ticket"]): (float(p["sl"]), float(p["tp"])) for p in reply["positions"]}

    async def change_symbol(self, symbol: str, **rules: float | str) -> None:
        reply = await self.ea.control("trade.symbol", symbol=symbol, **rules)
        if not reply.get("ok"):
            raise AssertionError(f"trade.symbol refused: {reply}")


@dataclass(frozen=True, slots=True)
class EaBuild:
    binary: Path
    transport: Transport
    dll_path: Path | None = None


_BUILT: dict[Transport, EaBuild | launch.EaUnavailable] = {}


def prebuild_eas() -> None:
    """Build both EAs (and the WebSocket library) once, before the tests run: a build takes minutes on a loaded
    machine and must not count against the first test's timeout. What fails is kept for the tests that need it."""
    if not launch.runtime_present():
        return
    for transport in ("native", "dll"):
        if transport not in _BUILT:
            try:
                _BUILT[transport] = _build(transport)
            except launch.EaUnavailable as exc:
                _BUILT[transport] = exc


def _build(transport: Transport) -> EaBuild:
    binary = launch.build(transport)
    dll_path = launch.dll_library() if transport == "dll" else None
    return EaBuild(binary, transport, dll_path)


def build_ea_for_tests(transport: Transport) -> EaBuild:
    """The compiled EA for a session: skipped where the tree has no MQL5 runtime, a failure (naming what is
    missing) where the runtime is present and the EA does not build."""
    if not launch.runtime_present():
        pytest.skip(launch.NO_RUNTIME)
    built = _BUILT.get(transport)
    if built is None:
        try:
            built = _BUILT[transport] = _build(transport)
        except launch.EaUnavailable as exc:
            built = _BUILT[transport] = exc
    if isinstance(built, launch.EaUnavailable):
        pytest.fail(f"the compiled EA ({transport} transport) cannot run: {built}", pytrace=False)
    return built


class EaTerminals:
    """Starts compiled EAs (one process and one proxy per account) on a gateway and stops them all at the end."""

    def __init__(self, build: EaBuild, gateway_port: int, secret: str, files_root: Path) -> None:
        self.build = build
        self.gateway_port = gateway_port
        self.secret = secret
        self.files_root = files_root
        self.running: list[CompiledEa] = []

    async def start(self, accounts: list[str]) -> list[Terminal]:
        started: list[Terminal] = []
        for account in accounts:
            ea = await CompiledEa.start(
                self.build.binary,
                self.build.transport,
                account=account,
                token=ea_token(self.secret, account),
                gateway_host="127.0.0.1",
                gateway_port=self.gateway_port,
                files_dir=self.files_root / account,
                dll_path=self.build.dll_path,
            )
            self.running.append(ea)
            started.append(EaTerminal(ea))
        return started

    async def __aenter__(self) -> EaTerminals:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(ea.stop("test over") for ea in self.running), return_exceptions=True)
        self.running = []


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
