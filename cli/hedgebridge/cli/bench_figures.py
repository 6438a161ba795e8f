"""The bench's figures that are not latencies (memory, CPU, rates), their table, and the /proc readings they
come from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hedgebridge.cli.bench_rows import Row

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    """A measured quantity that is not a latency (memory, CPU, a rate), next to its baseline's."""

    name: str
    value: float
    unit: str
    baseline: Figure | None = None
    target: str = ""
    met: bool | None = None
    errors: int = 0
    note: str = ""

    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.value:
            return None
        return self.value / self.baseline.value

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": None if self.baseline is None else self.baseline.name,
            "ratio": self.ratio(),
            "target": self.target,
            "met": self.met,
            "errors": self.errors,
            "note": self.note,
        }


@dataclass
class Section:
    rows: list[Row]
    figures: list[Figure]


def table(figures: list[Figure]) -> Iterator[str]:
    yield "| gateway measurement | value | ratio to baseline | target | met | notes |"
    yield "|---|---:|---:|---|---|---|"
    for f in figures:
        ratio = f.ratio()
        met = "" if f.met is None else ("yes" if f.met else "NO")
        shown = f"{f.value:,.2f} {f.unit}" if f.value < 100 else f"{f.value:,.0f} {f.unit}"
        yield f"| {f.name} | {shown} | {'' if ratio is None else f'{ratio:.2f}x'} | {f.target} | {met} | {f.note} |"


# --- processes --------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
