"""The rules ``hedgebridge up`` supervises its processes by, without I/O: fed events, given the time, it
answers with the actions to perform (``hedgebridge.cli.supervise`` performs them on real processes).

Every process of the stack (NATS, the cache, the services, the simulated terminals) is a unit, registered
in start order. Events: ``started`` (the process runs), ``exited`` (with its exit code: negative for a
signal, None when it could not be started), ``timer`` (the time has come), ``stop_requested`` (Ctrl-C or
SIGTERM). Actions: ``Start`` a unit, ``Wait`` (it will be restarted after a delay), ``GiveUp`` on it, ``Stop``
it. The rules:

- a unit that exits while the stack runs is restarted after a delay: ``first_delay_s`` (0.5 s), doubled at
  each exit up to ``max_delay_s`` (30 s); back to the first delay when it had stayed up ``stable_s`` (60 s);
- a unit that exited ``max_crashes`` (5) times within ``window_s`` (60 s) is given up on: it is not started
  again, the rest of the stack keeps running;
- once a stop is requested nothing is started again; the units that run are stopped in the reverse order of
  their registration (the clients and services first, then the cache and NATS).
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Phase = Literal["starting", "running", "waiting", "given up", "stopped"]


@dataclass(frozen=True)
class Policy:
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    factor: float = 2.0
    stable_s: float = 60.0
    max_crashes: int = 5
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ValueError("the first delay must be positive and at most the longest delay")
        if self.factor < 1 or self.stable_s <= 0 or self.max_crashes < 1 or self.window_s <= 0:
            raise ValueError("factor >= 1, stable_s > 0, max_crashes >= 1 and window_s > 0 are required")


@dataclass(frozen=True)
class Start:
    name: str


@dataclass(frozen=True)
class Wait:
    """``name`` exited with ``code``; it is started again (its restart number ``restart``) after ``delay_s``."""

    name: str
    code: int | None
    delay_s: float
    restart: int


@dataclass(frozen=True)
class GiveUp:
    """``name`` exited with ``code``, its ``crashes``-th exit within ``window_s``: it is not started again."""

    name: str
    code: int | None
    crashes: int
    window_s: float


@dataclass(frozen=True)
class Stop:
    name: str


Action = Start | Wait | GiveUp | Stop


@dataclass
class Unit:
    """What the supervisor knows of one process. Times are the caller's clock (monotonic seconds)."""

    name: str
    phase: Phase
    next_delay_s: float
    pid: int = 0
    restarts: int = 0
    started_at: float | None = None
    last_restart_at: float | None = None
    last_exit: int | None = None
    exited_once: bool = False
    retry_at: float | None = None
    exits: deque[float] = field(default_factory=deque)


class Supervisor:
    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()
        self.units: dict[str, Unit] = {}
        self.stopping = False

    def add(self, name: str, now: float, *, pid: int | None = None) -> list[Action]:
        """Register a unit: already running as ``pid``, or (``pid`` None) to be started now."""
        if name in self.units:
            raise ValueError(f"{name} is already supervised")
        unit = Unit(name, "stopped" if self.stopping else "starting", self.policy.first_delay_s)
        self.units[name] = unit
        if self.stopping:
            return []
        if pid is not None:
            self._run(unit, pid, now)
            return []
        return [Start(name)]

    def started(self, name: str, pid: int, now: float) -> list[Action]:
        unit = self.units[name]
        if unit.phase != "starting":
            raise ValueError(f"{name} was not being started ({unit.phase})")
        self._run(unit, pid, now)
        return [Stop(name)] if self.stopping else []

    def exited(self, name: str, code: int | None, now: float) -> list[Action]:
        """``name`` ended (or, with ``code`` None, could not be started)."""
        unit = self.units[name]
        if unit.phase not in ("running", "starting"):
            raise ValueError(f"{name} was not running ({unit.phase})")
        unit.pid = 0
        unit.last_exit = code
        unit.exited_once = True
        if self.stopping:
            unit.phase = "stopped"
            return []
        policy = self.policy
        if unit.started_at is not None and now - unit.started_at >= policy.stable_s:
            unit.next_delay_s = policy.first_delay_s
        unit.exits.append(now)
        while unit.exits and unit.exits[0] <= now - policy.window_s:
            unit.exits.popleft()
        if len(unit.exits) >= policy.max_crashes:
            unit.phase = "given up"
            return [GiveUp(name, code, len(unit.exits), policy.window_s)]
        delay = unit.next_delay_s
        unit.next_delay_s = min(delay * policy.factor, policy.max_delay_s)
        unit.phase = "waiting"
        unit.retry_at = now + delay
        return [Wait(name, code, delay, unit.restarts + 1)]

    def timer(self, now: float) -> list[Action]:
        """Start every unit whose delay is over."""
        if self.stopping:
            return []
        due: list[Action] = []
        for unit in self.units.values():
            if unit.phase == "waiting" and unit.retry_at is not None and unit.retry_at <= now:
                unit.phase = "starting"
                unit.retry_at = None
                unit.restarts += 1
                unit.last_restart_at = now
                due.append(Start(unit.name))
        return due

    def next_timer(self) -> float | None:
        """When ``timer`` has something to do next (None: nothing is waiting)."""
        if self.stopping:
            return None
        times = [u.retry_at for u in self.units.values() if u.phase == "waiting" and u.retry_at is not None]
        return min(times, default=None)

    def stop_requested(self) -> list[Action]:
        """Stop every unit that runs, the last registered first; nothing is started again."""
        if self.stopping:
            return []
        self.stopping = True
        actions: list[Action] = []
        for unit in reversed(self.units.values()):
            if unit.phase in ("running", "starting"):
                actions.append(Stop(unit.name))
            elif unit.phase == "waiting":
                unit.phase = "stopped"
                unit.retry_at = None
        return actions

    def given_up(self, name: str) -> bool:
        return self.units[name].phase == "given up"

    def _run(self, unit: Unit, pid: int, now: float) -> None:
        unit.phase = "running"
        unit.pid = pid
        unit.started_at = now


def describe_exit(code: int | None) -> str:
    """How a process ended, from its exit code (``subprocess``: negative for the signal that ended it)."""
    if code is None:
        return "could not be started"
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    else:
        name = f"{name} (signal {-code})"
    return f"was killed by {name}"
