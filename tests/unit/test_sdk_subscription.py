"""Which live events an SDK subscription takes (``hedgebridge.client.subscription.wanted``), with no server."""

from __future__ import annotations

from hedgebridge.client.subscription import wanted
from hedgebridge.protocol import HealthReport, MonitorReport, PriceTick, utcnow
from hedgebridge.protocol.client import Push

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
