"""`hedgebridge status`: the local stack's processes, from the state file `up` keeps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from hedgebridge.cli import state, status


def _write(base: Path, pid: int) -> None:
    state.write_state(
        base,
        state.StackState(
            nats_url="nats://127.0.0.1:1",
            redis_url="",
            gateway_url="",
            supervisor_pid=pid,
            services={
                "nats": state.ServiceState(state="running", pid=11),
                "executor": state.ServiceState(
                    state="running",
                    pid=12,
                    restarts=2,
                    last_restart="2026-12-04T18:58:33Z",
                    last_exit="was killed by SIGKILL (signal 9)",
                ),
                "coordinator": state.ServiceState(
                    state="given up", restarts=4, last_restart="2026-12-04T18:58:21Z", last_exit="exited with code 78"
                ),
            },
        ),
    )


def test_the_processes_are_listed_with_their_restarts() -> None:
    services = {
        "executor": state.ServiceState(
            state="running", pid=12, restarts=2, last_restart="2026-12-04T18:58:33Z", last_exit="exited with code 1"
        ),
        "coordinator": state.ServiceState(state="given up", restarts=4, last_exit="exited with code 78"),
    }
    lines = status.format_services(services).splitlines()
    assert lines[0].split() == ["process", "state", "pid", "restarts", "last", "restart", "last", "exit"]
    assert lines[1].split() == ["executor", "running", "12", "2", "2026-12-04T18:58:33Z", "exited", "with", "code", "1"]
    assert lines[2].split() == ["coordinator", "given", "up", "-", "4", "-", "exited", "with", "code", "78"]


@pytest.mark.parametrize(
    ("flag", "variable", "shown"),
    [
        (None, None, True),
        ("nats://127.0.0.1:1", None, True),
        ("nats://elsewhere:4", None, False),
        (None, "nats://elsewhere:4", False),
    ],
)
def test_the_local_stack_is_shown_unless_status_asks_another_nats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str | None, variable: str | None, shown: bool
) -> None:
    _write(tmp_path, os.getpid())
    if variable is None:
        monkeypatch.delenv("HEDGEBRIDGE_NATS_URL", raising=False)
    else:
        monkeypatch.setenv("HEDGEBRIDGE_NATS_URL", variable)
    services = status._local_services(argparse.Namespace(nats_url=flag), tmp_path)
    assert (list(services) == ["nats", "executor", "coordinator"]) is shown
    assert (services != {}) is shown


def test_a_stack_whose_up_is_gone_shows_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEDGEBRIDGE_NATS_URL", raising=False)
    _write(tmp_path, 2**22 + 12345)  # no such process
    assert status._local_services(argparse.Namespace(nats_url=None), tmp_path) == {}
