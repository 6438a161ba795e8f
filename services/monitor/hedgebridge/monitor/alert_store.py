"""The alert store (I/O): the JetStream stream HB_ALERTS that keeps every alert transition.

Every transition is appended on ``hb.alert.<rule>.<scope>`` with a de-duplication id (``Nats-Msg-Id`` = key
and seq). At start the last transition of every subject is read back, so open alerts survive a restart and
are not fired again. A transition that could not be stored (NATS down) is kept and stored again, in order,
on the next try.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from hedgebridge.common import logs, streams
from hedgebridge.protocol import Alert, ProtocolError, errors, pack, subjects, unpack

log = logs.get("monitor")
ALERTS_PER_KEY = streams.ALERTS_PER_KEY
STORE_TIMEOUT_S = 2.0


class AlertStore:
    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.js: JetStreamContext | None = None
        self.pending: list[Alert] = []  # transitions not stored yet, in order
        self.stored = 0
        self.loaded = False
        self._lock = asyncio.Lock()

    async def open(self, js: JetStreamContext) -> list[Alert]:
        """Create (or update) HB_ALERTS and read back the last transition of every alert key."""
        self.js = js
        config = streams.alerts_stream(self.replicas)
        try:
            await js.add_stream(config)
        except BadRequestError:
            with contextlib.suppress(BadRequestError):
                await js.update_stream(config)
        stored = await self.load()
        self.loaded = True
        return stored

    async def load(self) -> list[Alert]:
        """The last transition of every alert key HB_ALERTS holds."""
        assert self.js is not None
        info = await self.js.stream_info(subjects.ALERTS_STREAM, subjects_filter=subjects.ALL_ALERTS)
        found: list[Alert] = []
        for subject in sorted(info.state.subjects or {}):
            try:
                stored = await self.js.get_last_msg(subjects.ALERTS_STREAM, subject)
                found.append(unpack(stored.data or b"", Alert))
            except (NotFoundError, ProtocolError) as exc:
                log.warning("unreadable stored alert", subject=subject, code=errors.UNREADABLE_EVENT, error=str(exc))
        return found

    def ready(self) -> str | None:
        """Readiness: the open alerts were loaded from HB_ALERTS and every transition is stored."""
        if not self.loaded:
            return "open alerts not loaded from HB_ALERTS yet"
        if self.pending:
            return f"{len(self.pending)} alert transitions not stored yet"
        return None

    async def store_pending(self) -> None:
        """Append waiting transitions to HB_ALERTS in order; on failure keep them for the next try."""
        async with self._lock:
            while self.pending and self.js is not None:
                alert = self.pending[0]
                try:
                    await self.js.publish(
                        subjects.alert(alert.rule, alert.account_id),
                        pack(alert),
                        timeout=STORE_TIMEOUT_S,
                        headers={"Nats-Msg-Id": f"{alert.key}:{alert.seq}"},
                    )
                except Exception as exc:
                    log.warning("alert not stored yet", key=alert.key, code=errors.NATS_UNREACHABLE, error=repr(exc))
                    return
                self.pending.pop(0)
                self.stored += 1
