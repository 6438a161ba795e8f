"""Every NATS subject hedgebridge uses. No other module spells a subject.

Layout (``<account>`` is a token-safe account id, see ``messages.AccountId``)::

    hb.ea.<account>.cmd            commands for a terminal; the gateway holding its connection replies
                                   with a DeliveryAck (no responders: nobody holds it, not sent)
    hb.ea.<account>.evt.<type>     events a terminal reported (msgpack of the EA message), type lowercase
    hb.ea.<account>.status         TERMINAL_STATUS: connected / disconnected
    hb.exec.order                  order requests (request/reply), served by the executors' queue group
    hb.monitor.status              request/reply: the monitor's live picture
"""

from __future__ import annotations

import re

PREFIX = "hb"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

ORDER_REQUEST = f"{PREFIX}.exec.order"
EXECUTOR_QUEUE = "hb-executor"
MONITOR_STATUS = f"{PREFIX}.monitor.status"
ALL_EVENTS = f"{PREFIX}.ea.*.evt.>"
ALL_STATUS = f"{PREFIX}.ea.*.status"


def _account(account_id: str) -> str:
    if not _TOKEN.match(account_id):
        raise ValueError(f"account id {account_id!r} is not a valid subject token")
    return account_id


def command(account_id: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.cmd"


def event(account_id: str, message_type: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.evt.{message_type.lower()}"


def status(account_id: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.status"


def account_of(subject: str) -> str:
    """The account id inside an ``hb.ea.<account>.…`` subject."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != PREFIX or parts[1] != "ea":
        raise ValueError(f"{subject!r} is not an account subject")
    return parts[2]
