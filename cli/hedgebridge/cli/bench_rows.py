"""The bench's rows and child processes: what ``hedgebridge bench`` measures into and how it reports a
percentile (shared by the bench's measurement modules)."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from hedgebridge.common.servers import terminate


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``samples``."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Row:
    name: str
    samples: list[float]  # milliseconds
    baseline: Row | None = None
    target: str = ""
    met: bool | None = None
    errors: int = 0
    skipped: str = ""  # why the measurement could not run (no samples)

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    @property
    def p999(self) -> float:
        return percentile(self.samples, 99.9)

    def ratio(self, q: float) -> float | None:
        if self.baseline is None:
            return None
        return percentile(self.samples, q) / percentile(self.baseline.samples, q)

    def as_json(self) -> dict[str, object]:
        """The row in ``bench --json``: every key always present, null where the row has no figure (a skipped
        measurement, a row without a baseline or a target)."""
        measured = bool(self.samples)
        return {
            "name": self.name,
            "samples": len(self.samples),
            "p50_ms": self.p50 if measured else None,
            "p99_ms": self.p99 if measured else None,
            "p999_ms": self.p999 if measured else None,
            "p50_ratio": self.ratio(50) if measured else None,
            "p99_ratio": self.ratio(99) if measured else None,
            "p999_ratio": self.ratio(99.9) if measured else None,
            "target": self.target,
            "met": self.met,
            "errors": self.errors,
            "skipped": self.skipped,
        }


@dataclass
class Processes:
    """Child processes of the bench; all of them are stopped at the end."""

    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.children.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.children):
            terminate(process)


# the raw baseline: a plain NATS request/reply echo, in a process of its own (python -c)
NATS_RESPONDER = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def reply(msg):
        await msg.respond(msg.data)
    await nc.subscribe("bench.echo", cb=reply)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Future()
asyncio.run(main())
"""
