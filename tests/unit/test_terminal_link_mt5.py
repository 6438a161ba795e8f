"""The MT5 bridge's terminal link (``terminal_link_mt5.Mt5Link``) without a bus: when it takes commands, the
SYNC it queues for ``hb.gw.sync``, the commands it refuses past their ``notAfter``, and what a hand-over does
to it."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import msgspec
from nats.aio.msg import Msg

from hedgebridge.common.terminal_link import REPLACED, Delivery
from hedgebridge.mt5bridge.terminal_link_mt5 import NOT_ATTACHED, Mt5Link
from hedgebridge.protocol import PROTOCOL_VERSION, SyncCommand, TerminalStatus, utcnow

from .test_lifecycle import OPEN


async def test_an_attached_link_takes_commands_and_queues_a_sync_behind_them() -> None:
    link = Mt5Link("A1", "s-1")
    assert link.unavailable() is None
    assert await link.wait_ready()
    assert (link.version, link.remote) == (PROTOCOL_VERSION, "MetaTrader5 package")
    await link.request_sync("cache rebuild")
    assert link.queue is not None
    queued = link.queue.get_nowait()
    assert isinstance(queued, SyncCommand)
    assert (queued.account_id, queued.reason) == ("A1", "cache rebuild")


async def test_a_lost_or_detached_link_takes_nothing() -> None:
    link = Mt5Link("A1", "s-1")
    link.lose("terminal lost: gone")
    link.lose("a later reason")
    assert (link.lost.is_set(), link.lost_reason) == (True, "terminal lost: gone")
    assert link.unavailable() == NOT_ATTACHED
    await link.request_sync("x")
    assert link.queue is not None
    assert link.queue.empty()
    detached = Mt5Link("A1", "s-2")
    detached.queue = None
    assert detached.unavailable() == "terminal not attached"


async def test_a_newer_connection_ends_the_session() -> None:
    link = Mt5Link("A1", "s-1")
    by = TerminalStatus(timestamp=utcnow(), account_id="A1", status="CONNECTED", session_id="s-9", gateway_id="gw-1")
    await link.replaced(by)
    assert (link.lost.is_set(), link.lost_reason) == (True, REPLACED)
    assert link.unavailable() == NOT_ATTACHED


async def test_a_command_past_its_not_after_is_refused_unsent_and_one_in_time_is_queued() -> None:
    link = Mt5Link("A1", "s-1")
    msg = cast(Msg, None)  # the link reads nothing of the NATS message
    late = msgspec.structs.replace(OPEN, not_after=utcnow() - timedelta(milliseconds=1))
    assert await link.deliver(late, msg) is Delivery.FENCED
    assert link.queue is not None
    assert link.queue.empty()
    in_time = msgspec.structs.replace(OPEN, not_after=utcnow() + timedelta(seconds=30))
    assert await link.deliver(in_time, msg) is Delivery.DELIVERED
    assert await link.deliver(OPEN, msg) is Delivery.DELIVERED  # no notAfter: no fence
    assert [link.queue.get_nowait(), link.queue.get_nowait()] == [in_time, OPEN]
