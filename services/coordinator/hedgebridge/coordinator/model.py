"""What an action is made of (pure code, no I/O): its stored record and who may take it over, the ids of
its legs' orders, and the leg statuses the state machine goes by."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from hedgebridge.protocol import FINAL_ACTION_STATES, ActionRequest, ActionState, LegState, errors

ROLE_LETTER = {"ENTRY": "E", "EXIT": "X", "COMPENSATION": "C"}
# Leg statuses that are an answer (a leg in one of these is never sent again).
FINAL_LEG = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "INVALID"})
FILLED_LEG = frozenset({"FILLED", "PARTIALLY_FILLED"})
# Leg statuses still waiting for an answer from the executor.
OPEN_LEG = frozenset({"PENDING", "RUNNING", "IN_FLIGHT"})


class ActionRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What JetStream keeps of an action (KV bucket ``hb_actions``, key = actionId)."""

    request: ActionRequest
    state: ActionState
    owner: str  # the coordinator replica driving it
    lease_until: float  # epoch seconds; past it, another replica may take the action over
    deadline: float  # epoch seconds: when the request's timeout passes
    created_at: datetime
    updated_at: datetime


def is_final(state: ActionState) -> bool:
    return state.state in FINAL_ACTION_STATES


def order_action_id(action_id: str, role: str, index: int) -> str:
    return f"{action_id}-{ROLE_LETTER[role]}{index}"


def parent_action_id(order_id: str) -> str | None:
    """The action an order's actionId belongs to (``<actionId>-<E|X|C><i>``), or None."""
    head, sep, tail = order_id.rpartition("-")
    if not sep or len(tail) < 2 or tail[0] not in "EXC" or not tail[1:].isdigit() or not head:
        return None
    return head


def same_request(first: ActionRequest, second: ActionRequest) -> bool:
    """Whether two requests with one actionId ask for the same thing (the timeout may differ)."""
    return msgspec.structs.replace(first, timeout_ms=None) == msgspec.structs.replace(second, timeout_ms=None)


def moment(now: float) -> datetime:
    """The datetime of an epoch time (what states and records carry)."""
    return datetime.fromtimestamp(now, UTC)


def take_over(record: ActionRecord, owner: str, now: float, lease_s: float) -> ActionRecord | None:
    """The record as ``owner`` writes it to take the action over; None while the action is final or its
    owner's lease still holds."""
    if is_final(record.state) or record.lease_until > now:
        return None
    return msgspec.structs.replace(record, owner=owner, lease_until=now + lease_s, updated_at=moment(now))


def closed(leg: LegState) -> bool:
    """A close leg that left no position behind."""
    return leg.status == "FILLED" or (leg.status == "REJECTED" and leg.code == errors.ALREADY_CLOSED)


def open_legs(target: ActionState) -> list[LegState]:
    """The entry legs of ``target`` that are (believed) open: filled and not closed again by compensation."""
    reclosed = {leg.index for leg in target.legs if leg.role == "COMPENSATION" and closed(leg)}
    return [
        leg
        for leg in target.legs
        if leg.role == "ENTRY" and leg.status in FILLED_LEG and leg.mt_ticket is not None and leg.index not in reclosed
    ]
