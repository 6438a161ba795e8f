"""How topics are numbered and resumed, pure: where each topic's history is kept, whether a client's cursor
can still be honoured, which subjects a replay reads, and how far back "the last N events" starts.

Numbering (the design choice): an event of a STREAM topic is numbered by its **JetStream stream sequence**,
and the **stream's identity** (name and creation time, ``streams.epoch``) is the epoch. JetStream assigns the
sequence when it stores the event, once, whoever published it (a gateway for a terminal's report, an
executor for an order result, the coordinator, the monitor), after its de-duplication (a report sent twice is
stored and numbered once), on every replica of a cluster alike; it survives restarts of every gateway and the
move of a terminal to another gateway, and replay by sequence is what JetStream does. The sequence of a
topic (or of one account's part of it) grows but is not contiguous: the topic is a filtered view of the
stream. The alternative, a per-account sequence assigned by the gateway holding the terminal, needs a
counter stored outside the gateway and handed over with the terminal, is assigned before de-duplication
(so a repeated report leaves a hole or a duplicate), numbers nothing the terminal did not send (results,
action states, alerts), and still needs JetStream to replay from; it was not chosen.

Gaps the client cannot see are what this module checks: a cursor from another epoch, a sequence the stream
has not reached, or events after the cursor already removed (max age, per-subject limits, a purge).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from hedgebridge.protocol import errors, subjects
from hedgebridge.protocol.client import TOPIC_DELIVERY, Cursor, ResyncReason, Subscribe

from .client_rules import Refusal

MAX_FILTERS = 64  # beyond this many subjects a replay reads the topic's wildcard and filters in process


@dataclass(frozen=True, slots=True)
class Source:
    """Where a topic's events are kept: the stream and the wildcard subjects of the topic in it."""

    stream: str
    subjects: tuple[str, ...]


STREAM_SOURCES: dict[str, Source] = {
    "trades": Source(
        subjects.EVENTS_STREAM, tuple(subjects.event_any_account(kind) for kind in ("OPENED", "CLOSED", "MODIFIED"))
    ),
    "orders": Source(subjects.EVENTS_STREAM, (subjects.ALL_RESULTS,)),
    "actions": Source(subjects.EVENTS_STREAM, (subjects.ALL_ACTIONS,)),
    "consistency": Source(subjects.EVENTS_STREAM, (subjects.CONFLICTS,)),
    "alerts": Source(subjects.ALERTS_STREAM, (subjects.ALL_ALERTS,)),
}
SNAPSHOT_SOURCES: dict[str, Source] = {
    "positions": Source(subjects.SNAPSHOTS_STREAM, (subjects.event_any_account("POSITION_UPDATE"),)),
    "balances": Source(subjects.SNAPSHOTS_STREAM, (subjects.event_any_account("ACCOUNT_UPDATE"),)),
    "terminals": Source(subjects.SNAPSHOTS_STREAM, (subjects.ALL_STATUS,)),
}
assert {t for t, d in TOPIC_DELIVERY.items() if d == "STREAM"} == set(STREAM_SOURCES)
assert {t for t, d in TOPIC_DELIVERY.items() if d == "SNAPSHOT"} == set(SNAPSHOT_SOURCES)
# topics whose events belong to one account (named in the subject); the others are filtered by their data
_PER_ACCOUNT: dict[str, tuple[str, ...]] = {
    "prices": ("PRICE",),
    "trades": ("OPENED", "CLOSED", "MODIFIED"),
    "orders": (),
    "positions": ("POSITION_UPDATE",),
    "balances": ("ACCOUNT_UPDATE",),
    "terminals": (),
}


@dataclass(frozen=True, slots=True)
class History:
    """A stream's history as JetStream reports it: its epoch, oldest and newest sequence (an empty stream
    has ``first_seq == last_seq + 1``, or both 0 when it never held a message)."""

    epoch: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Why a cursor cannot be honoured: the RESYNC a client gets."""

    reason: ResyncReason
    message: str


def check_stream_request(frame: Subscribe, followed: Container[str]) -> Refusal | None:
    """What a stream-mode SUBSCRIBE (``resume`` or ``recent``) may not ask: a cursor for a topic it does not
    subscribe to or that has no sequence, or the start of a topic this connection already follows."""
    if not frame.stream_mode:
        return None
    for topic in frame.resume or {}:
        if topic not in frame.topics:
            return Refusal(errors.INVALID_FIELD, f"resume names {topic}, which topics does not", f"resume.{topic}")
        if TOPIC_DELIVERY[topic] != "STREAM":
            return Refusal(
                errors.INVALID_FIELD,
                f"{topic} has no sequence ({TOPIC_DELIVERY[topic]} delivery): subscribe to it without a cursor",
                f"resume.{topic}",
            )
    for i, topic in enumerate(frame.topics):
        if topic in followed:
            return Refusal(
                errors.INVALID_FIELD,
                f"{topic} is followed on this connection already: resuming or replaying it again is not "
                "supported yet (subscribe without resume and recent to add accounts)",
                f"topics[{i}]",
            )
    return None


def check_cursor(cursor: Cursor, history: History) -> Gap | None:
    """None when every event after ``cursor`` is still in the stream; else the gap."""
    if cursor.epoch != history.epoch:
        return Gap("EPOCH_CHANGED", f"the history {cursor.epoch} was replaced by {history.epoch}")
    if cursor.seq > history.last_seq:
        return Gap("UNKNOWN_SEQUENCE", f"sequence {cursor.seq} is beyond the stream's last, {history.last_seq}")
    if history.first_seq > cursor.seq + 1 and history.last_seq > cursor.seq:
        return Gap(
            "HISTORY_EXPIRED",
            f"events after {cursor.seq} were removed; the stream now starts at {history.first_seq}",
        )
    return None


def too_far_behind(pending: int, replay_max: int) -> Gap | None:
    """A resume that would replay more than ``replay_max`` events is answered as a gap."""
    if pending > replay_max:
        return Gap("TOO_FAR_BEHIND", f"{pending} events to replay, more than this gateway replays ({replay_max})")
    return None


def subject_account(topic: str, subject: str) -> str | None:
    """The account an event of a per-account topic belongs to, read from its subject (None for the shared
    topics, whose events are filtered by their data)."""
    if topic not in _PER_ACCOUNT:
        return None
    parts = subject.split(".")
    if topic == "orders":
        return parts[3] if len(parts) == 4 else None
    return parts[2] if len(parts) >= 4 else None


def replay_subjects(topic: str, source: Source, accounts: frozenset[str] | None) -> tuple[str, ...]:
    """The subjects a replay of ``topic`` for ``accounts`` (None: every account) reads: one per account and
    kind when they are few, else the topic's wildcards (the events are then filtered in process)."""
    if accounts is None or topic not in _PER_ACCOUNT:
        return source.subjects
    if topic == "orders":
        exact = tuple(subjects.result(a) for a in sorted(accounts))
    elif topic == "terminals":
        exact = tuple(subjects.status(a) for a in sorted(accounts))
    else:
        exact = tuple(subjects.event(a, kind) for a in sorted(accounts) for kind in _PER_ACCOUNT[topic])
    return exact if 0 < len(exact) <= MAX_FILTERS else source.subjects


class RecentSearch:
    """Where "the last ``wanted`` events" of a topic start, found by counting: a window back from the stream's
    head grows fourfold until it holds ``wanted`` events of the topic, reaches the stream's start or
    ``scan_max`` events. ``start`` is the window's first sequence; ``counted`` the events of the topic the
    probe found from there."""

    def __init__(self, history: History, wanted: int, scan_max: int) -> None:
        self.history = history
        self.wanted = wanted
        self.scan_max = scan_max
        self.window = max(wanted * 2, 16)
        self.done = wanted == 0 or history.last_seq < max(history.first_seq, 1)

    @property
    def oldest(self) -> int:
        return max(self.history.first_seq, 1, self.history.last_seq - self.scan_max + 1)

    @property
    def start(self) -> int:
        return max(self.oldest, self.history.last_seq - self.window + 1)

    def counted(self, pending: int) -> None:
        if pending >= self.wanted or self.start <= self.oldest:
            self.done = True
        else:
            self.window *= 4
