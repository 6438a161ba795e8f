"""Which hedge-system positionId and actionId each position belongs to, kept in a file.

A position is named by its identifier (POSITION_IDENTIFIER, the deals' ``position_id``, ``mtTicket`` on the
wire), which never changes, not by its ticket, which can (a swap charged by re-opening the position). The order
comment carries only hashes of the ids, so the bridge remembers the ids themselves, one JSON line
``[identifier, positionId, actionId]`` per opened position (as the EA keeps ``book_<login>.jsonl``), so that
POSITION_UPDATE names them after a restart and the executor's reconciliation finds an OPEN by its actionId.

An entry stays until its position's close is reported: a position that closed while the bridge was stopped is
still in the book at the next start, and the outside-close detection reports it then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hedgebridge.common import logs

log = logs.get("mt5bridge")


class Book:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[int, tuple[str, str | None]] = {}

    def load(self) -> None:
        """Read the file (every entry: a position that closed meanwhile is reported, then forgotten) and write it
        back compacted."""
        self.entries = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                identifier, position_id, action_id = json.loads(line)
                identifier = int(identifier)
            except (ValueError, TypeError):
                continue
            if identifier > 0 and isinstance(position_id, str):
                action = action_id if isinstance(action_id, str) and action_id else None
                self.entries[identifier] = (position_id, action)
        self._rewrite()

    def remember(self, identifier: int, position_id: str, action_id: str | None) -> None:
        self.entries[identifier] = (position_id, action_id)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps([str(identifier), position_id, action_id or ""]) + "\n")
        except OSError as exc:
            log.warning("cannot write the position book", path=str(self.path), error=str(exc))

    def forget(self, identifier: int) -> None:
        """The position's close is reported: it leaves the book, in the file too (the next start must not report
        it again)."""
        if self.entries.pop(identifier, None) is not None:
            self._rewrite()

    def identifier_of(self, position_id: str) -> int | None:
        for identifier, (known, _) in self.entries.items():
            if known == position_id:
                return identifier
        return None

    def _rewrite(self) -> None:
        """The whole book, written to a new file that then replaces the old one."""
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = "".join(json.dumps([str(i), p, a or ""]) + "\n" for i, (p, a) in self.entries.items())
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot write the position book", path=str(self.path), error=str(exc))
