"""The bench's reconnect storm row, through the command as a user runs it: its own NATS, a gateway process
restarted under simulated terminals from one address, every terminal measured back (the figures themselves
are the bench's to report, not asserted)."""

from __future__ import annotations

import json
import subprocess

import pytest

from ..helpers import hedgebridge_command

pytestmark = pytest.mark.integration


def test_bench_only_storm_measures_every_terminal_back() -> None:
    done = subprocess.run(
        [*hedgebridge_command(), "bench", "--only", "storm", "--storm-terminals", "40", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["skipped"] == "", row
    assert row["samples"] == 40
    assert row["errors"] == 0
    assert row["name"].startswith("reconnect storm: 40 terminals from one address")
    assert "40 of 40 back" in row["name"]
    assert row["p99_ms"] >= row["p50_ms"] >= 0
    assert isinstance(row["met"], bool)


def test_bench_refuses_a_storm_of_no_terminals() -> None:
    done = subprocess.run(
        [*hedgebridge_command(), "bench", "--only", "storm", "--storm-terminals", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "counts must be >= 1" in done.stderr
