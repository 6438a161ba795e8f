"""An asyncio handle on the ctypes driver (driver.py) running the sanitizer build in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hedgebridge.protocol import Frame, ProtocolError, decode_frame

from ..helpers import wait_for

DRIVER = Path(__file__).with_name("driver.py")
REPO = Path(__file__).resolve().parents[2]
DLL_DIR = REPO / "dll"
HEADER = DLL_DIR / "include" / "hedgebridge_ws.h"

# error codes and states from dll/include/hedgebridge_ws.h
WS_ERR_NONE = 0
WS_ERR_INVALID_ARGUMENT = 1
WS_ERR_CONNECT_FAILED = 2
WS_ERR_UNAUTHORIZED = 3
WS_ERR_TLS = 4
WS_ERR_NOT_CONNECTED = 5
WS_ERR_QUEUE_FULL = 6
WS_ERR_MESSAGE_TOO_LARGE = 7
WS_ERR_BUFFER_TOO_SMALL = 8
WS_ERR_CLOSED_BY_SERVER = 9
WS_ERR_HANDSHAKE_REFUSED = 10
WS_STATE_IDLE = 0
WS_STATE_OPEN = 2
WS_STATE_BACKOFF = 3


def header_functions() -> set[str]:
    """Every function the header declares (``HBWS_API <type> HBWS_CALL <Name>(``)."""
    return set(re.findall(r"^HBWS_API\s+[\w\s\*]+?HBWS_CALL\s+(\w+)\s*\(", HEADER.read_text(), re.MULTILINE))


def sanitizer_env(log_path: Path) -> dict[str, str]:
    """Environment for a Python process that loads the ASan/UBSan build: the ASan runtime must come first."""
    libasan = subprocess.run(
        ["g++", "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = dict(os.environ)
    env["LD_PRELOAD"] = libasan
    # CPython itself keeps memory until exit, so leak checking would only report the interpreter
    env["ASAN_OPTIONS"] = f"detect_leaks=0:abort_on_error=1:log_path={log_path}"
    env["UBSAN_OPTIONS"] = f"print_stacktrace=1:halt_on_error=1:log_path={log_path}"
    return env


@dataclass(frozen=True, slots=True)
class Reconnect:
    """One reconnect the library scheduled (WsGetReconnectCount, WsGetReconnectDelayMs) and what refused the
    attempt before it (WsGetHttpStatus, WsGetRetryAfterMs; None from a library without them)."""

    number: int
    delay_ms: int
    http_status: int | None
    retry_after_ms: int | None


class DllClient:
    """One process with the library loaded; every method is one call into the C API."""

    def __init__(self, process: asyncio.subprocess.Process, log_dir: Path) -> None:
        self.process = process
        self.log_dir = log_dir

    @classmethod
    async def start(
        cls, library: Path, log_dir: Path, *, preload: Path | None = None, env: dict[str, str] | None = None
    ) -> DllClient:
        """The driver with ``library`` loaded; ``preload`` is one more library for LD_PRELOAD (after ASan's)."""
        log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local directory, once per test
        environment = {**sanitizer_env(log_dir / "sanitizer"), **(env or {})}
        if preload is not None:
            environment["LD_PRELOAD"] += f":{preload}"
        with (log_dir / "stderr.txt").open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(DRIVER),
                str(library),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=environment,
            )
        client = cls(process, log_dir)
        ready = await client._read()
        assert ready == {"ready": True}, ready
        return client

    def sanitizer_reports(self) -> str:
        texts = [p.read_text(errors="replace") for p in sorted(self.log_dir.glob("sanitizer*"))]
        stderr = (self.log_dir / "stderr.txt").read_text(errors="replace")
        if "runtime error" in stderr or "Sanitizer" in stderr:
            texts.append(stderr)
        return "\n".join(texts)

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        if not line:
            await self.process.wait()
            raise AssertionError(
                f"the driver exited with {self.process.returncode}:\n{self.sanitizer_reports()}\n"
                + (self.log_dir / "stderr.txt").read_text(errors="replace")[-4000:]
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.process.stdin.drain()
        answer = await self._read()
        assert "error" not in answer, answer
        return answer

    async def _int(self, op: str, **args: Any) -> int:
        result = (await self.call(op, **args))["result"]
        assert isinstance(result, int)
        return result

    async def connect(self, url: str | None, token: str | None, *, wide: bool = False) -> int:
        return await self._int("connect", url=url, token=token, wide=wide)

    async def send(self, text: str | None, *, wide: bool = False) -> int:
        return await self._int("send", text=text, wide=wide)

    async def receive(self, size: int = 1 << 20, *, wide: bool = False, null: bool = False) -> dict[str, Any]:
        return await self.call("receive", size=size, wide=wide, null=null)

    async def peek(self, *, wide: bool = False) -> int:
        """The size (NUL included) the next frame needs, asked with a NULL buffer; 0 when none is waiting."""
        result = (await self.receive(size=0, wide=wide, null=True))["result"]
        assert isinstance(result, int)
        assert result <= 0
        return -result

    async def error_message(self, size: int = 4096, *, wide: bool = False) -> dict[str, Any]:
        return await self.call("error_message", size=size, wide=wide)

    async def set_option(self, name: str | None, value: str | None, *, wide: bool = False) -> int:
        return await self._int("set_option", name=name, value=value, wide=wide)

    async def is_connected(self) -> int:
        return await self._int("is_connected")

    async def last_error(self) -> int:
        return await self._int("last_error")

    async def close_code(self) -> int:
        return await self._int("close_code")

    async def state(self) -> int:
        return await self._int("state")

    async def disconnect(self) -> None:
        await self.call("disconnect")

    async def pending(self) -> int:
        return await self._int("pending")

    async def reconnect_count(self) -> int:
        return await self._int("reconnect_count")

    async def reload(self) -> None:
        """dlclose the library and dlopen it again."""
        await self.call("reload")

    async def watch_reconnects(self, count: int, timeout_s: float = 20.0) -> list[tuple[int, int]]:
        """(reconnect number, its delay in ms) for each reconnect seen until ``count`` were scheduled."""
        return [(r.number, r.delay_ms) for r in await self.watch_refusals(count, timeout_s)]

    async def watch_refusals(self, count: int, timeout_s: float = 20.0) -> list[Reconnect]:
        """Each reconnect seen until ``count`` were scheduled, with the refusal that caused it (if any)."""
        answer = await self.call("watch_reconnects", count=count, timeout_s=timeout_s)
        return [Reconnect(int(n), int(d), s, r) for n, d, s, r in answer["result"]]

    async def http_status(self) -> int:
        return await self._int("http_status")

    async def retry_after(self) -> int:
        return await self._int("retry_after")

    async def describe(self) -> str:
        message = await self.error_message()
        return (
            f"state={await self.state()} connected={await self.is_connected()} error={await self.last_error()} "
            f"({message['text']!r}) close_code={await self.close_code()}"
        )

    async def until(self, predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 10.0) -> None:
        """Wait for ``predicate``; at the deadline, fail with ``what`` and the library's state."""
        try:
            await wait_for(predicate, what, timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; library: {await self.describe()}") from None

    async def until_equal(self, getter: Callable[[], Awaitable[int]], expected: int, timeout_s: float = 10.0) -> None:
        """Wait until ``getter()`` (e.g. ``client.close_code``) returns ``expected``."""

        async def equal() -> bool:
            return await getter() == expected

        name = getattr(getter, "__name__", "value")
        await self.until(equal, f"{name} == {expected}", timeout_s)

    async def next_text(self, timeout_s: float = 5.0, *, wide: bool = False) -> str:
        """The next received frame's text, polling ReceiveMessage until the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = await self.receive(wide=wide)
            assert answer["guard_ok"], answer
            if answer["result"] > 0:
                text = answer["text"]
                assert isinstance(text, str)
                return text
            assert answer["result"] == 0, answer
            if time.monotonic() > deadline:
                raise AssertionError(f"no frame within {timeout_s}s: {await self.describe()}")
            await asyncio.sleep(0.01)

    async def next_frame(self, kind: type | None = None, timeout_s: float = 5.0, *, wide: bool = False) -> Frame:
        """The next received frame of ``kind`` (others skipped), decoded with the protocol's own decoder."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = await self.next_text(max(deadline - time.monotonic(), 0.05), wide=wide)
            try:
                frame = decode_frame(text)
            except ProtocolError as exc:
                raise AssertionError(f"the library delivered a frame the protocol rejects: {text!r}") from exc
            if kind is None or isinstance(frame, kind):
                return frame

    async def close(self) -> None:
        """Disconnect, end the process, and fail when it crashed or a sanitizer reported anything."""
        with contextlib.suppress(Exception):
            await self.call("disconnect")
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            code = await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError("the driver did not exit after DisconnectWebSocket") from None
        reports = self.sanitizer_reports()
        assert not reports, reports
        assert code == 0, f"the driver exited with {code}: " + (self.log_dir / "stderr.txt").read_text()[-4000:]
