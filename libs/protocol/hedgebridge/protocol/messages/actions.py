"""The coordinator's hedge actions and its consistency checks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from .base import AccountId, ActionId, Count, Message, PriceValue, Side, Symbol, UserId, Volume, _Body
from .orders import OrderStatus

# --- actions (coordinator) ---------------------------------------------------------------------------------

ActionKind = Literal["HEDGE_ENTRY", "EXIT", "CLOSE_ALL"]
ActionPolicy = Literal["COMPENSATE", "KEEP"]
ActionStateName = Literal[
    "ACCEPTED",  # validated, targets resolved, legs not started
    "RUNNING",  # legs sent
    "COMPLETED",  # every leg filled
    "PARTIAL",  # some legs failed; policy KEEP: the filled legs stay open, flagged
    "COMPENSATING",  # some legs failed; policy COMPENSATE: closing the filled legs
    "COMPENSATED",  # the filled legs were closed again
    "FAILED",  # no leg filled, or compensation failed (needs a person)
    "UNSETTLED",  # a leg's outcome is unknown: waiting for reconciliation
    "REJECTED",  # validation failed; nothing was sent
]
FINAL_ACTION_STATES: frozenset[str] = frozenset({"COMPLETED", "PARTIAL", "COMPENSATED", "FAILED", "REJECTED"})


class ActionLeg(_Body, frozen=True, kw_only=True):
    account_id: AccountId
    symbol: Symbol
    side: Side
    volume: Volume
    user_id: UserId = ""
    stop_loss: PriceValue | None = None  # set on the leg's position as it opens (absent or 0: none)
    take_profit: PriceValue | None = None


class ActionRequest(Message, frozen=True, kw_only=True, tag="ACTION"):
    """A request that spans systems.

    - HEDGE_ENTRY: open every leg in ``legs`` concurrently (e.g. BUY on account A, SELL on account B).
    - EXIT: close every open leg of the earlier action ``targetActionId``.
    - CLOSE_ALL: close every open position on ``accountIds``.
    ``policy`` says what happens when some legs fail: COMPENSATE closes the filled ones, KEEP keeps them
    and flags the action PARTIAL.
    """

    action_id: ActionId | None = None
    kind: ActionKind
    legs: Annotated[list[ActionLeg], Meta(max_length=100)] = []
    target_action_id: ActionId | None = None
    account_ids: Annotated[list[AccountId], Meta(max_length=1000)] = []
    user_id: UserId = ""
    policy: ActionPolicy = "COMPENSATE"
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None

    def __post_init__(self) -> None:
        if self.kind == "HEDGE_ENTRY" and not self.legs:
            raise ValueError("`legs` is required for HEDGE_ENTRY")
        if self.kind == "EXIT" and self.target_action_id is None:
            raise ValueError("`targetActionId` is required for EXIT")
        if self.kind == "CLOSE_ALL" and not self.account_ids:
            raise ValueError("`accountIds` is required for CLOSE_ALL")

    def accounts(self) -> list[str]:
        """The accounts the request names (EXIT's come from the target action)."""
        return sorted({leg.account_id for leg in self.legs} | set(self.account_ids))


LegRole = Literal["ENTRY", "EXIT", "COMPENSATION"]
LegStatus = Literal["PENDING", "RUNNING"] | OrderStatus


class LegState(_Body, frozen=True, kw_only=True):
    index: Count
    role: LegRole
    account_id: str
    order_action_id: str  # the executor order's actionId: ``<actionId>-<role initial><index>``
    status: LegStatus = "PENDING"
    symbol: str | None = None
    side: Side | None = None
    volume: float | None = None
    stop_loss: float | None = None  # an entry leg's stops, as its OPEN sets them
    take_profit: float | None = None
    mt_ticket: str | None = None
    position_id: str | None = None
    price: float | None = None
    filled_volume: float | None = None
    code: str | None = None
    message: str = ""


class ActionState(Message, frozen=True, kw_only=True, tag="ACTION_STATE"):
    """One state of an action. Published on every change with a growing ``seq`` (subscribers drop a state
    whose seq is not above the last they saw) and kept in JetStream."""

    action_id: str
    kind: ActionKind
    state: ActionStateName
    seq: Count
    timestamp: datetime
    policy: ActionPolicy = "COMPENSATE"
    user_id: str = ""
    account_ids: list[str] = []
    legs: list[LegState] = []
    message: str = ""
    code: str | None = None
    duplicate: bool = False


# --- consistency (coordinator) -----------------------------------------------------------------------------

ConflictKind = Literal["ORPHAN_POSITION", "MISSING_POSITION", "VOLUME_MISMATCH"]


class Conflict(Message, frozen=True, kw_only=True, tag="CONFLICT"):
    """A difference between what the system believes open and what a terminal reports.

    - ORPHAN_POSITION: the terminal has a position the system has no record of (opened outside it).
    - MISSING_POSITION: the system believes a position open that the terminal does not report.
    - VOLUME_MISMATCH: both know it, with different volumes.
    """

    kind: ConflictKind
    account_id: str
    mt_ticket: str
    detected_at: datetime
    position_id: str | None = None
    symbol: str | None = None
    expected_volume: float | None = None
    reported_volume: float | None = None
    resolution: str = "REPORTED"  # REPORTED, ADOPTED, CLOSED, DROPPED
    message: str = ""


class ConsistencyStatus(Message, frozen=True, kw_only=True, tag="CONSISTENCY"):
    timestamp: datetime
    consistent: bool
    accounts_checked: Count
    open_conflicts: Count
    conflicts: list[Conflict] = []
