"""The Windows build: cross-built with mingw-w64, exports exactly the names of the header, and (when Wine is
installed) a Windows console program drives the DLL against the real gateway."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from hedgebridge.common import auth
from hedgebridge.gateway.server import Gateway

from ..helpers import ea_token, wait_for
from .client import DLL_DIR, header_functions
from .conftest import MakeCa, StartProxy, make
from .wsserver import Refusal, WsTestServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MINGW = "x86_64-w64-mingw32-g++-posix"
WINDOWS_BUILD = DLL_DIR / "build" / "windows"


def pe_exports(path: Path) -> set[str]:
    """The names in a PE32+ image's export table, read from the file."""
    data = path.read_bytes()
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    assert data[pe : pe + 4] == b"PE\0\0", "not a PE image"
    (sections_count,) = struct.unpack_from("<H", data, pe + 6)
    (optional_size,) = struct.unpack_from("<H", data, pe + 20)
    optional = pe + 24
    (magic,) = struct.unpack_from("<H", data, optional)
    assert magic == 0x20B, "not a 64-bit (PE32+) image"
    export_rva, _export_size = struct.unpack_from("<II", data, optional + 112)
    sections: list[tuple[int, int, int]] = []
    for i in range(sections_count):
        base = optional + optional_size + 40 * i
        virtual_size, virtual_address, raw_size, raw_pointer = struct.unpack_from("<IIII", data, base + 8)
        sections.append((virtual_address, max(virtual_size, raw_size), raw_pointer))

    def offset(rva: int) -> int:
        for virtual_address, size, raw_pointer in sections:
            if virtual_address <= rva < virtual_address + size:
                return rva - virtual_address + raw_pointer
        raise AssertionError(f"RVA {rva:#x} is in no section")

    if export_rva == 0:
        return set()
    directory = offset(export_rva)
    (names_count,) = struct.unpack_from("<I", data, directory + 24)
    (names_rva,) = struct.unpack_from("<I", data, directory + 32)
    names = set()
    for i in range(names_count):
        (name_rva,) = struct.unpack_from("<I", data, offset(names_rva) + 4 * i)
        start = offset(name_rva)
        names.add(data[start : data.index(b"\0", start)].decode("ascii"))
    return names


@pytest.fixture(scope="session")
def windows_build() -> Path:
    """``make -C dll windows wintest``: the DLL and the console test program."""
    if shutil.which(MINGW) is None or shutil.which("make") is None:
        pytest.skip(f"cannot cross-build the Windows DLL: {MINGW} is not installed (apt-get install mingw-w64)")
    make("windows", "wintest")
    return WINDOWS_BUILD


def test_the_header_declares_the_design_api() -> None:
    names = header_functions()
    design = {"ConnectWebSocket", "ReceiveMessage", "IsConnected", "DisconnectWebSocket"}
    renamed = {"WsSend", "WsGetLastError"}  # SendMessage and GetLastError are Windows API names
    wide = {"ConnectWebSocketW", "WsSendW", "ReceiveMessageW", "WsGetLastErrorMessageW"}
    assert design | renamed | wide <= names
    assert not names & {"SendMessage", "GetLastError", "SendMessageW"}


def test_the_dll_exports_exactly_the_header_functions(windows_build: Path) -> None:
    dll = windows_build / "hedgebridge_ws.dll"
    assert pe_exports(dll) == header_functions()
    if shutil.which("x86_64-w64-mingw32-objdump"):  # the toolchain's own reading agrees
        dump = subprocess.run(
            ["x86_64-w64-mingw32-objdump", "-p", str(dll)], capture_output=True, text=True, check=True
        ).stdout
        table = dump.split("[Ordinal/Name Pointer] Table", 1)[1].split("\n\n", 1)[0]
        assert set(re.findall(r"\]\s+(\w+)", table)) == header_functions()


def test_the_dll_needs_only_system_libraries(windows_build: Path) -> None:
    """Static libgcc/libstdc++/winpthread: nothing to install beside the DLL."""
    if shutil.which("x86_64-w64-mingw32-objdump") is None:
        pytest.skip("x86_64-w64-mingw32-objdump is not installed")
    dump = subprocess.run(
        ["x86_64-w64-mingw32-objdump", "-p", str(windows_build / "hedgebridge_ws.dll")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    imported = {name.upper() for name in re.findall(r"DLL Name: (\S+)", dump)}
    system = {"KERNEL32.DLL", "WINHTTP.DLL", "CRYPT32.DLL", "BCRYPT.DLL", "MSVCRT.DLL", "USER32.DLL", "ADVAPI32.DLL"}
    assert imported <= system, imported


def _wine() -> str | None:
    return shutil.which("wine") or shutil.which("wine64")


@pytest.fixture(scope="session")
def wine_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _wine() is None:
        pytest.skip("wine is not installed: the Windows DLL is not run here (apt-get install wine)")
    return tmp_path_factory.mktemp("wineprefix")


def _wine_env(wine_prefix: Path) -> dict[str, str]:
    return {**os.environ, "WINEPREFIX": str(wine_prefix), "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}


def _windows_path(path: Path) -> str:
    return "Z:" + str(path).replace("/", "\\")


async def _wintest(windows_build: Path, wine_prefix: Path, *args: str) -> tuple[int, str]:
    """Run wintest.exe under wine with ``args`` after the DLL's path (``url token [ca_file]``, or a check and
    its url); returns its exit code and stdout."""
    wine = _wine()
    assert wine is not None
    process = await asyncio.create_subprocess_exec(
        wine,
        str(windows_build / "wintest.exe"),
        _windows_path(windows_build / "hedgebridge_ws.dll"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_wine_env(wine_prefix),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 300)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("wintest.exe did not finish under wine") from None
    output = stdout.decode(errors="replace")
    assert process.returncode is not None
    if process.returncode not in (0, 1):
        raise AssertionError(f"wintest.exe exited with {process.returncode}: {output}\n{stderr.decode()[-3000:]}")
    return process.returncode, output


def _assert_full_exchange(code: int, output: str, account: str) -> None:
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("WELCOME "), output
    assert f'"accountId":"{account}"' in lines[0]
    assert any(line.startswith("HEARTBEAT ") and '"seq":41' in line for line in lines), output
    assert "WELCOME again" in lines, output  # reconnected while the first connection's thread was closing
    assert lines[-1] == "OK"


async def test_wintest_under_wine_against_the_gateway(
    windows_build: Path, wine_prefix: Path, gateway: Gateway, secret: str
) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/ea"
    code, output = await _wintest(windows_build, wine_prefix, url, ea_token(secret, "WINE-001"))
    _assert_full_exchange(code, output, "WINE-001")


async def test_wintest_under_wine_refused_token(
    windows_build: Path, wine_prefix: Path, gateway: Gateway, secret: str
) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/ea"
    code, output = await _wintest(windows_build, wine_prefix, url, ea_token(auth.new_secret(), "WINE-001"))
    assert code == 1
    assert "FAIL no WELCOME: error 3 " in output, output
    assert "401" in output


async def test_wintest_under_wine_over_wss_with_a_test_ca(
    windows_build: Path,
    wine_prefix: Path,
    gateway: Gateway,
    secret: str,
    make_ca: MakeCa,
    tls_proxy: StartProxy,
) -> None:
    ca = make_ca("hedgebridge-test-ca")
    other = make_ca("another-ca")
    proxy = await tls_proxy(ca, gateway.port, ["localhost"], [])
    url = f"wss://localhost:{proxy.port}/ea"
    token = ea_token(secret, "WINE-002")
    code, output = await _wintest(windows_build, wine_prefix, url, token, _windows_path(ca.pem))
    _assert_full_exchange(code, output, "WINE-002")

    # the chain is checked against ca_file before the request (and its token) is sent
    code, output = await _wintest(windows_build, wine_prefix, url, token, _windows_path(other.pem))
    assert code == 1
    assert "FAIL no WELCOME: error 4 " in output, output
    assert "ca_file" in output

    # without ca_file the system store does not know the test CA
    code, output = await _wintest(windows_build, wine_prefix, url, token)
    assert code == 1
    assert "FAIL no WELCOME: error 4 " in output, output


async def test_wintest_under_wine_waits_out_retry_after(windows_build: Path, wine_prefix: Path) -> None:
    """503 with Retry-After through WinHTTP: the status and the Retry-After are reported, the delay is at least
    that plus up to as long again, and the server sees the next attempt no earlier."""
    async with WsTestServer(refusals=[Refusal(503, {"Retry-After": "1"})]) as server:
        code, output = await _wintest(windows_build, wine_prefix, "--refusal-check", server.url)
        attempts = list(server.connections)
    assert code == 0, output
    refused = next(line for line in output.splitlines() if line.startswith("REFUSED "))
    fields = dict(item.split("=") for item in refused.split()[1:])
    assert (fields["status"], fields["retry_after"]) == ("503", "1000"), output
    assert 1000 <= int(fields["delay"]) <= 2000, output
    assert [c.refused for c in attempts[:2]] == [503, 0], attempts
    assert attempts[1].accepted_at - attempts[0].answered_at >= 1.0


async def test_wintest_under_wine_disconnect_does_not_wait_for_the_close(
    windows_build: Path, wine_prefix: Path
) -> None:
    """DisconnectWebSocket returns while the server has not answered the close; the retired thread ends the
    handshake when the answer comes, and holds the DLL loaded until then."""
    wine = _wine()
    assert wine is not None
    async with WsTestServer(answer_close=False) as server:
        process = await asyncio.create_subprocess_exec(
            wine,
            str(windows_build / "wintest.exe"),
            _windows_path(windows_build / "hedgebridge_ws.dll"),
            "--close-check",
            server.url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=_wine_env(wine_prefix),
        )
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 300)
            assert line.strip() == b"RETURNED", line
            (conn,) = server.connections
            assert not conn.eof, "DisconnectWebSocket returned only after the socket was closed"
            await wait_for(lambda: conn.close_received, "the close frame from the retired thread", timeout_s=30)
            assert not conn.eof
            server.answer_closes()
            await wait_for(lambda: conn.eof, "the retired thread to close its socket", timeout_s=30)
            process.stdin.write(b"go\n")
            await process.stdin.drain()
            rest = await asyncio.wait_for(process.stdout.read(), 60)
            assert rest.strip() == b"OK", rest
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
