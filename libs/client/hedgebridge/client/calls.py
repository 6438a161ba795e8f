"""The calls of ``HedgebridgeClient`` that build a request body (orders, stops, batches, actions) on top of its
``request`` and ``subscribe``. Every order and action gets an actionId when the caller gives none: it is
the idempotency key, so repeating a call with the same ``action_id`` after a lost answer never executes
twice."""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TypedDict, TypeVar

from hedgebridge.protocol import (
    FINAL_ACTION_STATES,
    ActionLeg,
    ActionRequest,
    ActionState,
    BatchItem,
    BatchResult,
    CloseBatch,
    CloseOrder,
    ListSymbolMaps,
    ModifyOrder,
    OpenOrder,
    OrderResult,
    RemoveSymbolMap,
    SetSymbolMap,
    SymbolMap,
    SymbolMapRequest,
    SymbolMaps,
)
from hedgebridge.protocol.client import Cursor

from .errors import UNEXPECTED_REPLY, ClientError
from .legs import Leg, Policy, Side
from .subscription import Subscription

Result = OrderResult | BatchResult | ActionState | SymbolMaps
R = TypeVar("R", OrderResult, BatchResult, ActionState, SymbolMaps)
Body = OpenOrder | CloseOrder | ModifyOrder | CloseBatch | ActionRequest | SymbolMapRequest


class Ids(TypedDict):
    """Who asks for an order or an action, and its idempotency key."""

    action_id: str
    user_id: str


def ids(action_id: str | None, user_id: str) -> Ids:
    """``action_id``, generated when the caller gives none, and ``user_id``."""
    return {"action_id": action_id or uuid.uuid4().hex, "user_id": user_id}


class Calls(ABC):
    """Order and action calls; the class that mixes this in provides ``request`` and ``subscribe``."""

    @abstractmethod
    async def request(self, body: Body) -> Result:
        """Send one REQUEST and wait for its REPLY."""

    @abstractmethod
    async def subscribe(
        self,
        topics: Sequence[str],
        accounts: Sequence[str] | None = None,
        *,
        recent: int | None = 0,
        resume: Mapping[str, Cursor] | None = None,
    ) -> Subscription:
        """Subscribe to live events of ``topics``."""

    async def _typed(self, body: Body, kind: type[R]) -> R:
        result = await self.request(body)
        if not isinstance(result, kind):
            raise ClientError(UNEXPECTED_REPLY, f"expected {kind.__name__}, got {type(result).__name__}")
        return result

    async def open(
        self,
        account: str,
        symbol: str,
        side: Side,
        volume: float,
        *,
        action_id: str | None = None,
        user_id: str = "",
        timeout_ms: int | None = None,
        round_volume: bool = False,
        stop_loss: float | None = None,
        take_profit: float | None = None,
    ) -> OrderResult:
        """Open a market position; returns the executor's definite OrderResult (FILLED, REJECTED, EXPIRED…).
        ``round_volume``: a volume off the symbol's step is rounded down to it (``rounded_from`` says from what)
        instead of being INVALID. ``stop_loss`` / ``take_profit``: prices set on the position as it opens."""
        body = OpenOrder(account_id=account, symbol=symbol, side=side, volume=volume, **ids(action_id, user_id),
                         timeout_ms=timeout_ms, round_volume=round_volume, stop_loss=stop_loss,
                         take_profit=take_profit)  # fmt: skip
        return await self._typed(body, OrderResult)

    async def modify(
        self,
        account: str,
        *,
        position_id: str | None = None,
        mt_ticket: str | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        action_id: str | None = None,
        user_id: str = "",
        timeout_ms: int | None = None,
    ) -> OrderResult:
        """Set the stops of a position named by ``position_id`` or ``mt_ticket``: ``None`` keeps a stop, ``0``
        removes it, a price sets it. FILLED when the position has them afterwards (also when it had them
        already: ``retcode_class`` NO_CHANGES); REJECTED with INVALID_STOPS, ALREADY_CLOSED or TERMINAL_REFUSED
        otherwise."""
        if position_id is None and mt_ticket is None:
            raise ValueError("modify needs position_id or mt_ticket")
        if stop_loss is None and take_profit is None:
            raise ValueError("modify needs stop_loss or take_profit")
        body = ModifyOrder(account_id=account, position_id=position_id, mt_ticket=mt_ticket, stop_loss=stop_loss,
                           take_profit=take_profit, **ids(action_id, user_id), timeout_ms=timeout_ms)  # fmt: skip
        return await self._typed(body, OrderResult)

    async def close(
        self,
        account: str,
        *,
        position_id: str | None = None,
        mt_ticket: str | None = None,
        volume: float | None = None,
        action_id: str | None = None,
        user_id: str = "",
        exit_reason: str = "",
        timeout_ms: int | None = None,
        round_volume: bool = False,
    ) -> OrderResult:
        """Close a position by ``position_id`` or ``mt_ticket`` (``volume`` closes part of it; ``round_volume``
        as for ``open``)."""
        if position_id is None and mt_ticket is None:
            raise ValueError("close needs position_id or mt_ticket")
        body = CloseOrder(account_id=account, position_id=position_id, mt_ticket=mt_ticket, volume=volume,
                          **ids(action_id, user_id), exit_reason=exit_reason, timeout_ms=timeout_ms,
                          round_volume=round_volume)  # fmt: skip
        return await self._typed(body, OrderResult)

    async def close_batch(
        self,
        items: Iterable[BatchItem],
        *,
        action_id: str | None = None,
        exit_reason: str = "",
        timeout_ms: int | None = None,
    ) -> BatchResult:
        """Close many positions at once; one OrderResult per item."""
        body = CloseBatch(
            items=list(items), action_id=action_id or uuid.uuid4().hex, exit_reason=exit_reason, timeout_ms=timeout_ms
        )
        return await self._typed(body, BatchResult)

    async def action(self, body: ActionRequest, *, follow: bool = False, timeout_s: float = 60.0) -> ActionState:
        """Submit an action. With ``follow``, wait (at most ``timeout_s``) for its final state, read from the
        ``actions`` topic (subscribed before the request is sent, so no state is missed)."""
        if not follow:
            return await self._typed(body, ActionState)
        if body.action_id is None:
            raise ValueError("follow needs an action_id")
        async with await self.subscribe(["actions"]) as feed:
            state = await self._typed(body, ActionState)
            async with asyncio.timeout(timeout_s):
                while state.state not in FINAL_ACTION_STATES:
                    push = await feed.next()
                    data = push.data
                    if isinstance(data, ActionState) and data.action_id == body.action_id and data.seq > state.seq:
                        state = data
            return state

    async def hedge(
        self,
        legs: Sequence[Leg | ActionLeg],
        *,
        policy: Policy = "COMPENSATE",
        action_id: str | None = None,
        user_id: str = "",
        timeout_ms: int | None = None,
        follow: bool = False,
    ) -> ActionState:
        """Open every leg concurrently (a hedge entry); ``policy`` says what happens when some legs fail."""
        messages = [leg.to_message() if isinstance(leg, Leg) else leg for leg in legs]
        body = ActionRequest(kind="HEDGE_ENTRY", legs=messages, policy=policy, **ids(action_id, user_id),
                             timeout_ms=timeout_ms)  # fmt: skip
        return await self.action(body, follow=follow)

    async def exit(
        self, target_action_id: str, *, action_id: str | None = None, user_id: str = "", follow: bool = False
    ) -> ActionState:
        """Close every open leg of the earlier action ``target_action_id``."""
        body = ActionRequest(kind="EXIT", target_action_id=target_action_id, **ids(action_id, user_id))
        return await self.action(body, follow=follow)

    async def close_all(
        self, accounts: Sequence[str], *, action_id: str | None = None, user_id: str = "", follow: bool = False
    ) -> ActionState:
        """Close every open position on ``accounts``."""
        body = ActionRequest(kind="CLOSE_ALL", account_ids=list(accounts), **ids(action_id, user_id))
        return await self.action(body, follow=follow)

    # --- symbol maps (admin tokens only: others get ClientError FORBIDDEN) ----------------------------------

    async def set_symbols(
        self,
        account: str,
        symbols: Mapping[str, str] | None = None,
        *,
        prefix: str | None = None,
        suffix: str | None = None,
    ) -> SymbolMap:
        """Add or replace entries (canonical -> broker symbol) of ``account``'s symbol map, and set its prefix
        or suffix when given (``""`` removes it); returns the map as written. ClientError SYMBOL_MAP_CONFLICT
        when two canonical symbols would share a broker symbol."""
        body = SetSymbolMap(account_id=account, symbols=dict(symbols or {}), prefix=prefix, suffix=suffix)
        return (await self._typed(body, SymbolMaps)).maps[0]

    async def remove_symbols(self, account: str, symbols: Iterable[str]) -> SymbolMap:
        """Remove entries (by canonical symbol) of ``account``'s symbol map; returns the map as written."""
        body = RemoveSymbolMap(account_id=account, symbols=list(symbols))
        return (await self._typed(body, SymbolMaps)).maps[0]

    async def symbol_maps(self, account: str | None = None) -> list[SymbolMap]:
        """The symbol map of ``account`` (an empty list when it has none), or of every account."""
        return (await self._typed(ListSymbolMaps(account_id=account), SymbolMaps)).maps
