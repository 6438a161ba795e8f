"""The event loop a service process runs on: asyncio's own, or uvloop where it is installed and chosen.

``HEDGEBRIDGE_EVENT_LOOP`` chooses: ``asyncio`` (the standard library's loop), ``uvloop`` (an error when the
package is not installed) or ``auto`` (the default: uvloop when it is installed, else asyncio). Every service
and the bench's processes start their loop through ``run``, so the choice is made in one place.
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
CHOICES = ("auto", "asyncio", "uvloop")


def choice(environ: dict[str, str] | None = None) -> Choice:
    """The loop ``HEDGEBRIDGE_EVENT_LOOP`` asks for, resolved against what is installed."""
    asked = (environ if environ is not None else os.environ).get(ENV, "auto").strip().lower() or "auto"
    if asked not in CHOICES:
        raise ConfigError(f"{ENV} must be one of {', '.join(CHOICES)}, not {asked!r}")
    installed = importlib.util.find_spec("uvloop") is not None
    if asked == "uvloop" and not installed:
        raise ConfigError(f"{ENV}=uvloop, but the uvloop package is not installed (pip install uvloop)")
    if asked == "asyncio" or not installed:
        return "asyncio"
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
