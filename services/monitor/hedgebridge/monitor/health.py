"""The health checks' decisions (pure code, no I/O): which checks run, what each probe's outcome makes of
the check, the health report, readiness, and the checks that judge what the monitor saw without asking
anyone (gateways gone silent, terminals, position sync, data integrity).

Checks and their groups (each group runs on its own interval): ``nats``, ``cache``, ``integrity`` ·
``websocket`` · ``terminals`` · ``coordinator``, ``position_sync``. A probe's outcome is
``(ok, detail, code, latency_ms)``; a probe that raised fails its check with INTERNAL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from hedgebridge.protocol import ConsistencyStatus, GatewayLiveness, HealthCheck, HealthReport, errors

Outcome = tuple[bool, str, str | None, float | None]  # ok, detail, code when failed, latency (ms)
PASSED: Outcome = (True, "", None, None)

CHECK_GROUPS: dict[str, tuple[str, ...]] = {
    "infra": ("nats", "cache", "integrity"),
    "websocket": ("websocket",),
    "terminals": ("terminals",),
    "coordinator": ("coordinator", "position_sync"),
}


@dataclass
class HealthBook:
    """The last result of every check this instance runs."""

    service: str
    instance: str
    with_cache: bool  # no cache check without a cache URL
    checks: dict[str, HealthCheck] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for g in CHECK_GROUPS.values() for n in g if n != "cache" or self.with_cache)

    def group(self, group: str) -> list[str]:
        """The checks of ``group`` this instance runs."""
        return [n for n in CHECK_GROUPS[group] if n in self.names]

    def record(self, name: str, outcome: Outcome | BaseException, now: datetime) -> HealthCheck | None:
        """Keep a probe's outcome as the check's result; returns it when the check passes or fails anew
        (it changed, or it is the first result), else None."""
        if isinstance(outcome, BaseException):
            check = HealthCheck(
                name=name, ok=False, checked_at=now, detail=f"check failed: {outcome!r}", code=errors.INTERNAL
            )
        else:
            ok, detail, code, latency_ms = outcome
            check = HealthCheck(
                name=name, ok=ok, checked_at=now, detail=detail, code=None if ok else code, latency_ms=latency_ms
            )
        previous = self.checks.get(name)
        self.checks[name] = check
        return check if previous is None or previous.ok != check.ok else None

    def report(self, now: datetime) -> HealthReport:
        checks = [self.checks[name] for name in self.names if name in self.checks]
        return HealthReport(
            timestamp=now,
            service=self.service,
            instance=self.instance,
            ready=len(checks) == len(self.names) and all(c.ok for c in checks),
            checks=checks,
        )

    def readiness(self) -> dict[str, Callable[[], str | None]]:
        """Check name -> a function giving None when the last run passed, else why it failed (for /readyz).
        A check that has not run yet fails with "not checked yet"."""

        def reader(name: str) -> Callable[[], str | None]:
            def read() -> str | None:
                check = self.checks.get(name)
                if check is None:
                    return "not checked yet"
                return None if check.ok else check.detail or "failed"

            return read

        return {name: reader(name) for name in self.names}


def silent_gateways(gateways: Mapping[str, tuple[GatewayLiveness, float]], now: float, stale_s: float) -> list[str]:
    """Gateways whose last liveness report (received at the monotonic time kept with it) is too old: older
    than ``stale_s`` and than three of their own reporting intervals."""
    problems = []
    for gateway_id, (report, at) in sorted(gateways.items()):
        limit = max(stale_s, 3 * report.interval_ms / 1000)
        if now - at > limit:
            problems.append(f"gateway {gateway_id} silent for {now - at:.0f} s")
    return problems


def websocket(problems: list[str], latency_ms: float | None) -> Outcome:
    if problems:
        return False, "; ".join(problems), errors.GATEWAY_UNREACHABLE, latency_ms
    return True, "", None, latency_ms


def terminals(problems: list[str]) -> Outcome:
    if problems:
        return False, "; ".join(problems[:10]), errors.TERMINAL_SILENT, None
    return PASSED


def integrity(new_unreadable: int, undecodable_keys: list[str]) -> Outcome:
    """No event failed validation since the last check, and every book entry decodes."""
    problems = [f"{new_unreadable} unreadable events since the last check"] if new_unreadable else []
    problems += [f"book entry {key} does not decode" for key in undecodable_keys]
    if problems:
        return False, "; ".join(problems[:5]), errors.UNREADABLE_EVENT, None
    return PASSED


def position_sync(status: ConsistencyStatus | None) -> Outcome:
    """The coordinator's last reconciliation pass found no open conflict."""
    if status is None:
        return True, "no reconciliation pass seen yet", None, None
    if not status.consistent:
        text = f"{status.open_conflicts} open conflicts (pass of {status.timestamp.isoformat(timespec='seconds')})"
        return False, text, errors.POSITION_CONFLICT, None
    return True, f"{status.accounts_checked} accounts consistent", None, None
