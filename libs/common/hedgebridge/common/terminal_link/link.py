"""The interface of the terminal-link family (``Delivery``, what handing over a command came to, is in the
pure ``rules``): what the bus side (``bus_side.py``) needs from "a link to one
terminal", whatever holds it (a gateway's WebSocket session, the MT5 bridge's attachment to its terminal).

A holder implements ``TerminalLink`` structurally (no base class to inherit): the bus side asks it whether it
takes commands, waits until it is ready, hands it each command, asks it for snapshots and tells it when a newer
connection elsewhere took its account.
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.msg import Msg

from hedgebridge.protocol import Command, TerminalStatus

from .rules import Delivery


class TerminalLink(Protocol):
    """A live link to one terminal, for one account, held by this process."""

    @property
    def account_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def connected_at(self) -> float:
        """When the link was made, in seconds since the epoch (the hand-over compares it)."""
        ...

    @property
    def version(self) -> int:
        """The protocol version the terminal speaks (TERMINAL_STATUS ``protocolVersion``)."""
        ...

    @property
    def remote(self) -> str:
        """Where the terminal is (TERMINAL_STATUS ``remote``)."""
        ...

    def unavailable(self) -> str | None:
        """None while the link takes commands; else the reason a command is refused with."""
        ...

    async def wait_ready(self) -> bool:
        """Until the link may be written to (False: it did not become ready in time)."""
        ...

    async def deliver(self, command: Command, msg: Msg) -> Delivery:
        """Hand ``command`` (from ``msg``, whose headers carry its trace context) to the terminal."""
        ...

    async def request_sync(self, reason: str) -> None:
        """Ask the terminal for fresh snapshots (``hb.gw.sync``)."""
        ...

    async def replaced(self, by: TerminalStatus) -> None:
        """A newer connection elsewhere (``by``) took the account: stop holding it."""
        ...
