"""The fault suite's load: orders and hedge actions through the client SDK (libs/client), and stream clients
that follow the STREAM topics across reconnects, all writing into one ``History``.

A submit is asked again with the same actionId until it has a final answer (a lost connection, a gateway
error, IN_FLIGHT and OUTCOME_UNKNOWN are asked again; EXPIRED is final: asking again would run it afresh), as
a caller who wants exactly-once does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from hedgebridge.client import HedgebridgeClient
from hedgebridge.client.errors import ClientError, ConnectionLost
from hedgebridge.client.subscription import Reconnected, Subscription
from hedgebridge.common import auth
from hedgebridge.protocol import ActionLeg, ActionRequest, ActionState, CloseOrder, OpenOrder, OrderResult
from hedgebridge.protocol.client import CaughtUp, Push, Resync

from .checker import ACTION_FINAL, ORDER_FINAL, ActionOutcome, Answer, History, Leg, Received, Submit

STREAM_TOPICS = ("trades", "orders", "actions")
RETRY_S = 0.2  # between two asks of one submit


def system_token(secret: str, accounts: list[str]) -> str:
    return auth.mint_token(secret, role="system", subject="faults", accounts=accounts)


@dataclass
class Load:
    """Workers that submit orders and actions until ``stop``; ``in_flight`` holds the submits not yet final."""

    history: History
    accounts: list[str]
    seed: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: dict[str, float] = field(default_factory=dict)  # actionId -> when submitted
    finished: int = 0
    _counter: int = 0

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self.seed}-{self._counter}"

    async def _ask(self, client: HedgebridgeClient, body: OpenOrder | CloseOrder | ActionRequest) -> object:
        """Ask until a final answer; every answer is recorded."""
        action_id = body.action_id or ""
        self.in_flight[action_id] = time.time()
        try:
            while True:
                try:
                    result = await asyncio.wait_for(client.request(body), 40)
                except (ConnectionLost, ClientError, TimeoutError):
                    await asyncio.sleep(RETRY_S)
                    continue
                if isinstance(result, OrderResult):
                    self.history.answers.append(Answer(action_id, result.status, time.time()))
                    if result.status in ORDER_FINAL:
                        return result
                elif isinstance(result, ActionState):
                    self.history.answers.append(Answer(action_id, result.state, time.time()))
                    if result.state in ACTION_FINAL:
                        return result
                await asyncio.sleep(RETRY_S)
        finally:
            self.in_flight.pop(action_id, None)
            self.finished += 1

    async def orders(self, client: HedgebridgeClient, worker: int) -> None:
        rng = random.Random(self.seed * 1000 + worker)
        while not self.stop.is_set():
            account = rng.choice(self.accounts)
            action_id = self._next_id(f"o{worker}")
            body = OpenOrder(
                account_id=account, symbol="EURUSD", side=rng.choice(["BUY", "SELL"]), volume=0.1, action_id=action_id
            )
            self.history.submits.append(Submit(action_id, "OPEN", account, time.time()))
            result = await self._ask(client, body)
            assert isinstance(result, OrderResult)
            if result.status == "FILLED" and result.position_id and rng.random() < 0.5:
                close_id = self._next_id(f"c{worker}")
                self.history.submits.append(Submit(close_id, "CLOSE", account, time.time()))
                close = CloseOrder(account_id=account, position_id=result.position_id, action_id=close_id)
                await self._ask(client, close)

    async def actions(self, client: HedgebridgeClient) -> None:
        rng = random.Random(self.seed * 1000 + 999)
        while not self.stop.is_set():
            first, second = rng.sample(self.accounts, 2)
            action_id = self._next_id("a")
            policy = rng.choice(["COMPENSATE", "KEEP"])
            legs = [
                ActionLeg(account_id=first, symbol="EURUSD", side="BUY", volume=0.2),
                ActionLeg(account_id=second, symbol="EURUSD", side="SELL", volume=0.2),
            ]
            body = ActionRequest(kind="HEDGE_ENTRY", legs=legs, policy=policy, action_id=action_id)  # type: ignore[arg-type]
            self.history.submits.append(Submit(action_id, "ACTION", "", time.time()))
            state = await self._ask(client, body)
            assert isinstance(state, ActionState)
            self.record_action(state)

    def record_action(self, state: ActionState) -> None:
        legs = tuple(Leg(leg.role, leg.account_id, leg.order_action_id, leg.status) for leg in state.legs)
        self.history.actions = [a for a in self.history.actions if a.action_id != state.action_id]
        self.history.actions.append(ActionOutcome(state.action_id, state.policy, state.state, legs, state.code))


@dataclass
class StreamClient:
    """A client that follows the STREAM topics on one gateway, reconnecting and resuming from its cursors."""

    name: str
    history: History
    reconnected: asyncio.Event = field(default_factory=asyncio.Event)
    first: dict[str, tuple[str, int]] = field(default_factory=dict)  # topic -> the first cursor it had
    settled: dict[str, float] = field(default_factory=dict)  # actionId -> when its final result was streamed

    async def follow(self, client: HedgebridgeClient) -> None:
        subscription: Subscription = await client.subscribe(list(STREAM_TOPICS), recent=0)
        async with subscription:
            async for item in subscription.items():
                now = time.time()
                if isinstance(item, Push) and item.seq is not None:
                    self.history.received.append(Received(self.name, item.topic, item.epoch, item.seq, t=now))
                    self._settle(item, time.monotonic())
                elif isinstance(item, CaughtUp) and item.epoch is not None and item.seq is not None:
                    self.first.setdefault(item.topic, (item.epoch, item.seq))
                elif isinstance(item, Resync):
                    self.history.received.append(Received(self.name, item.topic, notice="RESYNC", t=now))
                elif isinstance(item, Reconnected):
                    for topic in STREAM_TOPICS:
                        self.history.received.append(Received(self.name, topic, notice="RECONNECTED", t=now))
                    self.reconnected.set()

    def _settle(self, push: Push, now: float) -> None:
        data = push.data
        if isinstance(data, OrderResult) and data.status in ORDER_FINAL:
            self.settled.setdefault(data.action_id or "", now)
        elif isinstance(data, ActionState) and data.state in ACTION_FINAL:
            self.settled.setdefault(data.action_id, now)


async def reference(
    url: str, token: str, cursors: dict[str, tuple[str, int]]
) -> tuple[dict[str, list[tuple[str, int]]], set[str]]:
    """Each topic's history after ``cursors`` as a fresh client replays it (the stream's own record), and the
    actions whose final state it holds."""
    from hedgebridge.protocol.client import Cursor

    found: dict[str, list[tuple[str, int]]] = {t: [] for t in cursors}
    finals: set[str] = set()
    client = await HedgebridgeClient.connect(url, token)
    try:
        resume = {t: Cursor(epoch=e, seq=s) for t, (e, s) in cursors.items()}
        subscription = await client.subscribe(list(cursors), resume=resume)
        waiting = set(cursors)
        async with asyncio.timeout(60):
            async for item in subscription.items():
                if isinstance(item, Push) and item.seq is not None and item.epoch is not None:
                    found[item.topic].append((item.epoch, item.seq))
                    if isinstance(item.data, ActionState) and item.data.state in ACTION_FINAL:
                        finals.add(item.data.action_id)
                elif isinstance(item, CaughtUp):
                    waiting.discard(item.topic)
                    if not waiting:
                        break
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    return found, finals
