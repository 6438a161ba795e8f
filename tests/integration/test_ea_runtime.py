"""The MQL5 runtime for tests: a probe program's built-ins against MQL5's answers, the harness's inputs, control
channel, critical errors and leak report, and the EA's loading rules (an ``#import`` is bound when the EA loads,
so the DLL build is refused where DLLs are not allowed, while the native build loads)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from hedgebridge.sim.ea import build
from hedgebridge.sim.ea.process import ControlError, EaProcess

pytestmark = pytest.mark.integration

PROBE = Path(__file__).resolve().parents[1] / "mql5" / "fixtures" / "Probe.mq5"


@pytest.fixture(scope="module")
def probe() -> Path:
    return build.build_expert(PROBE, PROBE.parent)


async def run_probe(binary: Path, files: Path, **inputs: str) -> tuple[int, list[str]]:
    ea = EaProcess()
    await ea.start(binary, inputs, files_dir=files)
    with contextlib.suppress(TimeoutError):  # the EA stopped before: its exit code says why
        await ea.wait_journal("timer 3", 10)
    return await ea.stop(), ea.journal


async def test_the_built_ins_answer_as_mql5(probe: Path, tmp_path: Path) -> None:
    code, journal = await run_probe(probe, tmp_path, InpCount="9")
    assert code == 0
    assert journal[: journal.index("expert loaded successfully")] == [
        "split 4 ab[]c",
        "format x|42|3.14|00007|ff|-5",
        "string 8 cde 2 -1",
        "trim [x_y]",
        "utf8 4 65 195 169 2",  # UTF-8 bytes and the terminating zero; two UTF-16 units
        "double 0.3333 2.35 150",
        "pointer 9 true",
        "automatic true true",
        "fixed -1 2",  # a static array keeps its size
        "file one+two true",
        "escape true",  # a path out of MQL5/Files is refused
    ]
    assert journal[-3:] == ["timer 3", "deinit 1", "expert removed (reason 1)"]
    assert (tmp_path / "probe" / "out.txt").read_bytes() == b"one\r\ntwo\r\n"


async def test_a_critical_error_stops_the_program_without_ondeinit(probe: Path, tmp_path: Path) -> None:
    code, journal = await run_probe(probe, tmp_path, InpMode="crash")
    assert code == 5
    assert journal[-1] == "critical error: array out of range"
    assert not any(line.startswith("deinit") for line in journal)


async def test_undeleted_objects_are_reported_at_the_end(probe: Path, tmp_path: Path) -> None:
    code, journal = await run_probe(probe, tmp_path, InpMode="leak")
    assert code == 0
    assert journal[-1] == "1 undeleted objects left"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"Nope": "1"}, "harness: the EA has no input named 'Nope'"),
        ({"InpCount": "abc"}, "harness: input InpCount (int) cannot take 'abc'"),
    ],
)
async def test_inputs_are_checked_against_the_program(
    probe: Path, tmp_path: Path, inputs: dict[str, str], message: str
) -> None:
    ea = EaProcess()
    await ea.start(probe, inputs, files_dir=tmp_path)
    assert await ea.stop() == 2
    assert ea.journal == [message]


async def test_the_control_channel_refuses_what_it_does_not_know(probe: Path, tmp_path: Path) -> None:
    ea = EaProcess()
    await ea.start(probe, {}, files_dir=tmp_path)
    try:
        assert (await ea.control("status"))["ok"] is True
        with pytest.raises(ControlError, match="unknown op 'nope'"):
            await ea.control("nope")
        with pytest.raises(ControlError, match="retcode, fill_ratio or timeout_executed"):
            await ea.control("trade.fault")
        with pytest.raises(ControlError, match="no such position"):
            await ea.control("trade.close", ticket=1, reason="sl")
    finally:
        assert await ea.stop() == 0


EA_INPUTS = {"InpToken": "t", "InpGatewayUrl": "ws://127.0.0.1:9/ea", "InpTransport": "1"}


async def _load(transport: str, tmp_path: Path, *, allow_dll: bool) -> tuple[int | None, list[str]]:
    ea = EaProcess()
    await ea.start(build.build_ea(transport), EA_INPUTS, files_dir=tmp_path, allow_dll=allow_dll)
    with contextlib.suppress(TimeoutError):
        await ea.wait_journal("expert loaded successfully", 10)
    return await ea.stop(), ea.journal


async def test_the_dll_build_does_not_load_where_dlls_are_not_allowed(tmp_path: Path) -> None:
    code, journal = await _load("dll", tmp_path, allow_dll=False)
    assert code == 3
    assert journal == ["DLL loading is not allowed, cannot load 'hedgebridge_ws.dll'"]


async def test_the_native_build_loads_where_dlls_are_not_allowed(tmp_path: Path) -> None:
    code, journal = await _load("native", tmp_path, allow_dll=False)
    assert code == 0
    assert "expert loaded successfully" in journal


async def test_the_native_build_refuses_the_dll_transport(tmp_path: Path) -> None:
    ea = EaProcess()
    await ea.start(build.build_ea("native"), {**EA_INPUTS, "InpTransport": "0"}, files_dir=tmp_path)
    await asyncio.wait_for(ea.wait_journal("initialization failed", 10), 15)
    assert await ea.stop() == 4
    assert any(line.startswith("Alert: hedgebridge: the DLL transport needs") for line in ea.journal)
