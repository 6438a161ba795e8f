"""Executor faults, each mapped to the order status the caller receives."""

from __future__ import annotations

from hedgebridge.common.faults import Final, Retryable
from hedgebridge.protocol import errors as codes


class AccountOffline(Retryable):
    """No gateway holds the account: the command was not sent (status NOT_SENT)."""

    code = codes.ACCOUNT_OFFLINE


class DeliveryUnconfirmed(Retryable):
    """The gateway did not confirm delivery in time: the terminal may have the command (OUTCOME_UNKNOWN)."""

    code = codes.DELIVERY_FAILED


class InvalidOrder(Final):
    """The request failed validation (status INVALID)."""

    code = codes.INVALID_REQUEST
