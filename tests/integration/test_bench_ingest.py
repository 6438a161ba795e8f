"""The bench's event ingest rows by themselves (``bench --only ingest``), through the command as a user runs
it: terminals → gateway → NATS → executor → cache, next to the raw publish baseline of the same run (the
figures themselves are the bench's to report, not asserted)."""

from __future__ import annotations

import json
import subprocess

import pytest

from ..helpers import hedgebridge_command

pytestmark = pytest.mark.integration


def test_bench_only_ingest_gives_the_ingest_rows_and_their_baseline() -> None:
    done = subprocess.run(
        [
            *hedgebridge_command(),
            "bench",
            "--only",
            "ingest",
            *("--ingest-events", "400", "--ingest-terminals", "2"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    base, row, capacity = json.loads(done.stdout)
    assert base["name"].startswith("raw nats-py publish of the same 400 events")
    assert row["name"].startswith("event ingest, 2 terminals")
    assert row["baseline"] == base["name"]
    assert row["errors"] == 0
    assert "400 events" in row["note"]
    assert capacity["name"].startswith("event ingest per second of gateway CPU")
    assert isinstance(capacity["met"], bool)
