"""The SDK's errors: what the gateway answered with an ERROR frame, and the SDK's own conditions."""

from __future__ import annotations

from hedgebridge.protocol import ErrorMessage

CONNECTION_LOST = "CONNECTION_LOST"  # SDK-side code: the connection ended before the answer arrived
SLOW_SUBSCRIBER = "SLOW_SUBSCRIBER"  # SDK-side code: a subscription's queue overflowed
UNEXPECTED_REPLY = "UNEXPECTED_REPLY"  # SDK-side code: the gateway answered with another kind of result


class ClientError(Exception):
    """An ERROR frame from the gateway (``code`` from the protocol's error registry, ``field`` the offending
    field's path, e.g. ``body.legs[1].accountId``), or one of the SDK's own conditions (``CONNECTION_LOST``,
    ``SLOW_SUBSCRIBER``, ``UNEXPECTED_REPLY``)."""

    def __init__(self, code: str, message: str, field: str | None = None, ref_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field
        self.ref_id = ref_id

    @classmethod
    def from_frame(cls, frame: ErrorMessage) -> ClientError:
        return cls(frame.code, frame.message, frame.field, frame.ref_id)


class ConnectionLost(ClientError):
    """The connection ended (``close_code``/``close_reason`` as the gateway sent them, e.g. 1008 "slow
    consumer", 1001 "gateway shutting down")."""

    def __init__(self, close_code: int | None, close_reason: str) -> None:
        super().__init__(CONNECTION_LOST, f"connection closed ({close_code} {close_reason})".strip())
        self.close_code = close_code
        self.close_reason = close_reason


class SlowSubscriber(ClientError):
    def __init__(self, limit: int) -> None:
        super().__init__(SLOW_SUBSCRIBER, f"more than {limit} events waited unread; the subscription ended")
