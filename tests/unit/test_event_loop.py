"""The event loop a service runs on (``hedgebridge.common.loop``): asyncio unless uvloop is asked for."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect

import pytest

from hedgebridge.common import loop
from hedgebridge.common.config import ConfigError


def test_asyncio_is_the_default_and_an_unknown_loop_is_a_configuration_error() -> None:
    assert loop.choice({}) == "asyncio"
    assert loop.choice({loop.ENV: " AsyncIO "}) == "asyncio"
    with pytest.raises(ConfigError, match="must be one of asyncio, uvloop"):
        loop.choice({loop.ENV: "trio"})


def test_uvloop_is_chosen_when_installed_and_refused_when_not() -> None:
    if importlib.util.find_spec("uvloop") is None:
        with pytest.raises(ConfigError, match="not installed"):
            loop.choice({loop.ENV: "uvloop"})
    else:
        assert loop.choice({loop.ENV: "uvloop"}) == "uvloop"


def test_run_runs_the_coroutine_on_the_chosen_loop_and_closes_it_when_refused() -> None:
    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop.run(kind(), {}).startswith("asyncio")
    refused = kind()
    with pytest.raises(ConfigError):
        loop.run(refused, {loop.ENV: "trio"})
    assert inspect.getcoroutinestate(refused) == inspect.CORO_CLOSED  # never left un-awaited
