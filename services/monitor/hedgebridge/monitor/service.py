"""The monitor's I/O: listens to every event on NATS, keeps the live picture, evaluates the alert rules,
runs the health checks and publishes what it finds.

- Inputs: terminal status and events (``hb.ea.*``), order results, action states, conflicts, consistency
  status and the gateways' liveness reports (``hb.gw.liveness``).
- Alerts (``rules.AlertBook``): every transition is appended to the JetStream stream HB_ALERTS on
  ``hb.alert.<rule>.<scope>`` with a de-duplication id (``Nats-Msg-Id`` = key and seq). At start the last
  transition of every subject is read back, so open alerts survive a restart and are not fired again. A
  transition that could not be stored (NATS down) is kept and stored again, in order, on the next tick.
- Health checks, each on its own interval (the seed's: terminals 30 s, WebSocket 10 s, coordinator 60 s):
  ``nats``, ``cache``, ``integrity`` · ``websocket`` · ``terminals`` · ``coordinator``, ``position_sync``.
  Published as HEALTH on ``hb.health.monitor``; ``readiness_checks`` gives them to an HTTP /readyz.
- Every ``report_ms``: MONITOR_REPORT on ``hb.monitor.report`` (health, latency per hop, open alerts).
- ``hb.monitor.status`` (request/reply): the live picture with the open alerts and the health.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError
from websockets.asyncio.client import connect as ws_connect

from hedgebridge.common import bus, logs
from hedgebridge.common.obs import for_service
from hedgebridge.protocol import (
    AccountUpdate,
    ActionState,
    Alert,
    BookEntry,
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
    subprotocol,
    unpack,
    unpack_event,
    utcnow,
)

from .config import MonitorConfig
from .latency import LatencyWindow
from .picture import Picture
from .rules import AlertBook

log = logs.get("monitor")
QUEUE = "hb-monitor"
SERVICE = "monitor"
PROBE_TIMEOUT_S = 2.0
ALERTS_PER_KEY = 100  # transitions HB_ALERTS keeps per alert key (the last one is the alert's state)

CHECK_GROUPS: dict[str, tuple[str, ...]] = {
    "infra": ("nats", "cache", "integrity"),
    "websocket": ("websocket",),
    "terminals": ("terminals",),
    "coordinator": ("coordinator", "position_sync"),
}


class Monitor:
    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.picture = Picture(started_at=utcnow())
        self.alerts = AlertBook(config.thresholds())
        self.latency = LatencyWindow()
        self.checks: dict[str, HealthCheck] = {}
        # the health checks this instance runs (no cache check without a cache URL)
        self.check_names: tuple[str, ...] = tuple(
            n for g in CHECK_GROUPS.values() for n in g if n != "cache" or config.redis_url
        )
        self._alerts_loaded = False
        self.gateways: dict[str, tuple[GatewayLiveness, float]] = {}  # id -> last report, monotonic receipt
        self.consistency: ConsistencyStatus | None = None
        self.unreadable = 0
        self.events = 0  # terminal events read
        self.stored_transitions = 0
        self._unreadable_seen = 0
        self._pending: list[Alert] = []
        self._store_lock = asyncio.Lock()
        self._nats: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._redis: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        # /healthz, /readyz, /metrics on health_port (hedgebridge.common.obs)
        self.obs = for_service("monitor", config, lambda: self._nats)
        self.obs.health.check("subscriptions", lambda: None if self._tasks else "not watching (not started)")
        self.obs.health.check("alert_store", self._alert_store_ready)
        if config.ready_on_checks:  # the system health checks too (the live "nats" check above stays)
            for name, check in self.readiness_checks().items():
                if name != "nats":
                    self.obs.health.check(name, check)

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "monitor not started"
        return self._nats

    async def start(self) -> None:
        await self.obs.start()
        self._nats = nc = await bus.connect(
            self.config.nats_url, name="monitor", startup_timeout_s=self.config.nats_startup_timeout_s
        )
        self._js = nc.jetstream()
        if self.config.redis_url:
            self._redis = aioredis.from_url(
                self.config.redis_url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
            )
        await self._ensure_stream()
        stored = await self.load_alerts()
        self.alerts = AlertBook.restore(self.config.thresholds(), stored)
        self._alerts_loaded = True
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
                await self._store_pending()
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

    # --- alert store ------------------------------------------------------------------------------------

    async def _ensure_stream(self) -> None:
        assert self._js is not None
        config = StreamConfig(
            name=subjects.ALERTS_STREAM,
            subjects=[subjects.ALL_ALERTS],
            storage=StorageType.FILE,
            num_replicas=self.config.stream_replicas,
            max_msgs_per_subject=ALERTS_PER_KEY,
            duplicate_window=120.0,
            discard=DiscardPolicy.OLD,
        )
        try:
            await self._js.add_stream(config)
        except BadRequestError:
            with contextlib.suppress(BadRequestError):
                await self._js.update_stream(config)

    async def load_alerts(self) -> list[Alert]:
        """The last transition of every alert key HB_ALERTS holds."""
        assert self._js is not None
        info = await self._js.stream_info(subjects.ALERTS_STREAM, subjects_filter=subjects.ALL_ALERTS)
        found: list[Alert] = []
        for subject in sorted(info.state.subjects or {}):
            try:
                stored = await self._js.get_last_msg(subjects.ALERTS_STREAM, subject)
                found.append(unpack(stored.data or b"", Alert))
            except (NotFoundError, ProtocolError) as exc:
                log.warning("unreadable stored alert", subject=subject, code=errors.UNREADABLE_EVENT, error=str(exc))
        return found

    def _alert_store_ready(self) -> str | None:
        """Readiness: the open alerts were loaded from HB_ALERTS and every transition is stored."""
        if not self._alerts_loaded:
            return "open alerts not loaded from HB_ALERTS yet"
        if self._pending:
            return f"{len(self._pending)} alert transitions not stored yet"
        return None

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
        self._pending.extend(alerts)
        if alerts:
            task = asyncio.ensure_future(self._store_pending())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _store_pending(self) -> None:
        """Append waiting transitions to HB_ALERTS in order; on failure keep them for the next tick."""
        async with self._store_lock:
            while self._pending and self._js is not None:
                alert = self._pending[0]
                try:
                    await self._js.publish(
                        subjects.alert(alert.rule, alert.account_id),
                        pack(alert),
                        timeout=PROBE_TIMEOUT_S,
                        headers={"Nats-Msg-Id": f"{alert.key}:{alert.seq}"},
                    )
                except Exception as exc:
                    log.warning("alert not stored yet", key=alert.key, code=errors.NATS_UNREACHABLE, error=repr(exc))
                    return
                self._pending.pop(0)
                self.stored_transitions += 1

    # --- inputs -----------------------------------------------------------------------------------------

    def _unreadable(self, msg: Msg, exc: ProtocolError) -> None:
        self.unreadable += 1
        log.warning("unreadable event", subject=msg.subject, code=errors.UNREADABLE_EVENT, error=exc.message)

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = unpack(msg.data, TerminalStatus)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        self.picture.on_status(status)
        view = self.picture.terminals[status.account_id]
        now = utcnow()
        if view.connected:
            self._transitions(self.alerts.connected(status.account_id, now))
        else:
            self._transitions(self.alerts.disconnected(status.account_id, now))
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
        now = utcnow()
        self.events += 1
        self.picture.on_event(event, now)
        if isinstance(event, AccountUpdate):
            self._transitions(self.alerts.account_update(event, now))
        else:
            self._transitions(self.alerts.terminal_event(event.account_id, now))

    async def _on_result(self, msg: Msg) -> None:
        try:
            result = unpack(msg.data, OrderResult)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        executed = result.status in ("FILLED", "PARTIALLY_FILLED", "REJECTED")
        if executed and not result.duplicate and not result.reconciled and result.elapsed_ms > 0:
            self.latency.add("execution", result.elapsed_ms)
        self.picture.on_result(result)
        self._transitions(self.alerts.order_result(result, utcnow()))

    async def _on_action(self, msg: Msg) -> None:
        try:
            state = unpack(msg.data, ActionState)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        self.picture.on_action(state)
        self._transitions(self.alerts.action_state(state, utcnow()))
        if self.alerts.last_sync_ms is not None:
            self.latency.add("action", self.alerts.last_sync_ms)

    async def _on_consistency(self, msg: Msg) -> None:
        try:
            self.consistency = unpack(msg.data, ConsistencyStatus)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        self.picture.on_consistency(self.consistency)

    async def _on_conflict(self, msg: Msg) -> None:
        try:
            conflict = unpack(msg.data, Conflict)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        self.picture.on_conflict(conflict)
        log.warning(
            "position conflict",
            code=errors.POSITION_CONFLICT,
            kind=conflict.kind,
            account=conflict.account_id,
            ticket=conflict.mt_ticket,
            resolution=conflict.resolution,
        )

    async def _on_liveness(self, msg: Msg) -> None:
        try:
            report = unpack(msg.data, GatewayLiveness)
        except ProtocolError as exc:
            self._unreadable(msg, exc)
            return
        self.gateways[report.gateway_id] = (report, time.monotonic())
        now = utcnow()
        for terminal in report.terminals:
            self.picture.on_liveness(terminal, report.gateway_id, report.timestamp)
            self._transitions(self.alerts.seen_alive(terminal.account_id, now))
            if terminal.rtt_ms is not None:
                self.latency.add("terminal_rtt", terminal.rtt_ms)
                self._transitions(self.alerts.websocket_rtt(terminal.account_id, terminal.rtt_ms, now))

    async def _on_request(self, msg: Msg) -> None:
        if msg.reply:
            await msg.respond(pack(self.snapshot()))

    # --- outputs ----------------------------------------------------------------------------------------

    async def evaluate(self) -> None:
        self._transitions(self.alerts.tick(utcnow()))
        await self._store_pending()

    def health(self) -> HealthReport:
        checks = [self.checks[name] for name in self.check_names if name in self.checks]
        return HealthReport(
            timestamp=utcnow(),
            service=SERVICE,
            instance=self.config.monitor_id,
            ready=len(checks) == len(self.check_names) and all(c.ok for c in checks),
            checks=checks,
        )

    def snapshot(self) -> MonitorSnapshot:
        return self.picture.snapshot(alerts=self.alerts.open_alerts(), health=self.health())

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

        def reader(name: str) -> Callable[[], str | None]:
            def read() -> str | None:
                check = self.checks.get(name)
                if check is None:
                    return "not checked yet"
                return None if check.ok else check.detail or "failed"

            return read

        return {name: reader(name) for name in self.check_names}

    # --- health checks ----------------------------------------------------------------------------------

    def _group(self, group: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            await self.run_checks(group)

        return run

    async def run_checks(self, group: str) -> None:
        probes: dict[str, Callable[[], Awaitable[tuple[bool, str, str | None, float | None]]]] = {
            "nats": self._check_nats,
            "cache": self._check_cache,
            "integrity": self._check_integrity,
            "websocket": self._check_websocket,
            "terminals": self._check_terminals,
            "coordinator": self._check_coordinator,
            "position_sync": self._check_position_sync,
        }
        names = [n for n in CHECK_GROUPS[group] if n in self.check_names]
        outcomes = await asyncio.gather(*(probes[n]() for n in names), return_exceptions=True)
        changed = False
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                check = HealthCheck(
                    name=name, ok=False, checked_at=utcnow(), detail=f"check failed: {outcome!r}", code=errors.INTERNAL
                )
            else:
                ok, detail, code, latency_ms = outcome
                check = HealthCheck(
                    name=name,
                    ok=ok,
                    checked_at=utcnow(),
                    detail=detail,
                    code=None if ok else code,
                    latency_ms=latency_ms,
                )
            previous = self.checks.get(name)
            if previous is None or previous.ok != check.ok:
                changed = True
                level = log.info if check.ok else log.warning
                level("health check " + ("passes" if check.ok else "fails"), check=name, detail=check.detail)
            self.checks[name] = check
        if changed and self._nats is not None and self._nats.is_connected:
            with contextlib.suppress(Exception):
                await self.nats.publish(subjects.health(SERVICE), pack(self.health()))

    async def _check_nats(self) -> tuple[bool, str, str | None, float | None]:
        if self._nats is None or not self._nats.is_connected:
            return False, "not connected to NATS", errors.NATS_UNREACHABLE, None
        started = time.perf_counter()
        try:
            await self._nats.flush(timeout=int(PROBE_TIMEOUT_S))
        except Exception as exc:
            return False, f"no answer from NATS: {type(exc).__name__}", errors.NATS_UNREACHABLE, None
        elapsed = (time.perf_counter() - started) * 1000
        self.latency.add("nats_rtt", elapsed)
        return True, "", None, elapsed

    async def _check_cache(self) -> tuple[bool, str, str | None, float | None]:
        assert self._redis is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self._redis.ping()
        except (aioredis.RedisError, OSError, TimeoutError) as exc:
            return False, f"no answer from the cache: {type(exc).__name__}", errors.CACHE_UNREACHABLE, None
        elapsed = (time.perf_counter() - started) * 1000
        self.latency.add("cache_rtt", elapsed)
        return True, "", None, elapsed

    async def _check_integrity(self) -> tuple[bool, str, str | None, float | None]:
        """No event failed validation since the last check, and every book entry decodes."""
        new = self.unreadable - self._unreadable_seen
        self._unreadable_seen = self.unreadable
        problems = [f"{new} unreadable events since the last check"] if new else []
        assert self._js is not None
        try:
            book = await self._js.key_value(subjects.BOOK_BUCKET)
            keys = await book.keys()
        except Exception:  # no bucket or no keys yet: nothing to decode
            keys = []
        for key in keys[:1000]:
            with contextlib.suppress(Exception):
                entry = await book.get(key)
                try:
                    unpack(entry.value or b"", BookEntry)
                except ProtocolError:
                    problems.append(f"book entry {key} does not decode")
        if problems:
            return False, "; ".join(problems[:5]), errors.UNREADABLE_EVENT, None
        return True, "", None, None

    async def _check_websocket(self) -> tuple[bool, str, str | None, float | None]:
        """Every gateway that reported liveness did so recently; the configured gateway accepts a
        WebSocket handshake on /client."""
        now = time.monotonic()
        problems = []
        for gateway_id, (report, at) in sorted(self.gateways.items()):
            limit = max(self.config.stale_s, 3 * report.interval_ms / 1000)
            if now - at > limit:
                problems.append(f"gateway {gateway_id} silent for {now - at:.0f} s")
        latency_ms: float | None = None
        if self.config.gateway_url:
            url = self.config.gateway_url.rstrip("/") + "/client"
            started = time.perf_counter()
            try:
                async with ws_connect(
                    url,
                    subprotocols=[subprotocol()],  # type: ignore[list-item]
                    open_timeout=PROBE_TIMEOUT_S,
                    ping_interval=None,
                    close_timeout=0.5,
                ):
                    latency_ms = (time.perf_counter() - started) * 1000
            except Exception as exc:
                problems.append(f"{url}: {type(exc).__name__}: {exc}"[:200])
            else:
                self.latency.add("gateway_handshake", latency_ms)
        elif not self.gateways:
            problems.append("no gateway has reported liveness")
        if problems:
            return False, "; ".join(problems), errors.GATEWAY_UNREACHABLE, latency_ms
        return True, "", None, latency_ms

    async def _check_terminals(self) -> tuple[bool, str, str | None, float | None]:
        problems = self.picture.stale_terminals(utcnow(), self.config.stale_s, self.config.account_stale_s)
        if problems:
            return False, "; ".join(problems[:10]), errors.TERMINAL_SILENT, None
        return True, "", None, None

    async def _check_coordinator(self) -> tuple[bool, str, str | None, float | None]:
        started = time.perf_counter()
        try:
            await self.nats.request(subjects.ACTION_REQUEST, b"", timeout=PROBE_TIMEOUT_S)
        except NoRespondersError:
            return False, "no coordinator answers", errors.COORDINATOR_UNAVAILABLE, None
        except NatsTimeoutError:
            return False, f"no coordinator answer within {PROBE_TIMEOUT_S:g}s", errors.COORDINATOR_UNAVAILABLE, None
        return True, "", None, (time.perf_counter() - started) * 1000

    async def _check_position_sync(self) -> tuple[bool, str, str | None, float | None]:
        status = self.consistency
        if status is None:
            return True, "no reconciliation pass seen yet", None, None
        if not status.consistent:
            text = f"{status.open_conflicts} open conflicts (pass of {_iso(status.timestamp)})"
            return False, text, errors.POSITION_CONFLICT, None
        return True, f"{status.accounts_checked} accounts consistent", None, None


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
