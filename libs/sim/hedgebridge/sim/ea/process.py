"""One compiled Expert Advisor running under the MQL5 runtime's harness, driven from asyncio.

The harness (``mql5/testing/runtime/mql5rt/harness.hpp``) reads control commands as JSON lines on stdin and
answers each on stdout; the EA's journal (``Print``) is its stderr. ``EaProcess`` starts it with the EA's
inputs and the terminal's settings, sends commands (``control``), keeps the journal (``journal``,
``wait_journal``) and stops it the way the terminal removes an EA (``stop``: OnDeinit, then exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hedgebridge.common import logs

log = logs.get("sim.ea.process")

REASON_REMOVE = 1  # MQL5's REASON_REMOVE: the EA was removed from the chart
EXIT_CODES = {
    0: "stopped",
    2: "bad command line",
    3: "the EA did not load (a DLL was refused)",
    4: "OnInit failed",
    5: "a critical error stopped the EA",
}


class ControlError(RuntimeError):
    """The harness refused a control command (``ok: false``), or the EA is gone."""


class EaProcess:
    """A running EA: its control channel, its journal and its exit."""

    def __init__(self) -> None:
        self.journal: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._journal_changed = asyncio.Event()
        self.returncode: int | None = None

    async def start(
        self,
        binary: Path,
        inputs: Mapping[str, str],
        *,
        files_dir: Path,
        allow_dll: bool = False,
        dll_path: Path | None = None,
        server_offset_s: int = 0,
        symbol: str = "EURUSD",
        trade_config: Mapping[str, object] | None = None,
        trade_state: Path | None = None,
        allowed_hosts: list[str] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        args = [str(binary), "--files-dir", str(files_dir), "--server-offset-s", str(server_offset_s)]
        args += ["--symbol", symbol]
        for name, value in inputs.items():
            args += ["--input", f"{name}={value}"]
        if allow_dll:
            args.append("--allow-dll")
        if dll_path is not None:
            args += ["--dll-path", str(dll_path)]
        for host in allowed_hosts or []:
            args += ["--allowed-host", host]
        if trade_config:
            args += ["--trade-config", json.dumps(dict(trade_config))]
        if trade_state is not None:
            args += ["--trade-state", str(trade_state)]
        if ca_file is not None:  # trusted for TLS besides the system's CA store
            args += ["--ca-file", str(ca_file)]
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 22,
        )
        self._tasks = [asyncio.create_task(self._read_replies()), asyncio.create_task(self._read_journal())]

    async def _read_replies(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            try:
                reply = json.loads(raw)
            except ValueError:
                log.warning("the harness wrote a line that is not JSON", line=raw[:200].decode(errors="replace"))
                continue
            waiter = self._waiting.pop(reply.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(reply)
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ControlError(f"the EA exited ({self._exit_text()})"))
        self._waiting.clear()

    async def _read_journal(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        async for raw in self._proc.stderr:
            self.journal.append(raw.decode(errors="replace").rstrip("\n"))
            self._journal_changed.set()
        self.returncode = await self._proc.wait()
        self._journal_changed.set()

    def _exit_text(self) -> str:
        code = self._proc.returncode if self._proc is not None else None
        return f"exit {code}: {EXIT_CODES.get(code, 'unknown')}" if code is not None else "running"

    async def control(self, op: str, **fields: object) -> dict[str, Any]:
        """Send one command; its reply, or ``ControlError`` when the harness refused it or the EA is gone."""
        if self._proc is None or self._proc.stdin is None or self._proc.returncode is not None:
            raise ControlError(f"the EA is not running ({self._exit_text()})")
        ident = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = waiter
        self._proc.stdin.write((json.dumps({"id": ident, "op": op, **fields}) + "\n").encode())
        await self._proc.stdin.drain()
        reply = await asyncio.wait_for(waiter, 10.0)
        if not reply.get("ok"):
            raise ControlError(f"{op}: {reply.get('error', reply)}")
        return reply

    async def wait_journal(self, substring: str, timeout: float) -> str:  # noqa: ASYNC109
        """The first journal line containing ``substring``; ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for line in self.journal[seen:]:
                if substring in line:
                    return line
            seen = len(self.journal)
            if self.returncode is not None:
                raise TimeoutError(f"the EA exited ({self._exit_text()}) before the journal said {substring!r}")
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"the journal did not say {substring!r} within {timeout} s")
            self._journal_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._journal_changed.wait(), left)

    async def stop(self, reason: str | int = REASON_REMOVE, timeout: float = 10.0) -> int:  # noqa: ASYNC109
        """Remove the EA (OnDeinit with ``reason``, an MQL5 REASON_* code) and wait for its exit code."""
        proc = self._proc
        if proc is None:
            return 0
        code = reason if isinstance(reason, int) else REASON_REMOVE
        if proc.returncode is None:
            with contextlib.suppress(ControlError, TimeoutError, ConnectionError):
                await self.control("stop", reason=code)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.returncode = proc.returncode
        return proc.returncode if proc.returncode is not None else -1
