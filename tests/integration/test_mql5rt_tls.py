"""TLS on the MQL5 runtime's sockets (OpenSSL): a probe program (``tests/mql5/fixtures/TlsProbe.mq5``) against a
TLS echo server with certificates of a test CA. The handshake verifies the certificate and the host name,
SocketTlsCertificate describes it, SocketConnect secures port 443 by itself, reads and writes go through the
SocketTls* functions."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from hedgebridge.sim.ea import build
from hedgebridge.sim.ea.process import EaProcess

from ..dll.tls import TestCa

pytestmark = pytest.mark.integration

TLS_PROBE = Path(__file__).resolve().parents[1] / "mql5" / "fixtures" / "TlsProbe.mq5"


@pytest.fixture(scope="module")
def probe() -> Path:
    return build.build_expert(TLS_PROBE, TLS_PROBE.parent)


class EchoServer:
    """Answers each TLS message with itself; ``bye`` with ``ciao``, then it ends the session."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.sessions = 0  # connections whose TLS handshake succeeded
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, ssl=self.context)
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(4096):
                writer.write(b"ciao" if b"bye" in data else data)
                await writer.drain()
                if b"bye" in data:
                    break
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[list[EchoServer]]:
    servers: list[EchoServer] = []
    yield servers
    for server in servers:
        await server.stop()


def context_for(ca: TestCa, names: list[str], ips: list[str]) -> tuple[ssl.SSLContext, x509.Certificate]:
    cert, cert_path, key_path = ca.issue(names, ips)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert


async def run_probe(binary: Path, files: Path, host: str, port: int, ca_file: Path) -> tuple[int, list[str]]:
    ea = EaProcess()
    await ea.start(
        binary,
        {"InpHost": host, "InpPort": str(port)},
        files_dir=files,
        allowed_hosts=[f"{host}:{port}"],
        ca_file=ca_file,
    )
    with contextlib.suppress(TimeoutError):  # the program stopped before: its exit code says why
        await ea.wait_journal("done", 20)
    return await ea.stop(), ea.journal


def described(cert: x509.Certificate, issuer: str) -> str:
    """The probe's certificate line for ``cert``: what SocketTlsCertificate answers."""
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8, "big").hex().upper()
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # MQL5's thumbprint is SHA-1
    expiration = int(cert.not_valid_after_utc.timestamp())
    subject = cert.subject.rfc4514_string()
    return f"certificate {subject}|CN={issuer}|{serial}|{thumbprint}|{expiration}"


async def test_a_handshake_verifies_the_server_and_the_tls_functions_carry_the_data(
    probe: Path, tmp_path: Path, echo: list[EchoServer]
) -> None:
    ca = TestCa(tmp_path / "ca", "Probe Test CA")
    context, cert = context_for(ca, ["localhost"], [])
    echo.append(EchoServer(context))
    port = await echo[0].start()
    code, journal = await run_probe(probe, tmp_path / "files", "localhost", port, ca.pem)
    assert code == 0, journal
    assert journal[: journal.index("done") + 1] == [
        "secured by connect false 5275",  # port 443 only is secured by SocketConnect: no certificate yet
        "handshake true 0",
        described(cert, "Probe Test CA"),
        "read 5 hello",
        "available world! 0",
        "ended ciao -1 5273 false",  # what the server sent before ending the session, then -1 (I/O error)
        "SocketSend: the connection is secured by TLS; use SocketTlsSend",
        "plain -1 5273 false",
        "done",
    ]
    assert echo[0].sessions == 2


@pytest.mark.parametrize(
    ("issued_by_trusted_ca", "names", "reason"),
    [
        (True, ["other.example"], "certificate verify failed: hostname mismatch"),
        (False, ["localhost"], "certificate verify failed: unable to get local issuer certificate"),
    ],
)
async def test_a_certificate_for_another_name_or_from_an_untrusted_ca_is_refused(
    probe: Path, tmp_path: Path, echo: list[EchoServer], issued_by_trusted_ca: bool, names: list[str], reason: str
) -> None:
    trusted = TestCa(tmp_path / "trusted", "Trusted Test CA")
    issuer = trusted if issued_by_trusted_ca else TestCa(tmp_path / "other", "Other Test CA")
    context, _ = context_for(issuer, names, [])
    echo.append(EchoServer(context))
    port = await echo[0].start()
    code, journal = await run_probe(probe, tmp_path / "files", "localhost", port, trusted.pem)
    assert code == 0, journal
    assert journal[: journal.index("done") + 1] == [
        "secured by connect false 5275",
        f"TLS handshake with 'localhost' failed: {reason}",
        "handshake false 5274",  # ERR_NETSOCKET_HANDSHAKE_FAILED
        "done",
    ]
    assert echo[0].sessions == 0


def any_loopback_address() -> str:
    """One of 127.0.0.0/8, so that port 443 is free there (runs of this test in parallel take different ones)."""
    return "127." + ".".join(str(random.randint(1, 254)) for _ in range(3))


async def listen_on_443(echo: list[EchoServer], context: ssl.SSLContext, host: str) -> None:
    echo.append(EchoServer(context))
    try:
        await echo[0].start(host, 443)
    except OSError as exc:  # not root, or that address's port 443 is taken
        pytest.skip(f"cannot listen on {host}:443 here: {exc}")


async def test_socket_connect_secures_port_443_by_itself(probe: Path, tmp_path: Path, echo: list[EchoServer]) -> None:
    ca = TestCa(tmp_path / "ca", "Port 443 Test CA")
    host = any_loopback_address()
    context, cert = context_for(ca, [], [host])  # an IP address is checked against the certificate's IPs
    await listen_on_443(echo, context, host)
    code, journal = await run_probe(probe, tmp_path / "files", host, 443, ca.pem)
    assert code == 0, journal
    assert journal[:3] == ["secured by connect true 0", described(cert, "Port 443 Test CA"), "read 5 hello"]
    assert "done" in journal


async def test_socket_connect_to_port_443_fails_when_the_certificate_is_refused(
    probe: Path, tmp_path: Path, echo: list[EchoServer]
) -> None:
    ca = TestCa(tmp_path / "ca", "Port 443 Test CA")
    host = any_loopback_address()
    context, _ = context_for(ca, ["localhost"], [])  # not for the address connected to
    await listen_on_443(echo, context, host)
    code, journal = await run_probe(probe, tmp_path / "files", host, 443, ca.pem)
    assert code == 0, journal
    assert journal[: journal.index("done") + 1] == [
        f"TLS handshake with '{host}' failed: certificate verify failed: IP address mismatch",
        "connect false 5274",
        "done",
    ]


async def test_a_ca_file_that_is_not_certificates_is_refused_at_start(probe: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    code, journal = await run_probe(probe, tmp_path / "files", "localhost", 1, bogus)
    assert code == 2
    assert journal == [f"harness: --ca-file takes a PEM file of certificates, not '{bogus}'"]
