"""The SDK without a server: which live events a subscription takes, its notices, the cursors it keeps and
the SUBSCRIBE frames that resume it after a reconnect."""

from __future__ import annotations

from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from hedgebridge.client import ClientError, ConnectionLost, Reconnected, Subscription
from hedgebridge.client.connection import (
    Cursors,
    attempt_failed_for_good,
    backoff_s,
    resume_frames,
    wait_after_s,
    worth_reconnecting,
)
from hedgebridge.client.subscription import wanted
from hedgebridge.protocol import HealthReport, MonitorReport, PriceTick, utcnow
from hedgebridge.protocol.client import CaughtUp, Cursor, Push, Resync

PRICE = PriceTick(account_id="A1", symbol="EURUSD", bid=1.1, ask=1.1001, time=utcnow())


def test_a_subscription_takes_its_topics_for_its_accounts() -> None:
    push = Push(topic="prices", data=PRICE)
    assert wanted(push, ["prices"], frozenset({"A1"}))
    assert wanted(push, ["prices"], None)  # every account the token may see
    assert not wanted(push, ["prices"], frozenset({"A2"}))
    assert not wanted(push, ["trades"], None)


def test_an_event_that_names_no_account_goes_to_every_subscription_of_its_topic() -> None:
    health = HealthReport(timestamp=utcnow(), service="monitor", instance="mon-1", ready=True)
    report = Push(topic="monitor", data=MonitorReport(timestamp=utcnow(), health=health))
    assert wanted(report, ["monitor"], frozenset({"A2"}))
    assert not wanted(report, ["prices"], frozenset({"A2"}))


# --- resuming after a reconnect ----------------------------------------------------------------------------


def test_cursors_follow_numbered_events_and_caught_up() -> None:
    cursors = Cursors()
    cursors.seen(Push(topic="prices", data=PRICE))  # not numbered: no cursor
    cursors.seen(Push(topic="orders", data=PRICE, epoch="E", seq=4))
    cursors.seen(CaughtUp(request_id="s", topic="trades", epoch="E", seq=9))
    cursors.seen(CaughtUp(request_id="s", topic="positions", snapshot=2))  # a snapshot topic: no cursor
    assert cursors.by_topic == {"orders": Cursor(epoch="E", seq=4), "trades": Cursor(epoch="E", seq=9)}
    cursors.seed({"orders": Cursor(epoch="E", seq=1), "alerts": Cursor(epoch="A", seq=2)})  # known ones win
    assert cursors.by_topic["orders"].seq == 4
    cursors.forget(["alerts"])
    assert cursors.resume_of(["orders", "prices", "positions"]) == {"orders": Cursor(epoch="E", seq=4)}


def test_resume_frames_follow_each_topic_again_with_its_accounts_and_cursor() -> None:
    cursors = Cursors()
    cursors.seen(Push(topic="orders", data=PRICE, epoch="E", seq=4))
    frames = resume_frames(
        [(["orders", "prices"], ["A1"]), (["orders"], ["A2"]), (["positions"], None), (["alerts"], ["A2", "A1"])],
        cursors,
    )
    got = {(tuple(f.topics), None if f.accounts is None else tuple(f.accounts)): f for f in frames}
    assert set(got) == {(("orders", "alerts"), ("A1", "A2")), (("prices",), ("A1",)), (("positions",), None)}
    both = got[(("orders", "alerts"), ("A1", "A2"))]
    assert both.resume == {"orders": Cursor(epoch="E", seq=4)}
    assert all(f.recent == 0 for f in frames)  # stream mode: snapshots and CAUGHT_UP, no extra history
    assert got[(("positions",), None)].resume is None


def test_which_ends_are_worth_reconnecting_after() -> None:
    assert worth_reconnecting(ConnectionLost(1001, "gateway shutting down"))
    assert worth_reconnecting(ConnectionLost(None, ""))
    assert worth_reconnecting(ConnectionLost(4001, "heartbeat timeout"))
    assert worth_reconnecting(ConnectionLost(1008, "slow consumer"))
    assert not worth_reconnecting(ConnectionLost(1008, "token revoked"))
    assert not worth_reconnecting(ConnectionLost(1000, ""))
    assert attempt_failed_for_good(ClientError("FORBIDDEN", "no"))
    assert attempt_failed_for_good(ConnectionLost(1008, "403 token role is not 'system' or 'admin'"))
    assert not attempt_failed_for_good(ConnectionLost(1001, "gateway shutting down"))
    assert not attempt_failed_for_good(OSError("connection refused"))
    for attempt in range(1, 12):
        assert 0.0 <= backoff_s(attempt) <= min(5.0, 0.1 * 2 ** (attempt - 1))


def _refused(status: int, retry_after: str | None) -> InvalidStatus:
    headers = Headers() if retry_after is None else Headers({"Retry-After": retry_after})
    return InvalidStatus(Response(status, "refused", headers, b""))


def test_a_busy_gateways_retry_after_is_waited_out_with_a_random_share() -> None:
    waits = [wait_after_s(_refused(503, "2"), 1) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 1  # jittered: many clients refused together do not come back together
    for exc in (_refused(429, None), _refused(503, "Wed, 21 Oct 2026 07:28:00 GMT"), OSError("refused")):
        assert 0.0 <= wait_after_s(exc, 3) <= 0.8  # the normal backoff of attempt 4


async def test_notices_are_kept_and_only_yielded_by_items() -> None:
    async def forget(_: Subscription) -> None:
        return None

    feed = Subscription(forget, ["orders"], None, 10)
    resync = Resync(request_id="s", topic="orders", reason="HISTORY_EXPIRED", message="m", epoch="E")
    feed._notice(Reconnected(1001, "gateway shutting down", 2))
    feed._notice(resync)
    feed._notice(CaughtUp(request_id="s", topic="trades"))  # another topic's: not this subscription's
    feed._offer(Push(topic="orders", data=PRICE, epoch="E", seq=5))
    assert (await feed.next(1)).seq == 5  # events only
    assert feed.notices == [Reconnected(1001, "gateway shutting down", 2), resync]
    feed._notice(resync)
    feed._offer(Push(topic="orders", data=PRICE, epoch="E", seq=6))
    assert await feed.next_item(1) == resync
    assert isinstance(await feed.next_item(1), Push)
