"""What the commands print: standard output that its reader may close early, and the ``--json`` forms.

Python ignores SIGPIPE, so a write to a pipe nobody reads any more (``hedgebridge status | head -3``) raises
BrokenPipeError. ``main`` turns it, wherever a command raises it, into the status the shell reports for a
program SIGPIPE ended (141 = 128 + 13), without a traceback: ``silence`` points standard output at the null
device, so that what is still buffered, and Python's own flush at exit, goes nowhere. The commands that run
until stopped (``up``, ``watch``, ``sim``) take the reader's going away as a request to stop, as a SIGTERM
is (``stop_when_closed``): ``up`` stops its processes in order first; each then exits with the same status.

``--json`` prints a table's rows as JSON with every field present (``full``), defaults included, where the
wire omits fields at their default: a script finds every documented key in every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE: what a shell reports for a program a closed pipe ended

_closed = False
_listeners: list[Callable[[], None]] = []


def closed() -> bool:
    """Whether standard output's reader went away during this command."""
    return _closed


def silence() -> None:
    """Standard output's reader went away: what is still written goes to the null device; listeners are told."""
    global _closed
    if _closed:
        return
    _closed = True
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no file descriptor: nothing to redirect
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    for listener in list(_listeners):
        listener()


@contextlib.contextmanager
def stop_when_closed(stop: Callable[[], None]) -> Iterator[None]:
    """While the block runs (in an event loop), call ``stop`` once standard output's reader goes away: found
    by a write (``say``) or, when standard output is a pipe, by the event loop without one (the pipe's write
    end reports an error once it has no reader), so that ``up | head -3`` ends even when ``up`` has nothing
    more to say."""
    loop = asyncio.get_running_loop()
    fd = _pipe_fd()
    watched = False

    def gone() -> None:
        nonlocal watched
        loop.remove_reader(fd)  # before silence() points the descriptor elsewhere
        watched = False
        silence()

    if fd >= 0:
        with contextlib.suppress(OSError, ValueError, NotImplementedError):  # a loop without add_reader
            loop.add_reader(fd, gone)
            watched = True
    _listeners.append(stop)
    try:
        if _closed:
            stop()
        yield
    finally:
        _listeners.remove(stop)
        if watched:
            loop.remove_reader(fd)


def _pipe_fd() -> int:
    """Standard output's descriptor when it is a pipe, else -1."""
    try:
        fd = sys.stdout.fileno()
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else -1
    except (OSError, ValueError, AttributeError):
        return -1


def say(text: str) -> None:
    """Print a line at once (``up``'s progress); once the reader has gone, nothing more is printed."""
    if _closed:
        return
    try:
        print(text, flush=True)
    except BrokenPipeError:
        silence()


def reader_gone() -> bool:
    """Whether standard output or standard error is a pipe or socket whose reader has gone: a BrokenPipeError
    raised by anything else (a socket of the command's own) is an error to report, not the end of the output.
    Where the system cannot tell (no ``poll``), a BrokenPipeError is taken to come from the output."""
    if not hasattr(select, "poll"):
        return True
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError, AttributeError):
            continue
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            continue
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
            return True
    return False


def full(value: Any) -> Any:
    """``value`` in the JSON-ready form of ``msgspec.to_builtins`` (renamed keys, a tagged message's tag first,
    ISO timestamps) but with every field of every Struct in it, those at their default included."""
    if isinstance(value, msgspec.Struct):
        config = value.__struct_config__
        shown: dict[str, Any] = {} if config.tag_field is None else {config.tag_field: config.tag}
        for field in msgspec.structs.fields(value):
            shown[field.encode_name] = full(getattr(value, field.name))
        return shown
    if isinstance(value, list | tuple):
        return [full(item) for item in value]
    if isinstance(value, dict):
        return {msgspec.to_builtins(key): full(item) for key, item in value.items()}
    return msgspec.to_builtins(value)
