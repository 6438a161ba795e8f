"""The monitor's I/O: listens to every event on NATS, feeds what it reads to the pure watch, runs the health
checks' probes and publishes what it finds.

- Inputs: terminal status and events (``hb.ea.*``), order results, action states, conflicts, consistency
  status and the gateways' liveness reports (``hb.gw.liveness``), decoded here and fed to ``watch.Watch``
  (the live picture, the alert rules, the latency window).
- Alerts: every transition is logged and stored in HB_ALERTS (``alert_store.py``); the open alerts stored
  there are read back at start, so they survive a restart and are not fired again.
- Health checks, each group on its own interval (the seed's: terminals 30 s, WebSocket 10 s, coordinator
  60 s): ``nats``, ``cache``, ``integrity`` · ``websocket`` · ``terminals`` · ``coordinator``,
  ``position_sync`` (probes in ``probes.py``, decisions in ``health.py``). Published as HEALTH on
  ``hb.health.monitor``; ``readiness_checks`` gives them to an HTTP /readyz.
- Every ``report_ms``: MONITOR_REPORT on ``hb.monitor.report`` (health, latency per hop, open alerts).
- ``hb.monitor.status`` (request/reply): the live picture with the open alerts and the health.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common import bus, logs
from hedgebridge.common.obs import for_service
from hedgebridge.protocol import (
    ActionState,
    Alert,
    Conflict,
    ConsistencyStatus,
    GatewayLiveness,
    HealthCheck,
    HealthReport,
    MonitorReport,
    MonitorSnapshot,
    OrderResult,
    ProtocolError,
    TerminalStatus,
    errors,
    pack,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)

from . import health, probes
from .alert_store import AlertStore
from .config import MonitorConfig
from .health import HealthBook, Outcome
from .latency import LatencyWindow
from .picture import Picture
from .rules import AlertBook
from .watch import Watch

log = logs.get("monitor")
QUEUE = "hb-monitor"
SERVICE = "monitor"
PROBE_TIMEOUT_S = probes.PROBE_TIMEOUT_S
# the hop each probe's latency is kept under in the latency window
_HOPS = {"nats": "nats_rtt", "cache": "cache_rtt", "websocket": "gateway_handshake"}

M = TypeVar("M", bound=msgspec.Struct)


class Monitor:
    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.watch = Watch(picture=Picture(started_at=utcnow()), alerts=AlertBook(config.thresholds()))
        self.book = HealthBook(SERVICE, config.monitor_id, with_cache=bool(config.redis_url))
        self.check_names: tuple[str, ...] = self.book.names  # the health checks this instance runs
        self.store = AlertStore(config.stream_replicas)
        self._nats: NatsClient | None = None
        self._redis: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        # /healthz, /readyz, /metrics on health_port (hedgebridge.common.obs)
        self.obs = for_service("monitor", config, lambda: self._nats)
        self.obs.health.check("subscriptions", lambda: None if self._tasks else "not watching (not started)")
        self.obs.health.check("alert_store", self.store.ready)
        if config.ready_on_checks:  # the system health checks too (the live "nats" check above stays)
            for name, check in self.readiness_checks().items():
                if name != "nats":
                    self.obs.health.check(name, check)

    # what the watch and the health book hold, by their old names
    @property
    def picture(self) -> Picture:
        return self.watch.picture

    @property
    def alerts(self) -> AlertBook:
        return self.watch.alerts

    @property
    def latency(self) -> LatencyWindow:
        return self.watch.latency

    @property
    def gateways(self) -> dict[str, tuple[GatewayLiveness, float]]:
        return self.watch.gateways

    @property
    def consistency(self) -> ConsistencyStatus | None:
        return self.watch.consistency

    @property
    def unreadable(self) -> int:
        return self.watch.unreadable

    @property
    def events(self) -> int:
        return self.watch.events

    @property
    def checks(self) -> dict[str, HealthCheck]:
        return self.book.checks

    @property
    def stored_transitions(self) -> int:
        return self.store.stored

    @property
    def _pending(self) -> list[Alert]:
        return self.store.pending

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "monitor not started"
        return self._nats

    async def start(self) -> None:
        await self.obs.start()
        self._nats = nc = await bus.connect(
            self.config.nats_url, name="monitor", startup_timeout_s=self.config.nats_startup_timeout_s
        )
        if self.config.redis_url:
            self._redis = aioredis.from_url(
                self.config.redis_url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
            )
        stored = await self.store.open(nc.jetstream())
        self.watch.alerts = AlertBook.restore(self.config.thresholds(), stored)
        for subject, cb in (
            (subjects.ALL_STATUS, self._on_status),
            (subjects.ALL_EVENTS, self._on_event),
            (subjects.ALL_RESULTS, self._on_result),
            (subjects.ALL_ACTIONS, self._on_action),
            (subjects.CONSISTENCY_STATUS, self._on_consistency),
            (subjects.CONFLICTS, self._on_conflict),
            (subjects.GATEWAY_LIVENESS, self._on_liveness),
        ):
            await nc.subscribe(subject, cb=cb)
        await nc.subscribe(subjects.MONITOR_STATUS, queue=QUEUE, cb=self._on_request)
        await nc.flush()
        intervals = {
            "infra": self.config.check_infra_s,
            "websocket": self.config.check_websocket_s,
            "terminals": self.config.check_terminals_s,
            "coordinator": self.config.check_coordinator_s,
        }
        self._tasks = [
            asyncio.create_task(self._every(self.config.evaluate_ms / 1000, self.evaluate)),
            asyncio.create_task(self._every(self.config.report_ms / 1000, self.report)),
            *(asyncio.create_task(self._every(s, self._group(g))) for g, s in intervals.items()),
        ]
        log.info("ready", open_alerts=len(self.alerts.open), monitor=self.config.monitor_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self.store.store_pending()
            with contextlib.suppress(Exception):
                await self._nats.drain()
            self._nats = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None
        await self.obs.stop()

    async def _every(self, interval_s: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor task failed", code=errors.INTERNAL)
            await asyncio.sleep(interval_s)

    async def load_alerts(self) -> list[Alert]:
        """The last transition of every alert key HB_ALERTS holds."""
        return await self.store.load()

    def _transitions(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            log.warning(
                "alert " + alert.state.lower(),
                key=alert.key,
                account=alert.account_id,
                severity=alert.severity,
                code=alert.code,
                text=alert.message,
            )
        self.store.pending.extend(alerts)
        if alerts:
            task = asyncio.ensure_future(self.store.store_pending())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # --- inputs -----------------------------------------------------------------------------------------

    def _read(self, msg: Msg, kind: type[M]) -> M | None:
        try:
            return unpack(msg.data, kind)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return None

    def _unreadable(self, msg: Msg, exc: ProtocolError) -> None:
        self.watch.on_unreadable()
        log.warning("unreadable event", subject=msg.subject, code=errors.UNREADABLE_EVENT, error=exc.message)

    async def _on_status(self, msg: Msg) -> None:
        status = self._read(msg, TerminalStatus)
        if status is None:
            return
        self._transitions(self.watch.on_status(status, utcnow()))
        log.info(
            "terminal " + status.status.lower(),
            account=status.account_id,
            gateway=status.gateway_id,
            reason=status.reason,
        )

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        self._transitions(self.watch.on_event(event, utcnow()))

    async def _on_result(self, msg: Msg) -> None:
        result = self._read(msg, OrderResult)
        if result is not None:
            self._transitions(self.watch.on_result(result, utcnow()))

    async def _on_action(self, msg: Msg) -> None:
        state = self._read(msg, ActionState)
        if state is not None:
            self._transitions(self.watch.on_action(state, utcnow()))

    async def _on_consistency(self, msg: Msg) -> None:
        status = self._read(msg, ConsistencyStatus)
        if status is not None:
            self.watch.on_consistency(status)

    async def _on_conflict(self, msg: Msg) -> None:
        conflict = self._read(msg, Conflict)
        if conflict is None:
            return
        self.watch.on_conflict(conflict)
        log.warning(
            "position conflict",
            code=errors.POSITION_CONFLICT,
            kind=conflict.kind,
            account=conflict.account_id,
            ticket=conflict.mt_ticket,
            resolution=conflict.resolution,
        )

    async def _on_liveness(self, msg: Msg) -> None:
        report = self._read(msg, GatewayLiveness)
        if report is not None:
            self._transitions(self.watch.on_liveness(report, utcnow(), time.monotonic()))

    async def _on_request(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(pack(self.snapshot()))

    # --- outputs ----------------------------------------------------------------------------------------

    async def evaluate(self) -> None:
        self._transitions(self.alerts.tick(utcnow()))
        await self.store.store_pending()

    def health(self) -> HealthReport:
        return self.book.report(utcnow())

    def snapshot(self) -> MonitorSnapshot:
        return self.watch.snapshot(health=self.health())

    async def report(self) -> None:
        health = self.health()
        await self.nats.publish(subjects.health(SERVICE), pack(health))
        report = MonitorReport(
            timestamp=health.timestamp,
            health=health,
            hops=self.latency.hops(),
            alerts=self.alerts.open_alerts(),
            terminals=self.picture.snapshot().terminals,
        )
        await self.nats.publish(subjects.MONITOR_REPORT, pack(report))

    def readiness_checks(self) -> dict[str, Callable[[], str | None]]:
        """Check name -> a function giving None when the last run passed, else why it failed (for /readyz).
        A check that has not run yet fails with "not checked yet"."""
        return self.book.readiness()

    # --- health checks ----------------------------------------------------------------------------------

    def _group(self, group: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            await self.run_checks(group)

        return run

    async def run_checks(self, group: str) -> None:
        probe: dict[str, Callable[[], Awaitable[Outcome]]] = {
            "nats": lambda: probes.nats_rtt(self._nats),
            "cache": self._check_cache,
            "integrity": self._check_integrity,
            "websocket": self._check_websocket,
            "terminals": self._check_terminals,
            "coordinator": lambda: probes.coordinator(self.nats),
            "position_sync": self._check_position_sync,
        }
        names = self.book.group(group)
        outcomes = await asyncio.gather(*(probe[n]() for n in names), return_exceptions=True)
        changed = False
        for name, outcome in zip(names, outcomes, strict=True):
            if not isinstance(outcome, BaseException) and outcome[0] and name in _HOPS and outcome[3] is not None:
                self.latency.add(_HOPS[name], outcome[3])
            check = self.book.record(name, outcome, utcnow())
            if check is not None:
                changed = True
                level = log.info if check.ok else log.warning
                level("health check " + ("passes" if check.ok else "fails"), check=name, detail=check.detail)
        if changed and self._nats is not None and self._nats.is_connected:
            with contextlib.suppress(Exception):
                await self.nats.publish(subjects.health(SERVICE), pack(self.health()))

    async def _check_cache(self) -> Outcome:
        assert self._redis is not None
        return await probes.cache_ping(self._redis)

    async def _check_integrity(self) -> Outcome:
        new = self.watch.unreadable_since_last()
        return health.integrity(new, await probes.undecodable_book_keys(self.nats.jetstream()))

    async def _check_websocket(self) -> Outcome:
        """Every gateway that reported liveness did so recently; the configured gateway accepts a
        WebSocket handshake on /client."""
        problems = health.silent_gateways(self.gateways, time.monotonic(), self.config.stale_s)
        latency_ms: float | None = None
        if self.config.gateway_url:
            latency_ms, failure = await probes.gateway_handshake(self.config.gateway_url)
            if failure is not None:
                problems.append(failure)
        elif not self.gateways:
            problems.append("no gateway has reported liveness")
        return health.websocket(problems, latency_ms)

    async def _check_terminals(self) -> Outcome:
        problems = self.picture.stale_terminals(utcnow(), self.config.stale_s, self.config.account_stale_s)
        return health.terminals(problems)

    async def _check_position_sync(self) -> Outcome:
        return health.position_sync(self.consistency)
