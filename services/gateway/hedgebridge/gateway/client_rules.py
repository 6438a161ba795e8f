"""The client API's rules, pure: what a client may ask and see, decided from its token and the frame alone.

Owns the topics and their shared feeds (which NATS subjects serve a topic, for which accounts), the scope
checks (with the field path a refusal names), what a client sees of a shared feed, the stamping of a request
(actionId, userId), how long the gateway waits for the backend, what SUBSCRIBED names, the WELCOME a session
starts with, and the check of an EXIT's target. No I/O: the time and every stored state come as arguments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from hedgebridge.common.auth import Principal
from hedgebridge.protocol import (
    PROTOCOL_VERSION,
    ActionRequest,
    ActionState,
    Alert,
    CloseBatch,
    CloseOrder,
    ConsistencyStatus,
    ModifyOrder,
    MonitorReport,
    OpenOrder,
    OrderResult,
    ProtocolError,
    SymbolSpecs,
    TerminalStatus,
    errors,
    subjects,
    unpack,
    unpack_event,
)
from hedgebridge.protocol.client import TOPIC_DELIVERY, ClientWelcome, EventData
from hedgebridge.protocol.codec import read_loosely
from hedgebridge.protocol.messages import Conflict

from .config import GatewayConfig

RequestBody = OpenOrder | CloseOrder | ModifyOrder | CloseBatch | ActionRequest
SLOW_CONSUMER = "slow consumer"

# Topics whose events belong to one account, and the terminal event types (subject suffixes) behind them.
EVENT_TOPICS: dict[str, tuple[str, ...]] = {
    "prices": ("PRICE",),
    "positions": ("POSITION_UPDATE",),
    "balances": ("ACCOUNT_UPDATE",),
    "trades": ("OPENED", "CLOSED", "MODIFIED"),
}
ACCOUNT_TOPICS: frozenset[str] = frozenset({*EVENT_TOPICS, "terminals", "orders"})
# Topics served by one shared subscription each; every client sees what its scope allows (see ``visible``).
SHARED_TOPICS: frozenset[str] = frozenset({"actions", "consistency", "alerts", "monitor"})
ANY = "*"

FeedKey = tuple[str, str]  # (topic, account or ANY)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a frame is refused: becomes an ERROR frame."""

    code: str
    message: str
    field: str | None = None


def check_request_scope(principal: Principal, body: RequestBody) -> Refusal | None:
    """The first account ``body`` names outside the principal's scope, as a FORBIDDEN refusal naming the
    field (``body.accountId``, ``body.items[1].accountId``, ``body.legs[0].accountId``, ``body.accountIds[2]``).
    An EXIT's accounts are those of its target action, checked against the recorded action (see ``ClientHub``).
    """
    named: list[tuple[str, str]] = []
    if isinstance(body, OpenOrder | CloseOrder | ModifyOrder):
        named.append(("body.accountId", body.account_id))
    elif isinstance(body, CloseBatch):
        named.extend((f"body.items[{i}].accountId", item.account_id) for i, item in enumerate(body.items))
    else:
        named.extend((f"body.legs[{i}].accountId", leg.account_id) for i, leg in enumerate(body.legs))
        named.extend((f"body.accountIds[{i}]", account) for i, account in enumerate(body.account_ids))
    for path, account in named:
        if not principal.may_use(account):
            return Refusal(errors.FORBIDDEN, f"account {account} is outside this token's scope", path)
    return None


def check_subscribe_scope(principal: Principal, accounts: list[str] | None) -> Refusal | None:
    for i, account in enumerate(accounts or ()):
        if not principal.may_use(account):
            return Refusal(errors.FORBIDDEN, f"account {account} is outside this token's scope", f"accounts[{i}]")
    return None


def feed_keys(principal: Principal, topic: str, selection: frozenset[str] | None) -> set[FeedKey]:
    """The shared feeds a client needs for ``topic``. ``selection`` None means everything in scope: the
    wildcard feed for an admin, one feed per account of a system token. A topic kept in JetStream (STREAM
    delivery) has one feed for every account, read from the stream, whose events are filtered per client
    (``sees``)."""
    if topic in SHARED_TOPICS or TOPIC_DELIVERY.get(topic) == "STREAM":
        return {(topic, ANY)}
    if selection is None:
        if principal.is_admin:
            return {(topic, ANY)}
        selection = principal.accounts
    return {(topic, account) for account in selection}


def feed_subjects(key: FeedKey) -> tuple[str, ...]:
    """The core NATS subjects of a feed (a STREAM topic's events come from its stream instead, see
    ``stream_rules.STREAM_SOURCES``; of the consistency topic only the overall status is core)."""
    topic, account = key
    if topic in EVENT_TOPICS and topic != "trades":
        kinds = EVENT_TOPICS[topic]
        if account == ANY:
            return tuple(subjects.event_any_account(kind) for kind in kinds)
        return tuple(subjects.event(account, kind) for kind in kinds)
    if topic == "terminals":
        return (subjects.ALL_STATUS if account == ANY else subjects.status(account),)
    if topic in ("trades", "orders", "actions", "alerts"):
        return ()
    if topic == "consistency":
        return (subjects.CONSISTENCY_STATUS,)
    if topic == "monitor":
        return (subjects.MONITOR_REPORT,)
    raise ValueError(f"unknown topic {topic!r}")


def decode_feed(topic: str, subject: str, data: bytes) -> EventData:
    if topic in EVENT_TOPICS:
        event = unpack_event(data)
        if isinstance(event, SymbolSpecs):  # no topic carries the symbols' rules
            raise ProtocolError(errors.UNEXPECTED_TYPE, f"SYMBOL_SPECS is not an event of the {topic} topic")
        return event
    if topic == "terminals":
        return unpack(data, TerminalStatus)
    if topic == "orders":
        return unpack(data, OrderResult)
    if topic == "actions":
        return unpack(data, ActionState)
    if topic == "alerts":
        return unpack(data, Alert)
    if topic == "monitor":
        return unpack(data, MonitorReport)
    if subject == subjects.CONSISTENCY_STATUS:
        return unpack(data, ConsistencyStatus)
    return unpack(data, Conflict)


def sees(
    principal: Principal, selection: frozenset[str] | None, topic: str, account: str | None, data: EventData
) -> bool:
    """Whether a client may see an event: one of an account (``account``, from its subject) when the account
    is in scope and in its selection (None: every account in scope); any other by ``visible``."""
    if account is not None:
        return principal.may_use(account) and (selection is None or account in selection)
    return visible(principal, selection, topic, data)


def visible(principal: Principal, selection: frozenset[str] | None, topic: str, data: EventData) -> bool:
    """Whether a client may see an event of a shared feed (account feeds are only joined within scope).

    - actions: an admin sees all; a system client sees an action when every account it names is in scope,
      or when its user is one of the token's users.
    - consistency: conflicts of accounts in scope; the overall status only for admins.
    - alerts: alerts of accounts in scope; system-wide alerts only for admins. monitor: only admins.
    ``selection`` (the accounts the client subscribed to, None for all) narrows both.
    """
    if isinstance(data, ActionState):
        allowed = principal.is_admin or (
            (bool(data.account_ids) and all(principal.may_use(a) for a in data.account_ids))
            or principal.may_watch_user(data.user_id)
        )
        return allowed and (selection is None or bool(selection.intersection(data.account_ids)))
    if isinstance(data, Conflict):
        return principal.may_use(data.account_id) and (selection is None or data.account_id in selection)
    if isinstance(data, Alert):  # an account's alerts within scope; the system's only for admins
        if not data.account_id:
            return principal.is_admin and selection is None
        return principal.may_use(data.account_id) and (selection is None or data.account_id in selection)
    if isinstance(data, ConsistencyStatus | MonitorReport):
        return principal.is_admin
    return True


def request_timeout_s(body: RequestBody, config: GatewayConfig) -> float:
    """How long the gateway waits for the backend's answer: the request's own timeout (or the configured
    default) plus its time-to-live and a transport margin."""
    if isinstance(body, ActionRequest):
        base = body.timeout_ms or config.client_action_timeout_ms
        ttl = 0
    else:
        base = body.timeout_ms or config.client_request_timeout_ms
        ttl = body.ttl_ms or 0
    return (base + ttl + config.client_request_margin_ms) / 1000


def complete_body(body: RequestBody, principal: Principal) -> RequestBody:
    """Give the request an actionId when it has none (so every answer, the gateway's own included, names the
    idempotency key a retry must reuse) and the token's subject as ``userId`` when it names no user."""
    changes: dict[str, Any] = {}
    if body.action_id is None:
        changes["action_id"] = uuid.uuid4().hex
    if not body.user_id:
        changes["user_id"] = principal.subject
    return msgspec.structs.replace(body, **changes) if changes else body


def request_id_of(data: str | bytes) -> str | None:
    """The requestId of a frame that failed validation, when it can be read, for the ERROR's refId."""
    raw = read_loosely(data)  # None when it is not JSON or nests too deep
    rid = raw.get("requestId") if isinstance(raw, dict) else None
    return rid[:128] if isinstance(rid, str) and rid else None


def close_reason(text: str) -> str:
    """A close frame's reason: at most 120 bytes of UTF-8 (the frame allows 123)."""
    encoded = text.encode()[:120]
    return encoded.decode(errors="ignore")


# --- subscriptions ---------------------------------------------------------------------------------------


def merge_selection(current: frozenset[str] | None, asked: frozenset[str] | None) -> frozenset[str] | None:
    """The accounts a topic is followed for after a SUBSCRIBE (None: every account in scope)."""
    return None if asked is None or current is None else current | asked


def scope_accounts(principal: Principal) -> list[str] | None:
    """The accounts "everything in scope" stands for in SUBSCRIBED: None (all) for an admin."""
    return None if principal.is_admin else sorted(principal.accounts)


def subscribed_accounts(principal: Principal, asked: list[str] | None) -> list[str] | None:
    """What SUBSCRIBED names as the accounts of a SUBSCRIBE."""
    return scope_accounts(principal) if asked is None else sorted(set(asked))


def remaining_accounts(principal: Principal, selections: dict[str, frozenset[str] | None]) -> list[str] | None:
    """What SUBSCRIBED names as the accounts still followed after an UNSUBSCRIBE."""
    if any(s is None for s in selections.values()):
        return scope_accounts(principal)
    return sorted(set().union(*(s for s in selections.values() if s is not None)))


# --- sessions and requests ---------------------------------------------------------------------------------


def welcome(principal: Principal, version: int, session_id: str, config: GatewayConfig, now: datetime) -> ClientWelcome:
    """The first frame of a client session: the token's scope as the gateway reads it."""
    return ClientWelcome(
        protocol_version=min(version, PROTOCOL_VERSION),
        session_id=session_id,
        role=principal.role,
        subject=principal.subject,
        accounts=scope_accounts(principal),
        users=sorted(principal.users),
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        server_time=now,
    )


def exit_target(body: ActionRequest, principal: Principal) -> str | None:
    """The action an EXIT names when its recorded accounts must be checked (a system client's EXIT)."""
    if body.kind == "EXIT" and not principal.is_admin:
        return body.target_action_id
    return None


def check_exit_target(target: str, recorded: ActionState | None, principal: Principal) -> Refusal | None:
    """A system client may exit only an action whose accounts are all in its scope (``recorded``: the
    action's last recorded state, None when none is recorded or it does not decode)."""
    if recorded is None:
        return Refusal(errors.ACTION_NOT_FOUND, f"no action {target} is recorded", "body.targetActionId")
    outside = [a for a in recorded.account_ids if not principal.may_use(a)]
    if outside or not recorded.account_ids:
        return Refusal(
            errors.FORBIDDEN,
            f"action {target} names accounts outside this token's scope",
            "body.targetActionId",
        )
    return None
