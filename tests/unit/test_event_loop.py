"""Which event loop the services run on (``hedgebridge.common.loop``), from HEDGEBRIDGE_EVENT_LOOP."""

from __future__ import annotations

import asyncio

import pytest

from hedgebridge.common import loop
from hedgebridge.common.config import ConfigError


def test_the_standard_loop_is_the_default_and_can_be_asked_for() -> None:
    assert loop.choice({}) == "asyncio"
    assert loop.choice({loop.VARIABLE: "asyncio"}) == "asyncio"
    assert loop.factory("asyncio") is None


def test_auto_takes_uvloop_only_when_it_is_installed() -> None:
    assert loop.choice({loop.VARIABLE: "auto"}) == ("uvloop" if loop.available() else "asyncio")


def test_uvloop_asked_for_runs_on_uvloop_or_says_it_is_not_installed() -> None:
    if not loop.available():
        with pytest.raises(ConfigError, match="not installed"):
            loop.choice({loop.VARIABLE: "uvloop"})
        return

    async def running() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop.run(running(), {loop.VARIABLE: "uvloop"}).startswith("uvloop")


def test_an_unknown_loop_is_a_configuration_error_and_the_coroutine_is_not_left_unawaited() -> None:
    async def never() -> None:
        raise AssertionError("not run")

    with pytest.raises(ConfigError, match="not auto, uvloop or asyncio"):
        loop.run(never(), {loop.VARIABLE: "trio"})
    assert loop.run(asyncio.sleep(0, "ran"), {}) == "ran"
