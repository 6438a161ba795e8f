"""One ``hedgebridge up`` per home, and what an ``up`` that was killed left running.

``up`` holds an exclusive lock on ``<home>/up.lock`` while it runs, so a second ``up`` on the same home (and
so on the same JetStream store) is refused even before the first has written ``stack.json``. It records every
process it starts in ``<home>/started.json`` — pid and the kernel's start time of that pid, rewritten at
every start — from the first server on. An ``up`` that ends normally stops them all and removes the record;
one that was killed (SIGKILL, the machine's OOM killer) cannot, and its servers and services, each in a
session of its own, keep running: NATS on the JetStream store the next ``up`` would open. The next ``up``
therefore stops what the record names first, services before servers, each only when its pid still belongs
to the process that was recorded (the start time matches), so a pid that was reused is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import msgspec

from .state import CliError


class Started(msgspec.Struct, kw_only=True):
    name: str
    pid: int
    start_time: int  # /proc/<pid>/stat field 22, clock ticks since boot


class StartedRecord(msgspec.Struct, kw_only=True):
    supervisor_pid: int
    processes: list[Started] = []  # in start order


def lock_path(base: Path) -> Path:
    return base / "up.lock"


def record_path(base: Path) -> Path:
    return base / "started.json"


def hold_lock(base: Path) -> IO[str]:
    """Take the home's lock for as long as the returned file stays open; CliError when another ``up`` has it."""
    import fcntl  # POSIX: up runs its processes in sessions of their own, which Windows has not

    handle = open(lock_path(base), "a+")  # noqa: SIM115 - held open until up exits
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise CliError(f"a stack is already running from {base} (pid {holder})", 1) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (None: no such process, or no /proc to tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def record(base: Path, pids: dict[str, int]) -> None:
    """Rewrite the record of what this ``up`` runs now (``pids`` in start order; 0 = not running)."""
    processes = [
        Started(name=name, pid=pid, start_time=started)
        for name, pid in pids.items()
        if pid and (started := start_time(pid)) is not None
    ]
    path = record_path(base)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(StartedRecord(supervisor_pid=os.getpid(), processes=processes)))
    tmp.replace(path)


def forget(base: Path) -> None:
    with contextlib.suppress(OSError):
        record_path(base).unlink()


def still_running(base: Path) -> tuple[int, list[Started]]:
    """The recorded ``up``'s pid and those of its processes that still run (services first)."""
    try:
        found = msgspec.json.decode(record_path(base).read_bytes(), type=StartedRecord)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return 0, []
    alive = [p for p in found.processes if start_time(p.pid) == p.start_time]
    return found.supervisor_pid, alive[::-1]


def stop_leftovers(base: Path, say: Callable[[str], None], timeout_s: float = 10.0) -> list[Started]:
    """Stop what a killed ``up`` left running (SIGTERM, then SIGKILL after ``timeout_s``); returns them."""
    supervisor, alive = still_running(base)
    if alive:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in alive)
        say(f"an earlier up (pid {supervisor}) did not stop its processes: stopping {names}")
    for process in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while start_time(process.pid) == process.start_time and time.monotonic() < deadline:
            time.sleep(0.05)
        if start_time(process.pid) == process.start_time:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    forget(base)
    return alive
