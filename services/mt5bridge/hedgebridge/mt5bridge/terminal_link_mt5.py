"""One attachment of the bridge to its terminal, as a terminal link: the MT5 bridge's adapter of
``TerminalLink`` (``hedgebridge.common.terminal_link``), whose bus side answers its commands, publishes its
status and hands it over to a newer connection.

A command it takes (unless its ``notAfter`` passed: refused unsent) is queued for the bridge's one worker
(OPEN and CLOSE run one at a time, in arrival order, as the EA runs them), and so is a SYNC asked by
``hb.gw.sync``, behind the commands before it. Once lost (the terminal went away, or a newer connection took
the account), it takes no more commands.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hedgebridge.common import logs
from hedgebridge.common.terminal_link import REPLACED, Delivery, refuse_late, rules
from hedgebridge.protocol import PROTOCOL_VERSION, Command, SyncCommand, TerminalStatus, type_name, utcnow

NOT_ATTACHED = "terminal not attached"
REMOTE = "MetaTrader5 package"

log = logs.get("mt5bridge")


class Mt5Link:
    def __init__(self, account_id: str, session_id: str) -> None:
        self.account_id = account_id
        self.session_id = session_id
        self.connected_at = utcnow().timestamp()
        self.version = PROTOCOL_VERSION
        self.remote = REMOTE
        self.queue: asyncio.Queue[Command] | None = asyncio.Queue()  # None once detached
        self.subscription: Subscription | None = None
        self.lost = asyncio.Event()
        self.lost_reason = ""

    def lose(self, reason: str) -> None:
        """The session ends (the first reason is kept)."""
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    # --- the terminal link ------------------------------------------------------------------------------------

    def unavailable(self) -> str | None:
        return NOT_ATTACHED if self.queue is None or self.lost.is_set() else None

    async def wait_ready(self) -> bool:
        return True  # subscribed once attached: a command waits in the queue behind the first snapshot

    async def deliver(self, command: Command, msg: Msg) -> Delivery:
        """Queue ``command`` for the worker, unless its ``notAfter`` passed (``rules.fenced``: refused unsent).
        The queue orders it: a SYNC queued after it runs after it, so the check is made as it is queued."""
        assert self.queue is not None
        if rules.fenced(command, utcnow()):
            return refuse_late(log, self.account_id, command)
        self.queue.put_nowait(command)
        log.debug("command taken", account=self.account_id, type=type_name(command))
        return Delivery.DELIVERED

    async def request_sync(self, reason: str) -> None:
        if self.queue is not None and not self.lost.is_set():
            self.queue.put_nowait(SyncCommand(timestamp=utcnow(), account_id=self.account_id, reason=reason))

    async def replaced(self, by: TerminalStatus) -> None:
        log.warning(
            "a newer connection for this account took over",
            account=self.account_id,
            session=by.session_id,
            gateway=by.gateway_id,
        )
        self.lose(REPLACED)
