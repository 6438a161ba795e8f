"""The bench's DLL rows: both heartbeat clients (the library through ctypes, and plain websockets) each in its own
process against the real gateway, and the visible row when the library cannot be built."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgebridge.cli import bench_dll
from hedgebridge.cli.bench_rows import Row
from hedgebridge.cli.bench_table import table
from hedgebridge.gateway.server import Gateway

from ..helpers import ea_token, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)  # builds the library (and the EAs) first: minutes on a loaded 2-core machine
async def test_both_clients_measure_heartbeat_round_trips(gateway: Gateway, secret: str) -> None:
    library = bench_dll.prepare()
    if not isinstance(library, Path):
        pytest.skip(f"the WebSocket client library cannot be built here: {library}")
    url = f"ws://127.0.0.1:{gateway.port}/ea"
    measured = await bench_dll.measure(url, ea_token(secret, "BENCH-DLL"), ea_token(secret, "BENCH-PY"), library, 25, 5)
    assert (len(measured.dll), len(measured.websockets)) == (25, 25)
    assert min(measured.dll + measured.websockets) > 0
    await wait_for(lambda: not gateway.sessions, "both clients to disconnect when done")


def test_a_library_that_cannot_be_built_is_a_visible_row() -> None:
    baseline = Row("python client (baseline)", [], skipped="g++ not installed")
    row = Row("DLL", [], baseline, skipped="g++ not installed")
    lines = list(table([baseline, row]))
    assert lines[2] == "| python client (baseline) | 0 | skipped: g++ not installed |  |  |  |  |  |  |  |"
    assert lines[3].startswith("| DLL | 0 | skipped: g++ not installed |")
