"""The three kinds of fault a service distinguishes (each service's errors.py derives from these).

- Retryable: transient (a server unreachable, a timeout); the same operation may succeed later.
- Final: this request cannot succeed (invalid input, refused order); report it, do not retry.
- Fatal: the service cannot run (bad configuration, missing binary); exit with a message.
"""

from __future__ import annotations


class ServiceFault(Exception):
    """Base of all service faults. ``code`` is an error code from the protocol registry."""

    code: str = "INTERNAL"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class Retryable(ServiceFault):
    pass


class Final(ServiceFault):
    pass


class Fatal(ServiceFault):
    pass
