"""The loop that keeps ``hedgebridge up``'s processes running: it polls them, feeds what it sees to the
supervision rules (``hedgebridge.cli.supervision``) and performs the actions they answer — starting a process
(in a thread: a server's start waits for its port), printing a restart or a give-up, stopping everything in
order when asked. ``services`` is what ``hedgebridge status`` shows (kept in the state file by ``up``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from hedgebridge.common.servers import ServerError

from . import state
from .supervision import Action, GiveUp, Policy, Start, Stop, Supervisor, Wait, describe_exit

_PHASE_SHOWN = {"waiting": "restarting"}  # waiting for its restart delay


class Process(Protocol):
    """One process of the stack, as the loop drives it (``start`` may block until the process is usable)."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int: ...

    @property
    def log_path(self) -> Path: ...

    def start(self) -> None: ...

    def exit_code(self) -> int | None: ...

    def stop(self) -> None: ...


class Supervision:
    def __init__(
        self,
        say: Callable[[str], None],
        on_change: Callable[[], None] = lambda: None,
        policy: Policy | None = None,
        poll_s: float = 0.2,
    ) -> None:
        self.core = Supervisor(policy)
        self.processes: dict[str, Process] = {}
        self.say = say
        self.on_change = on_change
        self.poll_s = poll_s
        self.pending: dict[str, asyncio.Task[None]] = {}

    async def add(self, process: Process, *, running: bool = False) -> None:
        """Supervise ``process``: one that already runs, or one to start now (without waiting for it)."""
        self.processes[process.name] = process
        actions = self.core.add(process.name, time.monotonic(), pid=process.pid if running else None)
        await self.perform(actions)

    def pid(self, name: str) -> int:
        return self.core.units[name].pid

    def given_up(self, name: str) -> bool:
        return self.core.given_up(name)

    async def run(self, stop: asyncio.Event, before_shutdown: Callable[[], Awaitable[None]] | None = None) -> None:
        """Supervise until ``stop`` is set, then (after ``before_shutdown``) stop every process in order (nothing
        restarts meanwhile)."""
        while not stop.is_set():
            await self.check()
            wait = self.poll_s
            due = self.core.next_timer()
            if due is not None:
                wait = max(0.0, min(wait, due - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        if before_shutdown is not None:
            await before_shutdown()
        await self.shutdown()

    async def check(self) -> None:
        now = time.monotonic()
        actions: list[Action] = []
        for name, process in self.processes.items():
            if self.core.units[name].phase == "running" and (code := process.exit_code()) is not None:
                actions += self.core.exited(name, code, now)
        actions += self.core.timer(now)
        await self.perform(actions)

    async def shutdown(self) -> None:
        self.say("stopping…")
        if self.pending:  # a start under way finishes first, so that it is stopped in its turn
            await asyncio.gather(*self.pending.values(), return_exceptions=True)
        await self.perform(self.core.stop_requested())

    async def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Start):
                self.pending[action.name] = asyncio.create_task(self._start(action.name))
            elif isinstance(action, Wait):
                log = self.processes[action.name].log_path
                self.say(
                    f"{action.name} {describe_exit(action.code)}: restarting it in {action.delay_s:g}s "
                    f"(restart {action.restart}; log: {log})"
                )
            elif isinstance(action, GiveUp):
                log = self.processes[action.name].log_path
                self.say(
                    f"{action.name} {describe_exit(action.code)}, its exit {action.crashes} within "
                    f"{action.window_s:g}s: given up, it is not restarted again; the rest of the stack keeps "
                    f"running (log: {log})"
                )
            elif isinstance(action, Stop):
                await asyncio.to_thread(self.processes[action.name].stop)
                self.say(f"  stopped {action.name}")
        if actions:
            self.on_change()

    async def _start(self, name: str) -> None:
        process = self.processes[name]
        try:
            await asyncio.to_thread(process.start)
        except (ServerError, OSError) as exc:
            self.say(f"{name} could not be started: {exc}")
            actions = self.core.exited(name, None, time.monotonic())
        else:
            actions = self.core.started(name, process.pid, time.monotonic())
            if self.core.units[name].restarts:
                self.say(f"{name} restarted (pid {process.pid})")
        finally:
            self.pending.pop(name, None)
        await self.perform(actions)
        self.on_change()

    def services(self) -> dict[str, state.ServiceState]:
        """Each process's state, restarts and last restart, for the state file."""
        offset = time.time() - time.monotonic()
        shown: dict[str, state.ServiceState] = {}
        for name, unit in self.core.units.items():
            last = ""
            if unit.last_restart_at is not None:
                last = datetime.fromtimestamp(unit.last_restart_at + offset, UTC).isoformat(timespec="seconds")
            shown[name] = state.ServiceState(
                state=_PHASE_SHOWN.get(unit.phase, unit.phase),
                pid=unit.pid,
                restarts=unit.restarts,
                last_restart=last.replace("+00:00", "Z"),
                last_exit=describe_exit(unit.last_exit) if unit.exited_once else "",
            )
        return shown
