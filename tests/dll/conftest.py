"""Fixtures for the WebSocket client library: the sanitizer build, a driver process per test."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .client import DLL_DIR, DllClient

if TYPE_CHECKING:
    from .tls import TestCa, TlsProxy

MakeCa = Callable[[str], "TestCa"]
StartProxy = Callable[["TestCa", int, list[str], list[str]], Awaitable["TlsProxy"]]


def _missing_toolchain() -> str | None:
    if shutil.which("g++") is None or shutil.which("make") is None:
        return "g++ or make is not installed (apt-get install g++ make)"
    probe = subprocess.run(
        ["g++", "-std=c++17", "-fsyntax-only", "-x", "c++", "-"],
        input="#include <boost/beast/version.hpp>\n#include <openssl/ssl.h>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return "Boost.Beast or OpenSSL headers are missing (apt-get install libboost-dev libssl-dev)"
    return None


def make(*targets: str) -> None:
    """``make -C dll -j2 <targets>``, one build at a time even when several test sessions share the tree."""
    build_dir = DLL_DIR / "build"
    build_dir.mkdir(exist_ok=True)
    with (build_dir / ".make.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(["make", "-C", str(DLL_DIR), "-j2", *targets], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"make -C dll {' '.join(targets)} failed:\n{build.stdout[-4000:]}\n{build.stderr[-8000:]}")


@pytest.fixture(scope="session")
def asan_library() -> Path:
    """``make -C dll linux-asan``: the library with AddressSanitizer and UndefinedBehaviorSanitizer."""
    reason = _missing_toolchain()
    if reason is not None:
        pytest.skip(f"cannot build the WebSocket client library: {reason}")
    make("linux-asan")
    return DLL_DIR / "build" / "asan" / "libhedgebridge_ws.so"


@pytest.fixture
async def dll(asan_library: Path, tmp_path: Path) -> AsyncIterator[DllClient]:
    client = await DllClient.start(asan_library, tmp_path / "driver")
    yield client
    await client.close()


@pytest.fixture
def make_ca(tmp_path: Path) -> MakeCa:
    """A factory of test certificate authorities (``make_ca(name)``)."""
    pytest.importorskip(
        "cryptography", reason="the wss tests make their certificates with the cryptography package (pip install)"
    )
    from .tls import TestCa

    def make(name: str) -> TestCa:
        return TestCa(tmp_path / name, name)

    return make


@pytest.fixture
async def tls_proxy(make_ca: MakeCa) -> AsyncIterator[StartProxy]:
    """Starts TLS-terminating proxies: ``await tls_proxy(ca, upstream_port, dns_names, ip_addresses)``."""
    from .tls import TlsProxy

    proxies: list[TlsProxy] = []

    async def start(ca: TestCa, upstream_port: int, names: list[str], ips: list[str]) -> TlsProxy:
        proxy = TlsProxy(ca.server_context(names, ips), upstream_port)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.stop()
