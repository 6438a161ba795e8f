"""The native transport's masking keys and handshake nonces (``mql5/Include/HedgeBridge/Random.mqh``): a probe
program run twice from the same MathRand state gets different bytes, unlike MathRand's, and they cover every
byte value."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgebridge.sim.ea import build
from hedgebridge.sim.ea.process import EaProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "mql5" / "fixtures" / "RandomProbe.mq5"


@pytest.fixture(scope="module")
def probe() -> Path:
    return build.build_expert(PROBE, ROOT / "mql5" / "Include")


async def printed(binary: Path, files: Path) -> dict[str, str]:
    ea = EaProcess()
    await ea.start(binary, {}, files_dir=files)
    try:
        await ea.wait_journal("expert loaded successfully", 10)
    finally:
        await ea.stop()
    return dict(
        line.split(" ", 1) for line in ea.journal if line.split(" ", 1)[0] in {"random", "mathrand", "distinct"}
    )


async def test_two_runs_from_the_same_mathrand_state_get_different_keys(probe: Path, tmp_path: Path) -> None:
    first = await printed(probe, tmp_path / "one")
    second = await printed(probe, tmp_path / "two")
    assert first["mathrand"] == second["mathrand"]  # the same MathRand state in both runs...
    assert first["random"] != second["random"]  # ...and still different keys
    assert len(first["random"]) == 96
    assert first["random"] != first["mathrand"]
    assert first["distinct"] == "256"
