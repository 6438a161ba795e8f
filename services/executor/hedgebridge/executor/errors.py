"""Executor faults: how a delivery ends when it does not end with a DeliveryAck."""

from __future__ import annotations

from hedgebridge.common.bus import NatsUnreachable
from hedgebridge.common.faults import Final, Retryable
from hedgebridge.protocol import errors as codes

__all__ = ["AccountOffline", "DeliveryUnconfirmed", "InvalidOrder", "NatsUnreachable"]


class AccountOffline(Retryable):
    """No gateway holds the account for the whole offline grace: the command was not sent (NOT_SENT)."""

    code = codes.ACCOUNT_OFFLINE


class DeliveryUnconfirmed(Retryable):
    """A gateway took the command but did not confirm in time: the terminal may have it (OUTCOME_UNKNOWN)."""

    code = codes.DELIVERY_FAILED


class InvalidOrder(Final):
    """The request failed validation (INVALID): retrying it unchanged fails again."""

    code = codes.INVALID_REQUEST
