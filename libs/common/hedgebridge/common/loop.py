"""The event loop a service process runs on: asyncio's own, or uvloop where it is installed and chosen.

``HEDGEBRIDGE_EVENT_LOOP`` chooses: ``asyncio`` (the default, the standard library's loop), ``uvloop`` (a
configuration error when the package is not installed: ``pip install hedgebridge[fast]``) or ``auto`` (uvloop
when installed, else asyncio). Every service and the simulator
start their loop through ``run``, so the choice is made in one place; the bench passes it on to its processes.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from .config import ConfigError

T = TypeVar("T")
ENV = "HEDGEBRIDGE_EVENT_LOOP"
Choice = Literal["asyncio", "uvloop"]
CHOICES: tuple[str, ...] = ("asyncio", "uvloop", "auto")


def choice(environ: dict[str, str] | None = None) -> Choice:
    """The loop ``HEDGEBRIDGE_EVENT_LOOP`` asks for (``ConfigError`` for an unknown one or a missing uvloop)."""
    asked = (environ if environ is not None else os.environ).get(ENV, "").strip().lower() or "asyncio"
    if asked == "asyncio":
        return "asyncio"
    if asked == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if asked != "uvloop":
        raise ConfigError(f"{ENV} must be one of {', '.join(CHOICES)}, not {asked!r}")
    if importlib.util.find_spec("uvloop") is None:
        raise ConfigError(f"{ENV}=uvloop, but the uvloop package is not installed (pip install uvloop)")
    return "uvloop"


def factory(chosen: Choice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``asyncio.Runner`` (None: asyncio's default loop)."""
    if chosen == "asyncio":
        return None
    module: Any = importlib.import_module("uvloop")
    new_loop: Callable[[], asyncio.AbstractEventLoop] = module.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, T], environ: dict[str, str] | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        loop_factory = factory(choice(environ))
    except ConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
