"""The event loop the services run on (``service.run``).

``HEDGEBRIDGE_EVENT_LOOP`` chooses: ``asyncio`` (the default: the standard loop), ``uvloop`` (an error when it
is not installed) or ``auto`` (uvloop when importable, else asyncio). uvloop comes with the ``fast`` extra
(``pip install hedgebridge[fast]``). It is not the default because it did not win in ``hedgebridge bench
--gateway-only`` (docs/benchmarks.md): the gateway's time goes to websockets' and nats-py's Python code, not
to the loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Literal, TypeVar

from .config import ROOT, ConfigError

VARIABLE = f"{ROOT}EVENT_LOOP"
Choice = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def available() -> bool:
    """uvloop is installed."""
    return importlib.util.find_spec("uvloop") is not None


def choice(environ: Mapping[str, str] | None = None) -> Choice:
    """The loop ``HEDGEBRIDGE_EVENT_LOOP`` names (``auto``: uvloop when installed); ConfigError otherwise."""
    env = os.environ if environ is None else environ
    asked = (env.get(VARIABLE) or "asyncio").strip().lower()
    if asked == "asyncio":
        return "asyncio"
    if asked == "uvloop":
        if not available():
            raise ConfigError(f"{VARIABLE}=uvloop but uvloop is not installed (pip install hedgebridge[fast])")
        return "uvloop"
    if asked != "auto":
        raise ConfigError(f"{VARIABLE}: {asked!r} is not auto, uvloop or asyncio")
    return "uvloop" if available() else "asyncio"


def factory(which: Choice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``asyncio.Runner`` (None: asyncio's default)."""
    if which == "asyncio":
        return None
    import uvloop

    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def run(main: Coroutine[Any, Any, T], environ: Mapping[str, str] | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        loop_factory = factory(choice(environ))
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)
