"""The terminal-link family: the bus side of a terminal, written once for every holder of terminals.

- ``link.py``: the interface, ``TerminalLink`` (what the bus side needs from a link to one terminal);
- ``rules.py``: the pure decisions (what a delivery came to, the ack of a command, the hand-over,
  TERMINAL_STATUS, the report id);
- ``bus_side.py``: ``TerminalBus``, which drives NATS for the links a process holds;
- ``commands.py``: ``CommandRouter``, the command subscriptions of those links through one router (a link's
  interest at the server, no nats-py queue or task of its own).

The adapters live with their holders: the gateway's WebSocket sessions (``gateway/terminal_link_ws.py``) and
the MT5 bridge's attachment to its terminal (``mt5bridge/terminal_link_mt5.py``). A new kind of terminal is a
new adapter that implements ``TerminalLink`` and is held by a ``TerminalBus``.
"""

from .bus_side import TerminalBus, refuse_late
from .link import TerminalLink
from .rules import REPLACED, Delivery, fenced, report_id

__all__ = ["REPLACED", "Delivery", "TerminalBus", "TerminalLink", "fenced", "refuse_late", "report_id"]
