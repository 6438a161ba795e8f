"""The nemesis's schedule: which fault comes when, deterministic from a seed (pure, no I/O).

A round has every kind of fault once, in an order drawn from the seed, the terminal drops once per step of an
order. ``kill-executors`` kills both executors at once: they come back under the same names, so each takes over
what its earlier run held. Each fault names its target (which gateway, executor, process to pause) and how many
answers of the load to let pass before it (``after``), so that it lands in the middle of the traffic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DROP_STEPS = ("delivered", "executed", "lost", "reported")
KINDS = (
    "kill-nats-leader",
    "kill-nats-node",
    "kill-gateway",
    "kill-executor",
    "kill-executors",
    "kill-coordinator",
    "kill-cache",
    "flushall",
    "pause",
    "drop-terminal",
)
PAUSABLE = ("gw-1", "gw-2", "ex-1", "ex-2", "coordinator", "nats", "cache", "terminals")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    target: str = ""  # a service's name, an account, or "nats" / "cache" for a pause
    step: str = ""  # drop-terminal: where in the order the connection goes
    after: int = 1  # answers of the load to wait for before this fault

    def __str__(self) -> str:
        detail = ":".join(x for x in (self.target, self.step) if x)
        return f"{self.kind}({detail})" if detail else self.kind


def schedule(seed: int, rounds: int, accounts: list[str]) -> list[Fault]:
    """``rounds`` rounds of faults drawn from ``seed``: the same seed gives the same schedule."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    for _ in range(rounds):
        kinds = [k for k in KINDS if k != "drop-terminal"] + [f"drop-terminal:{s}" for s in DROP_STEPS]
        rng.shuffle(kinds)
        for kind in kinds:
            after = rng.randint(1, 3)
            if kind.startswith("drop-terminal:"):
                faults.append(Fault("drop-terminal", rng.choice(accounts), kind.split(":")[1], after))
            elif kind == "kill-gateway":
                faults.append(Fault(kind, rng.choice(["gw-1", "gw-2"]), after=after))
            elif kind == "kill-executor":
                faults.append(Fault(kind, rng.choice(["ex-1", "ex-2"]), after=after))
            elif kind == "pause":
                faults.append(Fault(kind, rng.choice(PAUSABLE), after=after))
            else:
                faults.append(Fault(kind, after=after))
    return faults
