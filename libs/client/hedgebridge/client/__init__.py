"""The async Python SDK for hedgebridge's client API (``ws://HOST:PORT/client``).

```python
from hedgebridge.client import HedgebridgeClient

async with await HedgebridgeClient.connect("ws://127.0.0.1:8765/client", token) as client:
    result = await client.open("SIM-001", "EURUSD", "BUY", 0.1)        # OrderResult
    await client.close("SIM-001", position_id=result.position_id)
    async with await client.subscribe(["prices", "trades"], accounts=["SIM-001"]) as feed:
        async for push in feed:                                         # Push(topic, data)
            print(push.topic, push.data)
```

Errors the gateway answers with an ERROR frame are raised as ``ClientError(code, message, field)``.
``HedgebridgeClient.connect(url, token, reconnect=True)`` connects again after a connection ends and resumes
every subscription from the last (epoch, seq) it saw; ``subscription.items()`` also yields its notices
(``CaughtUp``, ``Resync``, ``Reconnected``).
"""

from .client import HedgebridgeClient
from .errors import ClientError, ConnectionLost, SlowSubscriber
from .legs import Leg, parse_leg
from .subscription import Notice, Reconnected, Subscription

__all__ = [
    "ClientError",
    "ConnectionLost",
    "HedgebridgeClient",
    "Leg",
    "Notice",
    "Reconnected",
    "SlowSubscriber",
    "Subscription",
    "parse_leg",
]
