"""The compiled EA's native transport over wss: the EA (the MQL5 runtime's TLS sockets) reaches its proxy over
TLS with a certificate of a test CA, the proxy reaches the gateway over TLS too (the gateway's own
``TLS_CERT``/``TLS_KEY``), and an OPEN from the executor is executed; a certificate for another host name, or one
from a CA the terminal does not trust, is refused before any WebSocket exists."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.servers import NatsServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import OpenOrder
from hedgebridge.sim.ea.launch import CompiledEa, EaSettings, TerminalTls

from ..conftest import gateway_config
from ..dll.tls import TestCa
from ..helpers import ea_token, order, wait_for
from ..mt5.terminals import EaBuild

pytestmark = pytest.mark.integration


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path / "ca", "Terminal Test CA")


@pytest.fixture
async def tls_gateway(nats_server: NatsServer, secret: str, ca: TestCa) -> AsyncIterator[Gateway]:
    """The gateway serving wss with a certificate of ``ca`` for localhost and 127.0.0.1."""
    _, cert, key = ca.issue(["localhost"], ["127.0.0.1"])
    gw = Gateway(gateway_config(nats_server.url, secret, id="gw-tls-1", tls_cert=str(cert), tls_key=str(key)))
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def running() -> AsyncIterator[list[CompiledEa]]:
    eas: list[CompiledEa] = []
    yield eas
    for ea in eas:
        await ea.stop()


async def start(
    build: EaBuild, gateway: Gateway, secret: str, files: Path, tls: TerminalTls, *, wait_connected: bool = True
) -> CompiledEa:
    return await CompiledEa.start(
        build.binary,
        build.transport,
        account="A1",
        token=ea_token(secret, "A1"),
        gateway_host="127.0.0.1",
        gateway_port=gateway.port,
        files_dir=files,
        settings=EaSettings(tls=tls, reconnect_min_ms=200, reconnect_max_ms=400),
        wait_connected=wait_connected,
    )


async def test_the_native_ea_over_wss_executes_an_open(
    ea_native_build: EaBuild,
    tls_gateway: Gateway,
    secret: str,
    ca: TestCa,
    tmp_path: Path,
    nc: NatsClient,
    executor: Executor,
    running: list[CompiledEa],
) -> None:
    upstream = ssl.create_default_context(cafile=ca.pem)  # the proxy checks the gateway's certificate as well
    tls = TerminalTls(server=ca.server_context(["localhost"], []), ca_file=ca.pem, upstream=upstream)
    ea = await start(ea_native_build, tls_gateway, secret, tmp_path / "files", tls)
    running.append(ea)
    assert ea.proxy.url().startswith("wss://localhost:")
    opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="tls-1"))
    assert opened.status == "FILLED", opened
    assert opened.mt_ticket is not None
    assert await ea.positions() == {opened.mt_ticket: 0.1}
    assert ea.proxy.received == ["tls-1"]
    assert ea.proxy.reports == [(1, "OPENED", "tls-1")]
    assert not any("TLS" in line for line in ea.process.journal)


@pytest.mark.parametrize(
    ("trusted_issuer", "names", "reason"),
    [
        (True, ["gateway.example"], "certificate verify failed: hostname mismatch"),
        (False, ["localhost"], "certificate verify failed: unable to get local issuer certificate"),
    ],
    ids=["another-host-name", "untrusted-ca"],
)
async def test_a_certificate_the_terminal_cannot_trust_is_refused_and_nothing_connects(
    ea_native_build: EaBuild,
    tls_gateway: Gateway,
    secret: str,
    ca: TestCa,
    tmp_path: Path,
    running: list[CompiledEa],
    trusted_issuer: bool,
    names: list[str],
    reason: str,
) -> None:
    issuer = ca if trusted_issuer else TestCa(tmp_path / "other-ca", "Unknown Test CA")
    upstream = ssl.create_default_context(cafile=ca.pem)
    tls = TerminalTls(server=issuer.server_context(names, []), ca_file=ca.pem, upstream=upstream)
    ea = await start(ea_native_build, tls_gateway, secret, tmp_path / "files", tls, wait_connected=False)
    running.append(ea)
    await ea.process.wait_journal(f"TLS handshake with 'localhost' failed: {reason}", 20)
    refused = "hedgebridge: cannot connect (native transport): TLS handshake with localhost failed (error 5274)"
    await ea.process.wait_journal(refused, 10)
    await wait_for(lambda: sum(refused in line for line in ea.process.journal) >= 2, "a second attempt, refused")
    assert ea.proxy.connections == 0  # no TLS session, so no connection reached the proxy's WebSocket side
    assert "A1" not in tls_gateway.sessions
    assert not any("connected as" in line for line in ea.process.journal)
