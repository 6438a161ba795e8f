"""The hand-over from history to live events for one topic of one client, sans I/O.

The client's live feed is joined first; while the history (or the snapshot) is read, live events are kept
here. Then the replayed events go out in order, and ``finish`` releases the kept live events that the
history did not already contain, followed by the caught-up marker. From then on live events pass, and any
that the history already delivered (a live event the shared feed was still carrying when the replay read
it) is dropped by its sequence.

Events with a sequence (STREAM topics) are ordered and de-duplicated by it; events without one (snapshot
and latest-wins events, the CONSISTENCY status) are released in arrival order after the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CaughtUpMark:
    """The end of a topic's start: everything up to ``seq`` (None on a topic without sequences) was sent."""

    seq: int | None
    replayed: int


class BufferFull(Exception):
    """More live events waited during the hand-over than the client may have queued."""


class Handover(Generic[T]):
    """``after``: the client's cursor (events up to it are not sent again); ``limit``: live events kept at
    most while the history is read."""

    def __init__(self, after: int | None = None, *, limit: int = 10_000) -> None:
        self.floor = after or 0  # the highest sequence sent (or that the client had)
        self.numbered = after is not None
        self.limit = limit
        self.caught_up = False
        self.replayed_count = 0
        self._kept: list[tuple[int | None, T]] = []

    def resume_after(self, seq: int) -> None:
        """The client has every event up to ``seq`` (its cursor turned out to be valid)."""
        self.floor = max(self.floor, seq)
        self.numbered = True

    def live(self, seq: int | None, item: T) -> list[T]:
        """A live event: kept until ``finish``, then passed unless the history already sent it."""
        if not self.caught_up:
            if len(self._kept) >= self.limit:
                raise BufferFull(f"more than {self.limit} live events waited for the history")
            self._kept.append((seq, item))
            return []
        return [item] if self._fresh(seq) else []

    def replayed(self, seq: int | None, item: T) -> list[T]:
        """An event read from the history (in the stream's order)."""
        if self.caught_up:
            raise RuntimeError("the hand-over is finished: history comes before live events")
        if not self._fresh(seq):
            return []
        self.replayed_count += 1
        return [item]

    def finish(self, head: int | None) -> list[T | CaughtUpMark]:
        """The history was read up to ``head`` (the stream's last sequence when the reading started; None
        for a snapshot): the kept live events it does not cover, then the caught-up marker."""
        self.caught_up = True
        if head is not None:
            self.numbered = True
            self.floor = max(self.floor, head)
        out: list[T | CaughtUpMark] = [item for seq, item in self._kept if self._fresh(seq)]
        self._kept.clear()
        out.append(CaughtUpMark(self.floor if self.numbered else None, self.replayed_count))
        return out

    def _fresh(self, seq: int | None) -> bool:
        if seq is None:
            return True
        if seq <= self.floor:
            return False
        self.floor = seq
        return True
