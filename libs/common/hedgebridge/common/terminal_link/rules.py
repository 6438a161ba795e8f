"""The decisions of the terminal link's bus side, as pure functions: the ack a command gets, the hand-over
to a newer connection, the TERMINAL_STATUS event, the reason of a sync request and the de-duplication id of
a trade report. No I/O, no clock: the time comes in as an argument.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

from hedgebridge.protocol import (
    FENCED,
    REPORT_TYPES,
    Command,
    DeliveryAck,
    Message,
    ProtocolError,
    Report,
    TerminalStatus,
    type_name,
    unpack_command,
)


class Delivery(enum.Enum):
    """What handing a command to a link came to."""

    DELIVERED = "delivered"  # the terminal has it (written to its socket, or queued for its one worker)
    UNCERTAIN = "uncertain"  # the write may have happened: the caller reconciles, never resends
    FENCED = "fenced"  # refused unsent: its ``notAfter`` had passed (``fenced``)


REPLACED = "replaced by a newer connection for this account"
NOT_READY = "terminal session not ready"
OTHER_ACCOUNT = "command names another account"
UNCERTAIN = "connection lost while sending; the terminal may have the command"
SYNC_DEFAULT_REASON = "sync requested"
SYNC_REASON_MAX = 200

Status = Literal["CONNECTED", "DISCONNECTED"]


def screen_command(
    data: bytes, account_id: str, *, replaced: bool, unavailable: str | None
) -> Command | DeliveryAck | None:
    """A command published for the link of ``account_id``: the command to hand on, the ack refusing it, or
    None when another link now holds the account (that one answers, so a stale refusal never wins the race).
    ``unavailable``: why the link takes no commands, None when it takes them."""
    try:
        command = unpack_command(data)
    except ProtocolError as exc:
        return DeliveryAck(delivered=False, reason=f"invalid command: {exc.message}")
    if command.account_id != account_id:
        return DeliveryAck(delivered=False, reason=OTHER_ACCOUNT)
    if replaced:
        return None
    if unavailable is not None:
        return DeliveryAck(delivered=False, reason=unavailable)
    return command


def not_ready() -> DeliveryAck:
    return DeliveryAck(delivered=False, reason=NOT_READY)


def fenced(command: Command, now: datetime) -> bool:
    """Whether ``command`` may no longer be written to the terminal: its ``notAfter`` (the moment until which
    its sender held the order, less a margin for clock skew) is not later than ``now``. Checked with nothing
    awaited between the check and the write: a command written in time is ahead, on the terminal's one
    connection, of any SYNC of an executor that took the order over since (it took it over after that
    moment), so that SYNC's snapshot shows it; a later one is refused unsent."""
    not_after = getattr(command, "not_after", None)
    return not_after is not None and now >= not_after


def refused_late() -> DeliveryAck:
    """The ack of a command ``fenced`` at the write: not delivered (nothing was sent; the sender holds its
    lease again and sends again, or stops when the order is no longer its own)."""
    return DeliveryAck(delivered=False, reason=FENCED)


def delivery_ack(delivery: Delivery, session_id: str) -> DeliveryAck:
    """The ack of a command handed to the link."""
    if delivery is Delivery.UNCERTAIN:
        return DeliveryAck(delivered=False, uncertain=True, reason=UNCERTAIN)
    if delivery is Delivery.FENCED:
        return refused_late()
    return DeliveryAck(delivered=True, session_id=session_id)


def hands_over(event: TerminalStatus, *, session_id: str | None, connected_at: float) -> bool:
    """Whether ``event`` retires the link held here for its account (``session_id``, None when none is held):
    a CONNECTED of another session, made no earlier than the link here."""
    return (
        event.status == "CONNECTED"
        and session_id is not None
        and event.session_id != session_id
        and connected_at <= event.timestamp.timestamp()
    )


def releases(event: TerminalStatus, successor: str | None) -> bool:
    """Whether ``event`` says that the connection that took an account from here (``successor``) ended."""
    return event.status == "DISCONNECTED" and successor is not None and event.session_id == successor


def status_event(
    *,
    account_id: str,
    session_id: str,
    holder_id: str,
    version: int,
    remote: str,
    status: Status,
    reason: str,
    now: datetime,
) -> TerminalStatus:
    """TERMINAL_STATUS of a link; ``holder_id`` is the gateway (or bridge) holding it."""
    return TerminalStatus(
        timestamp=now,
        account_id=account_id,
        status=status,
        session_id=session_id,
        gateway_id=holder_id,
        reason=reason,
        protocol_version=version,
        remote=remote,
    )


def sync_reason(data: bytes) -> str:
    """The reason an ``hb.gw.sync`` request gives, passed on in SYNC."""
    return data.decode(errors="replace")[:SYNC_REASON_MAX] or SYNC_DEFAULT_REASON


def report_id(event: Report) -> str:
    """The de-duplication id (``Nats-Msg-Id``) of a trade report: the same report sent twice (after a
    reconnect, or by an EA and by a bridge) is one in HB_EVENTS."""
    key = event.action_id or event.position_id
    outcome = f"{event.status}:{event.error_code or ''}"
    return f"{event.account_id}:{type_name(event)}:{key}:{event.mt_ticket or ''}:{outcome}"


def report_headers(message: Message) -> dict[str, str] | None:
    """The NATS headers an event is published with: OPENED/CLOSED/MODIFIED carry their ``report_id``."""
    if isinstance(message, REPORT_TYPES):
        return {"Nats-Msg-Id": report_id(message)}  # type: ignore[arg-type]
    return None
