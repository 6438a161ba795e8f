"""An action whose coordinator died after recording its final state and before publishing it (the record final,
the action still listed as running): the next take-over scan publishes that final state, once, so that the
actions stream and its subscribers get it, instead of dropping the listing silently."""

from __future__ import annotations

import time

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.coordinator.model import ActionRecord
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.protocol import ActionLeg, ActionRequest, ActionState, subjects, unpack, utcnow

pytestmark = pytest.mark.integration


async def test_a_final_state_recorded_but_never_published_is_published_by_the_takeover_scan(
    coordinator: Coordinator, nc: NatsClient
) -> None:
    legs = [ActionLeg(account_id="A", symbol="EURUSD", side="BUY", volume=1.0)]
    request = ActionRequest(action_id="h-unpublished", kind="HEDGE_ENTRY", legs=legs)
    now = utcnow()
    final = ActionState(action_id="h-unpublished", kind="HEDGE_ENTRY", state="COMPLETED", seq=4, timestamp=now)
    record = ActionRecord(
        request=request,
        state=final,
        owner="co-gone",
        lease_until=time.time() - 10,
        deadline=time.time() + 30,
        created_at=now,
        updated_at=now,
    )
    await coordinator.store.list_running("h-unpublished")
    assert await coordinator.store.create(record) is not None  # recorded final; the coordinator died here
    assert await coordinator.take_over_lapsed() == []  # nothing to drive: it is final
    last = await nc.jetstream().get_last_msg(subjects.EVENTS_STREAM, subjects.action("h-unpublished"))
    assert last.data is not None
    published = unpack(last.data, ActionState)
    assert (published.state, published.seq) == ("COMPLETED", 4)
    assert "h-unpublished" not in await coordinator.store.running()
