"""The gateway's metrics and spans, kept out of the I/O code: the terminal and client sessions call these at
a few points.

- A command from NATS: span ``gateway.command`` (child of the executor's span, from the NATS ``traceparent``
  header), whose context is written into the EA frame's ``traceparent``; the hop "command received until
  written" is timed, and the write time is kept to time the terminal's report.
- A report (OPENED/CLOSED) from the terminal: its echoed ``traceparent`` makes span ``gateway.report`` a
  child of ``gateway.command``, so the terminal's reply joins the order's trace; the time since the command
  was written is the WebSocket command round trip; the report goes to NATS with the span's ``traceparent``.
- The gateway's WebSocket Pings (liveness.py) give each terminal's round trip, observed once per Pong when the
  liveness report takes it (``round_trip``).
- Frames in and out are counted by type; connection counts, the longest terminal silence and the lowest
  margin level are read at scrape time.

It sees the gateway and its terminal sessions through the narrow protocols below (what it reads of them),
never the server's classes.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec
from nats.aio.msg import Msg

from hedgebridge.common.obs import metrics, tracing
from hedgebridge.protocol import (
    AccountUpdate,
    Command,
    Heartbeat,
    Message,
    Report,
    type_name,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

SERVICE = "gateway"
C = TypeVar("C", bound=Command)
_PENDING_MAX = 1024  # commands awaiting a report, per connection (older ones are forgotten)


class Terminal(Hashable, Protocol):
    """What telemetry reads of a terminal session (held weakly, so the session's own lifetime rules)."""

    @property
    def account_id(self) -> str: ...


class Queued(Protocol):
    def qsize(self) -> int: ...


class QueuedClient(Protocol):
    @property
    def queue(self) -> Queued: ...


class Clients(Protocol):
    """What telemetry reads of the client sessions: how many, their queues, the slow consumers warned and
    closed."""

    @property
    def sessions(self) -> Collection[QueuedClient]: ...

    @property
    def slow_consumers(self) -> int: ...

    @property
    def slow_warnings(self) -> int: ...


class Observed(Hashable, Protocol):
    """What telemetry reads of the gateway at scrape time: its terminal sessions and its client sessions."""

    @property
    def sessions(self) -> Mapping[str, Terminal]: ...

    @property
    def clients(self) -> Clients: ...


class _Pending:
    __slots__ = ("received", "span", "written")

    def __init__(self, received: float, span: Span | None) -> None:
        self.received = received
        self.written = 0.0
        self.span = span


class SessionState:
    """What telemetry keeps of one terminal session (the session holds it too: ``state_of``)."""

    __slots__ = ("last_event", "margin_level", "pending")

    def __init__(self) -> None:
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.margin_level: float | None = None
        self.last_event = time.monotonic()  # the last frame other than a heartbeat (at first: the connection)


_sessions: weakref.WeakKeyDictionary[Terminal, SessionState] = weakref.WeakKeyDictionary()
_seen_accounts: weakref.WeakKeyDictionary[Observed, set[str]] = weakref.WeakKeyDictionary()


def state_of(session: Terminal) -> SessionState:
    """The session's telemetry state, made at its first use; the session keeps it, so that ``terminal_frame_in``
    takes it without a lookup per frame (the table here holds it weakly, for the scrape-time readings)."""
    state = _sessions.get(session)
    if state is None:
        state = _sessions[session] = SessionState()
    return state


def register(gateway: Observed) -> None:
    """Expose the gateway's live values (read at scrape time)."""
    metrics.CONNECTIONS.add(gateway, _terminals, "terminal")
    metrics.CONNECTIONS.add(gateway, _clients, "client")
    metrics.QUEUE_DEPTH.add(gateway, _client_queue_depth, "client_outgoing")
    metrics.SLOW_CONSUMERS.add(gateway, _slow_consumers)
    metrics.SLOW_WARNINGS.add(gateway, _slow_warnings)
    metrics.TERMINAL_SILENCE.add(gateway, _longest_silence)
    metrics.MARGIN_LEVEL.add(gateway, _lowest_margin_level)
    _seen_accounts[gateway] = set()


def unregister(gateway: Observed) -> None:
    for live in (
        metrics.CONNECTIONS,
        metrics.QUEUE_DEPTH,
        metrics.SLOW_CONSUMERS,
        metrics.SLOW_WARNINGS,
        metrics.TERMINAL_SILENCE,
        metrics.MARGIN_LEVEL,
    ):
        live.remove(gateway)


def _terminals(gateway: Observed) -> int:
    return len(gateway.sessions)


def _clients(gateway: Observed) -> int:
    return len(gateway.clients.sessions)


def _client_queue_depth(gateway: Observed) -> int:
    return sum(s.queue.qsize() for s in gateway.clients.sessions)


def _slow_consumers(gateway: Observed) -> int:
    return gateway.clients.slow_consumers


def _slow_warnings(gateway: Observed) -> int:
    return gateway.clients.slow_warnings


def _longest_silence(gateway: Observed) -> float | None:
    """Seconds since the last event (heartbeats aside) of the quietest connected terminal."""
    if not gateway.sessions:
        return None
    now = time.monotonic()
    return max(now - state_of(s).last_event for s in gateway.sessions.values())


def _lowest_margin_level(gateway: Observed) -> float | None:
    levels = [
        state.margin_level
        for s in gateway.sessions.values()
        if (state := _sessions.get(s)) is not None and state.margin_level is not None
    ]
    return min(levels) / 100 if levels else None


def terminal_connected(gateway: Observed, account_id: str) -> None:
    seen = _seen_accounts.setdefault(gateway, set())
    if account_id in seen:
        metrics.RECONNECTS.labels("terminal").inc()
    else:
        seen.add(account_id)


def handshake_refused(status: int) -> None:
    metrics.HANDSHAKES_REFUSED.labels(str(int(status))).inc()


_frame_counters: dict[tuple[str, str, str], Any] = {}  # the labelled counters, looked up once each


def _frames(direction: str, endpoint: str, kind: str) -> Any:
    key = (direction, endpoint, kind)
    counter = _frame_counters.get(key)
    if counter is None:
        counter = _frame_counters[key] = metrics.FRAMES.labels(direction, endpoint, kind)
    return counter


_in_counters: dict[tuple[str, type[Message]], Any] = {}  # frames in, by endpoint and message class


def frame_in(endpoint: str, message: Message) -> None:
    key = (endpoint, type(message))
    counter = _in_counters.get(key)
    if counter is None:
        counter = _in_counters[key] = _frames("in", endpoint, type_name(message))
    counter.inc()


def terminal_frame_in(state: SessionState, message: Message) -> None:
    """A frame from a terminal: counted, its time and margin level kept (``state``: the session's, from
    ``state_of``); a heartbeat is no event (``_longest_silence``)."""
    frame_in("ea", message)
    if isinstance(message, Heartbeat):
        return
    state.last_event = time.monotonic()
    if isinstance(message, AccountUpdate):
        state.margin_level = message.margin_level


def round_trip(latency_s: float) -> None:
    """A terminal's Pong came: the round trip of the WebSocket Ping it answers (liveness.py)."""
    metrics.WS_ROUND_TRIP.observe(latency_s)


def frame_out(endpoint: str, kind: str, count: int = 1) -> None:
    _frames("out", endpoint, kind).inc(count)


def command_received(session: Terminal, msg: Msg, command: C) -> C:
    """Start timing (and tracing) a command about to be written; returns it with its ``traceparent``."""
    action_id = getattr(command, "action_id", None)
    if not action_id:
        return command
    span = tracing.start(
        "gateway.command",
        SERVICE,
        parent=msg.headers,
        attributes={"hedgebridge.account": session.account_id, "hedgebridge.action_id": action_id},
    )
    if span is not None:
        command = msgspec.structs.replace(command, traceparent=tracing.traceparent_of(span))
    pending = state_of(session).pending
    pending[action_id] = _Pending(time.perf_counter(), span)
    while len(pending) > _PENDING_MAX:
        tracing.end(pending.popitem(last=False)[1].span)
    return command


def command_written(session: Terminal, command: Command) -> None:
    entry = state_of(session).pending.get(getattr(command, "action_id", None) or "")
    if entry is not None:
        entry.written = time.perf_counter()
        metrics.HOP_LATENCY.labels(metrics.HOP_GATEWAY_COMMAND).observe(entry.written - entry.received)
        tracing.end(entry.span)
        entry.span = None


@contextlib.contextmanager
def report(session: Terminal, event: Report, headers: Mapping[str, str] | None) -> Iterator[dict[str, str] | None]:
    """Around the publish of a trade report: round trip, hop time, and the report's span and headers."""
    received = time.perf_counter()
    entry = state_of(session).pending.pop(event.action_id or "", None)
    if entry is not None:
        tracing.end(entry.span)  # a write that failed: its span ends here
        if entry.written:
            metrics.COMMAND_ROUND_TRIP.labels(type_name(event)).observe(received - entry.written)
    parent = event.traceparent
    with tracing.span(
        "gateway.report",
        SERVICE,
        parent=parent,
        attributes={
            "hedgebridge.account": session.account_id,
            "hedgebridge.action_id": event.action_id or "",
            "hedgebridge.status": event.status,
            "hedgebridge.echoed": bool(parent),
        },
    ):
        yield tracing.headers(headers)
    metrics.HOP_LATENCY.labels(metrics.HOP_GATEWAY_REPORT).observe(time.perf_counter() - received)
