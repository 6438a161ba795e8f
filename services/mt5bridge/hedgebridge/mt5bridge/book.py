"""Which hedge-system positionId and actionId each open position ticket belongs to, kept in a file.

The order comment carries only hashes of them, so the bridge remembers the ids themselves, one JSON line
``[ticket, positionId, actionId]`` per opened position (as the EA keeps ``book_<login>.jsonl``), so that
POSITION_UPDATE names them after a restart and the executor's reconciliation finds an OPEN by its actionId.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from hedgebridge.common import logs

log = logs.get("mt5bridge")


class Book:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[int, tuple[str, str | None]] = {}

    def load(self, open_tickets: Iterable[int]) -> None:
        """Read the file, keep the tickets still open, and write it back compacted."""
        still_open = set(open_tickets)
        self.entries = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                ticket, position_id, action_id = json.loads(line)
                ticket = int(ticket)
            except (ValueError, TypeError):
                continue
            if ticket in still_open and isinstance(position_id, str):
                self.entries[ticket] = (position_id, action_id if isinstance(action_id, str) and action_id else None)
        self._rewrite()

    def remember(self, ticket: int, position_id: str, action_id: str | None) -> None:
        self.entries[ticket] = (position_id, action_id)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps([str(ticket), position_id, action_id or ""]) + "\n")
        except OSError as exc:
            log.warning("cannot write the position book", path=str(self.path), error=str(exc))

    def forget(self, ticket: int) -> None:
        self.entries.pop(ticket, None)

    def ticket_of(self, position_id: str) -> int | None:
        for ticket, (known, _) in self.entries.items():
            if known == position_id:
                return ticket
        return None

    def _rewrite(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = "".join(json.dumps([str(t), p, a or ""]) + "\n" for t, (p, a) in self.entries.items())
            self.path.write_text(text, encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write the position book", path=str(self.path), error=str(exc))
