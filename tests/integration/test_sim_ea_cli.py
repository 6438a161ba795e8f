"""``hedgebridge sim --terminal ea``: compiled EAs, one process each, connect to a real gateway as their accounts;
options only the Python simulator has are refused with exit code 2. Where the tree has no MQL5 runtime for
tests the running test is skipped; where it has one, an EA that does not build fails it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import TerminalStatus, subjects, unpack
from hedgebridge.sim.ea import launch

from ..helpers import wait_for

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "hedgebridge.cli", "sim", "--terminal", "ea"]


def _env(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env["HEDGEBRIDGE_HOME"] = tmp
    return env


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reject-rate", "0.2"], "--reject-rate: not supported with --terminal ea"),
        (["--disconnect-rate", "1", "--seed", "3"], "--disconnect-rate, --seed: not supported with --terminal ea"),
        (["--fill-latency-ms", "0"], "--fill-latency-ms: not supported with --terminal ea"),
        (["--url", "wss://gw.example.com/ea"], "needs a ws:// gateway URL"),
    ],
)
def test_python_simulator_options_are_refused(extra: list[str], message: str, secret: str, tmp_path: object) -> None:
    argv = [*CLI, "--secret", secret, "--accounts", "1", *extra]
    if "--url" not in extra:
        argv += ["--url", "ws://127.0.0.1:9/ea"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_env(str(tmp_path)))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("transport", ["dll", "native"])
async def test_compiled_eas_connect_as_their_accounts(
    transport: str, gateway: Gateway, secret: str, nc: NatsClient, tmp_path: object
) -> None:
    if not launch.runtime_present():
        pytest.skip(launch.NO_RUNTIME)
    statuses: list[TerminalStatus] = []

    async def on_status(msg: Msg) -> None:
        statuses.append(unpack(msg.data, TerminalStatus))

    await nc.subscribe(subjects.ALL_STATUS, cb=on_status)
    await nc.flush()
    argv = [
        *CLI, "--transport", transport, "--account", "EA-1", "--account", "EA-2", "--secret", secret,
        "--url", f"ws://127.0.0.1:{gateway.port}/ea", "--tick-interval-ms", "100", "--log-level", "WARNING",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, env=_env(str(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:

        def connected() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"hedgebridge sim --terminal ea exited with {process.returncode}")
            return {s.account_id for s in statuses if s.status == "CONNECTED"} == {"EA-1", "EA-2"}

        await wait_for(connected, "both compiled EAs to connect", timeout_s=300)  # includes the build
    except AssertionError:
        if process.returncode is None:
            process.terminate()
        _, err = await process.communicate()
        raise AssertionError(f"the EAs did not connect; stderr:\n{err.decode(errors='replace')[-4000:]}") from None
    process.terminate()
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert f"running 2 compiled EA(s), {transport} transport" in out.decode()
    await wait_for(
        lambda: {s.account_id for s in statuses if s.status == "DISCONNECTED"} == {"EA-1", "EA-2"},
        "both EAs to be gone once the command stopped",
    )
