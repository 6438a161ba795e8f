"""What ``hedgebridge up`` prints while the stack runs: terminals coming and going, orders filled or failed."""

from __future__ import annotations

import contextlib

from nats.aio.msg import Msg

from hedgebridge.protocol import ClosedEvent, OpenedEvent, ProtocolError, TerminalStatus, unpack, unpack_event

from .output import say


class Activity:
    """Prints what happens on the stack: terminals coming and going, orders filled or failed."""

    def __init__(self) -> None:
        self.online: set[str] = set()

    async def on_status(self, msg: Msg) -> None:
        with contextlib.suppress(ProtocolError):
            status = unpack(msg.data, TerminalStatus)
            if status.status == "CONNECTED":
                self.online.add(status.account_id)
                say(f"  terminal {status.account_id} connected ({status.gateway_id})")
            else:
                self.online.discard(status.account_id)
                say(f"  terminal {status.account_id} disconnected: {status.reason}")

    async def on_result(self, msg: Msg) -> None:
        with contextlib.suppress(ProtocolError):
            event = unpack_event(msg.data)
            if isinstance(event, OpenedEvent):
                if event.status == "SUCCESS":
                    lots = f"{event.volume:g} lots " if event.volume else ""
                    say(f"  OPENED   {event.account_id} ticket {event.mt_ticket} {lots}@ {event.price}")
                else:
                    say(f"  OPEN FAILED  {event.account_id}: {event.error_message} ({event.error_code})")
            elif isinstance(event, ClosedEvent):
                if event.status == "SUCCESS":
                    say(f"  CLOSED   {event.account_id} ticket {event.mt_ticket} @ {event.price} profit {event.profit}")
                else:
                    say(f"  CLOSE FAILED {event.account_id}: {event.error_message} ({event.error_code})")
