"""Which trade reports a terminal may send: a report is the answer to a command, or an outside close.

A terminal reports OPENED, CLOSED and MODIFIED for the commands it executed, and CLOSED with a ``reason`` for a
position that closed without a command (stop loss, take profit, stop out, by hand). Any other report — an
OPENED, or a CLOSED without a reason, that answers no command the system sent to this account — is not a
trade: it is answered with ERROR ``UNSOLICITED_REPORT`` and published nowhere (not to watchers, not to the
book, not to HB_EVENTS). A position it describes, if it exists, shows in the terminal's next snapshot, and the
reconciliation reports it as an ``ORPHAN_POSITION``.

Terminals send a report again when they could not prove it arrived (after a reconnect, possibly to another
gateway, possibly long after the order finished), so the command a report answers is looked up by its
actionId, first among the commands this gateway wrote to terminals (a bounded memory), then in the order
records (``hb_orders``): the executor records every order before it sends the command. A repeat of a real
report is therefore explained like the first one, and the event stream drops it by its report id.

``explains`` is the pure rule; ``ReportCheck`` holds the memory and does the lookup.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum

from nats.aio.client import Client as NatsClient
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from hedgebridge.common import logs
from hedgebridge.protocol import (
    CloseCommand,
    ClosedEvent,
    Command,
    ModifyCommand,
    OpenCommand,
    OrderRecord,
    ProtocolError,
    Report,
    order_kind,
    subjects,
    unpack,
)

log = logs.get("gateway")

Kind = str  # "OPEN", "CLOSE" or "MODIFY": the command a report answers
REMEMBERED = 50_000  # commands this gateway wrote, by (account, actionId), newest kept
LOOKUP_TIMEOUT_S = 1.0  # the frame loop waits for the lookup: keep it well below the heartbeat timeout


class Verdict(Enum):
    COMMAND = "command"  # it answers a command sent to this account
    OUTSIDE = "outside"  # a close the terminal saw without a command, with its reason
    UNSOLICITED = "unsolicited"  # nothing the system sent explains it
    UNCHECKED = "unchecked"  # the order records could not be read: not published either


def answered_kind(report: Report) -> Kind:
    return order_kind(report)


def command_kind(command: OpenCommand | CloseCommand | ModifyCommand) -> Kind:
    return order_kind(command)


def explains(report: Report, command: tuple[str, Kind] | None) -> Verdict:
    """Whether ``command`` (the account and kind of the command with the report's actionId, None when there
    is none) explains ``report``."""
    if isinstance(report, ClosedEvent) and report.reason is not None and report.status == "SUCCESS":
        return Verdict.OUTSIDE
    if command is not None and command == (report.account_id, answered_kind(report)):
        return Verdict.COMMAND
    return Verdict.UNSOLICITED


def refusal(report: Report, verdict: Verdict) -> str:
    """The ERROR message for a report that is not published."""
    what = f"actionId {report.action_id}" if report.action_id else "no actionId"
    if verdict is Verdict.UNCHECKED:
        return f"the report ({what}) could not be checked against the orders sent; not published"
    return (
        f"no {answered_kind(report)} command with {what} was sent to account {report.account_id}; the report "
        "is not a trade and was not published (a position it describes shows in the next snapshot)"
    )


class ReportCheck:
    """The commands this gateway wrote, and the lookup of the others in the order records."""

    def __init__(self, nats: Callable[[], NatsClient], remembered: int = REMEMBERED) -> None:
        self._nats = nats
        self._sent: OrderedDict[tuple[str, str], Kind] = OrderedDict()
        self._remembered = remembered
        self._orders: KeyValue | None = None

    def sent(self, command: Command) -> None:
        """Remember a command about to be written to a terminal (before it can be answered)."""
        if isinstance(command, OpenCommand | CloseCommand | ModifyCommand) and command.action_id:
            key = (command.account_id, command.action_id)
            self._sent[key] = command_kind(command)
            self._sent.move_to_end(key)
            while len(self._sent) > self._remembered:
                self._sent.popitem(last=False)

    async def check(self, report: Report) -> Verdict:
        action_id = report.action_id
        known: tuple[str, Kind] | None = None
        if action_id:
            kind = self._sent.get((report.account_id, action_id))
            if kind is not None:
                known = (report.account_id, kind)
        verdict = explains(report, known)
        if verdict is not Verdict.UNSOLICITED or not action_id:
            return verdict
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                recorded = await self._recorded(action_id)
        except Exception as exc:  # NATS down, JetStream unavailable, no answer in time
            log.warning("order records unreadable", action=action_id, error=f"{type(exc).__name__}: {exc}"[:200])
            return Verdict.UNCHECKED
        return explains(report, recorded)

    async def _recorded(self, action_id: str) -> tuple[str, Kind] | None:
        """The account and kind of the recorded order ``action_id`` (None: no such order)."""
        if self._orders is None:
            try:
                self._orders = await self._nats().jetstream().key_value(subjects.ORDERS_BUCKET)
            except BucketNotFoundError:  # no executor ever ran: no order was ever sent
                return None
        try:
            entry = await self._orders.get(action_id)
        except KeyNotFoundError:
            return None
        try:
            record = unpack(entry.value or b"", OrderRecord)
        except ProtocolError:
            return None
        return record.command.account_id, command_kind(record.command)
