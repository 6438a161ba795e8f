"""The compiled Expert Advisor as a terminal: build it, start one process per account behind a ``WsProxy``,
and read its trade server.

The EA (``mql5/``) compiled as C++ against the MQL5 runtime for tests runs in its own process driven by
``hedgebridge.sim.ea.process.EaProcess`` and built by ``hedgebridge.sim.ea.build.build_ea``. Both are looked up
when first needed: a tree without the runtime, a machine without g++ or the headers, or a failed build is an
``EaUnavailable`` naming what is missing, never a crash. ``CompiledEa`` is one running EA: its account, its proxy
(``received``, lost reports, cuts), its control channel (trade server faults and positions) and ``stop``.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from hedgebridge.common import logs

from .proxy import WsProxy

log = logs.get("sim.ea")

Transport = Literal["dll", "native"]
TRANSPORTS: tuple[Transport, ...] = ("dll", "native")
_TRANSPORT_INPUT = {"dll": "0", "native": "1"}  # ENUM_HB_TRANSPORT: HB_TRANSPORT_DLL, HB_TRANSPORT_NATIVE
REPO = Path(__file__).resolve().parents[5]
DLL_DIR = REPO / "dll"
DLL_LIBRARY = DLL_DIR / "build" / "linux" / "libhedgebridge_ws.so"
NO_RUNTIME = "the MQL5 runtime for tests (hedgebridge.sim.ea.process, .build) is not in this tree"
CONNECTED = "hedgebridge: connected as"  # the EA's journal line once WELCOME arrived


class EaUnavailable(RuntimeError):
    """The compiled EA cannot run here; the message says what is missing."""


class EaProcessLike(Protocol):
    """What this module uses of the runtime's ``EaProcess``."""

    journal: list[str]

    async def control(self, op: str, **fields: object) -> dict[str, Any]: ...

    async def wait_journal(self, substring: str, timeout: float) -> str: ...  # noqa: ASYNC109 (the runtime's API)

    async def stop(self, reason: str) -> int: ...


def runtime_present() -> bool:
    """Whether this tree has the MQL5 runtime for tests (its process driver and build)."""
    try:
        importlib.import_module("hedgebridge.sim.ea.process")
        importlib.import_module("hedgebridge.sim.ea.build")
    except ModuleNotFoundError:
        return False
    return True


def _runtime(name: str) -> Any:
    try:
        return importlib.import_module(f"hedgebridge.sim.ea.{name}")
    except ModuleNotFoundError as exc:
        raise EaUnavailable(
            f"the MQL5 runtime for tests is not in this tree (hedgebridge.sim.ea.{name}: {exc})"
        ) from None


def check_transport(transport: str) -> Transport:
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    return "dll" if transport == "dll" else "native"


def build(transport: Transport) -> Path:
    """The compiled EA for ``transport`` (cached by the runtime's build); ``EaUnavailable`` when it cannot be."""
    check_transport(transport)
    if shutil.which("g++") is None:
        raise EaUnavailable("cannot build the EA: g++ is not installed (apt-get install g++)")
    build_ea = _runtime("build").build_ea
    try:
        binary = build_ea(transport=transport)
    except EaUnavailable:
        raise
    except Exception as exc:  # the runtime's build error names the missing header or the compiler's message
        raise EaUnavailable(f"cannot build the EA ({transport} transport): {exc}") from exc
    return Path(binary)


def dll_library() -> Path:
    """``make -C dll linux``: the WebSocket library the DLL transport imports."""
    if shutil.which("make") is None or shutil.which("g++") is None:
        raise EaUnavailable("cannot build the WebSocket library: g++ or make is not installed")
    try:
        made = subprocess.run(
            ["nice", "make", "-C", str(DLL_DIR), "-j2", "linux"], capture_output=True, text=True, timeout=1800
        )
    except subprocess.TimeoutExpired:
        raise EaUnavailable("building the WebSocket library took more than 30 minutes") from None
    if made.returncode != 0 or not DLL_LIBRARY.exists():
        tail = (made.stderr or made.stdout)[-2000:]
        raise EaUnavailable(f"cannot build the WebSocket library (make -C dll linux):\n{tail}")
    return DLL_LIBRARY


@dataclass(frozen=True, slots=True)
class TerminalTls:
    """wss between the terminal and its proxy: the proxy serves TLS with ``server`` (a certificate for ``host``,
    the name in the EA's URL) and the terminal trusts ``ca_file`` besides the system's CA store; ``upstream``
    (a client context) when the gateway serves wss itself."""

    server: ssl.SSLContext
    ca_file: Path
    host: str = "localhost"
    upstream: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class EaSettings:
    """How the EA is run: timings kept short for tests and the simulator."""

    symbol: str = "EURUSD"
    price_symbols: tuple[str, ...] = ("EURUSD",)
    price_interval_ms: int = 20
    poll_interval_ms: int = 5
    reconnect_min_ms: int = 50
    reconnect_max_ms: int = 1000
    connect_timeout_ms: int = 5000  # the EA's own connect timeout (InpConnectTimeoutMs)
    connect_timeout_s: float = 20.0  # how long ``CompiledEa.start`` waits for the EA to say it is connected
    trade_config: dict[str, object] | None = None
    tls: TerminalTls | None = None  # wss (the native transport); ws when None


def ea_inputs(url: str, token: str, account: str, transport: Transport, settings: EaSettings) -> dict[str, str]:
    return {
        "InpGatewayUrl": url,
        "InpToken": token,
        "InpTransport": _TRANSPORT_INPUT[transport],
        "InpAccountId": account,
        "InpPriceSymbols": ",".join(settings.price_symbols),
        "InpPriceIntervalMs": str(settings.price_interval_ms),
        "InpPollIntervalMs": str(settings.poll_interval_ms),
        "InpReconnectMinMs": str(settings.reconnect_min_ms),
        "InpReconnectMaxMs": str(settings.reconnect_max_ms),
        "InpConnectTimeoutMs": str(settings.connect_timeout_ms),
    }


class CompiledEa:
    """One compiled EA process for one account, connected to the gateway through its own proxy."""

    def __init__(self, account_id: str, transport: Transport, proxy: WsProxy, process: EaProcessLike) -> None:
        self.account_id = account_id
        self.transport = transport
        self.proxy = proxy
        self.process = process

    @classmethod
    async def start(
        cls,
        binary: Path,
        transport: Transport,
        *,
        account: str,
        token: str,
        gateway_host: str,
        gateway_port: int,
        files_dir: Path,
        gateway_path: str = "/ea",
        dll_path: Path | None = None,
        settings: EaSettings | None = None,
        wait_connected: bool = True,
    ) -> CompiledEa:
        """Start the EA behind a new proxy to the gateway; unless ``wait_connected`` is False, wait until it says
        it is connected (``EaUnavailable`` with its journal when it does not)."""
        settings = settings or EaSettings()
        if transport == "dll" and dll_path is None:
            raise ValueError("the DLL transport needs dll_path (the WebSocket library)")
        tls = settings.tls
        proxy = (
            WsProxy(gateway_host, gateway_port)
            if tls is None
            else WsProxy(gateway_host, gateway_port, tls=tls.server, upstream_tls=tls.upstream, name=tls.host)
        )
        await proxy.start()
        try:
            url = proxy.url(gateway_path)
            process = await _launch(binary, transport, account, token, url, proxy, files_dir, dll_path, settings)
        except BaseException:
            await proxy.close()
            raise
        ea = cls(account, transport, proxy, process)
        if not wait_connected:
            return ea
        try:
            await process.wait_journal(CONNECTED, settings.connect_timeout_s)
        except BaseException as exc:
            journal = "\n".join(process.journal[-20:])
            await ea.stop("not connected")
            if isinstance(exc, Exception):
                raise EaUnavailable(f"the EA for {account} did not connect ({exc}); journal:\n{journal}") from exc
            raise
        return ea

    async def control(self, op: str, **fields: object) -> dict[str, Any]:
        return await self.process.control(op, **fields)

    async def positions(self) -> dict[str, float]:
        """Open positions on the EA's trade server: ticket -> volume."""
        reply = await self.control("trade.positions")
        rows = reply.get("positions")
        shaped = isinstance(rows, list) and all(isinstance(p, dict) and {"ticket", "volume"} <= p.keys() for p in rows)
        if not shaped or not isinstance(rows, list):
            raise TypeError(f"trade.positions answered {reply!r}, not a list of positions with ticket and volume")
        return {str(p["ticket"]): float(p["volume"]) for p in rows}

    async def stop(self, reason: str = "stopped") -> int:
        try:
            return await self.process.stop(reason)
        finally:
            await self.proxy.close()


def trade_state_file(files_dir: Path) -> Path:
    """Where the EA's simulated trade server keeps the account between runs: beside the terminal's files, so an
    EA started again on the same files finds its positions and history, as on a real broker."""
    return files_dir.with_name(files_dir.name + ".trade-server.json")


async def _launch(
    binary: Path,
    transport: Transport,
    account: str,
    token: str,
    url: str,
    proxy: WsProxy,
    files_dir: Path,
    dll_path: Path | None,
    settings: EaSettings,
) -> EaProcessLike:
    process_class = _runtime("process").EaProcess
    await asyncio.to_thread(files_dir.mkdir, parents=True, exist_ok=True)
    process = process_class()
    await process.start(
        binary,
        ea_inputs(url, token, account, transport, settings),
        files_dir=files_dir,
        allow_dll=transport == "dll",
        dll_path=dll_path,
        server_offset_s=0,
        symbol=settings.symbol,
        trade_config=settings.trade_config,
        trade_state=trade_state_file(files_dir),
        allowed_hosts=[f"{proxy.name}:{proxy.port}"],
        ca_file=settings.tls.ca_file if settings.tls is not None else None,
    )
    return cast(EaProcessLike, process)


async def start_many(
    accounts: list[str],
    token_for: Callable[[str], str],
    transport: Transport,
    *,
    gateway_host: str,
    gateway_port: int,
    files_root: Path,
    gateway_path: str = "/ea",
    settings: EaSettings | None = None,
) -> list[CompiledEa]:
    """Build (once) and start one EA per account; stop the ones started when one fails."""
    binary = await asyncio.to_thread(build, transport)
    dll_path = await asyncio.to_thread(dll_library) if transport == "dll" else None
    started: list[CompiledEa] = []
    try:
        for account in accounts:
            ea = await CompiledEa.start(
                binary,
                transport,
                account=account,
                token=token_for(account),
                gateway_host=gateway_host,
                gateway_port=gateway_port,
                gateway_path=gateway_path,
                files_dir=files_root / account,
                dll_path=dll_path,
                settings=settings,
            )
            started.append(ea)
    except BaseException:
        await asyncio.gather(*(ea.stop("start failed") for ea in started), return_exceptions=True)
        raise
    return started
