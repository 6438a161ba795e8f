"""The fault suite's checker: pure functions over a recorded history (no I/O, no clock).

A ``History`` holds everything the run saw: every submit a client made and every answer it got, every command
a terminal read and every execution it made, the final state of every action, every event a stream client
received (with its notices: reconnects, RESYNCs) next to the stream's own history read at the end, and the
cache checks made after each fault. ``check`` returns the violations, one sentence each; an empty list means
the run kept every guarantee:

- one final outcome per accepted submit (never two different ones, never none);
- no execution twice (one fresh fill per actionId and account at most);
- nothing executed that its caller was told was rejected, expired or invalid, and every FILLED order executed;
- every action settled under its policy (its legs' outcomes agree with its state and with the terminals), and
  its final state is on the actions stream;
- no gap or duplicate in any resumed stream, unless the client was told (RESYNC);
- the cache converged after each fault.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

ORDER_FINAL = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "INVALID"})
NOT_EXECUTED = frozenset({"REJECTED", "EXPIRED", "INVALID"})
EXECUTED = frozenset({"FILLED", "PARTIALLY_FILLED"})
ACTION_FINAL = frozenset({"COMPLETED", "PARTIAL", "COMPENSATED", "FAILED", "REJECTED"})


@dataclass(frozen=True, slots=True)
class Submit:
    """A request a client sent: an order (``kind`` OPEN or CLOSE) or an action (``kind`` ACTION)."""

    action_id: str
    kind: str
    account: str = ""  # orders; an action's accounts are in its legs
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer a client got for ``action_id``: an order's status or an action's state."""

    action_id: str
    status: str
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Command:
    """A command a terminal read from the gateway."""

    account: str
    action_id: str
    type: str  # OPEN, CLOSE
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Execution:
    """What a terminal did with a command: ``fresh`` false when it answered an earlier execution again."""

    account: str
    action_id: str
    type: str
    status: str  # SUCCESS, FAILED
    fresh: bool = True
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class Leg:
    role: str  # ENTRY, EXIT, COMPENSATION
    account: str
    order_action_id: str
    status: str


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The last state a client learnt of an action."""

    action_id: str
    policy: str  # COMPENSATE, KEEP
    state: str
    legs: tuple[Leg, ...] = ()
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One event a stream client received on ``topic``, or a notice: ``notice`` RESYNC (events may be missing
    before it) or RECONNECTED (the client resumed from its cursor)."""

    client: str
    topic: str
    epoch: str | None = None
    seq: int | None = None
    notice: str = ""
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class CacheCheck:
    """Whether the cache agreed with the terminals after a fault (``detail`` says how it did not)."""

    fault: str
    converged: bool
    detail: str = ""


@dataclass
class History:
    submits: list[Submit] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    actions: list[ActionOutcome] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    reference: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # topic -> the stream's (epoch, seq)
    published: set[str] | None = None  # the actions whose final state the actions stream holds (None: not read)
    cache_checks: list[CacheCheck] = field(default_factory=list)


def check(history: History) -> list[str]:
    """Every violation of the guarantees in ``history`` (empty when there is none)."""
    return [
        *check_outcomes(history),
        *check_executions(history),
        *check_actions(history),
        *check_streams(history),
        *check_cache(history),
    ]


def _fresh_fills(executions: Iterable[Execution]) -> dict[tuple[str, str], list[Execution]]:
    fills: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for execution in executions:
        if execution.fresh and execution.status == "SUCCESS":
            fills[(execution.account, execution.action_id)].append(execution)
    return fills


def check_outcomes(history: History) -> list[str]:
    """One final outcome per accepted submit: the final answers of one actionId agree, and there is one."""
    answers: dict[str, list[str]] = defaultdict(list)
    for answer in history.answers:
        answers[answer.action_id].append(answer.status)
    problems = []
    for submit in history.submits:
        final_set = ORDER_FINAL if submit.kind != "ACTION" else ACTION_FINAL
        finals = sorted({s for s in answers.get(submit.action_id, []) if s in final_set})
        if not finals:
            seen = answers.get(submit.action_id, [])
            problems.append(f"{submit.kind} {submit.action_id}: no final outcome (answers: {seen or 'none'})")
        elif len(finals) > 1:
            problems.append(f"{submit.kind} {submit.action_id}: more than one final outcome: {', '.join(finals)}")
    return problems


def check_executions(history: History) -> list[str]:
    """No execution twice; no execution of what was answered REJECTED/EXPIRED/INVALID; a FILLED order executed."""
    problems = []
    fills = _fresh_fills(history.executions)
    for (account, action_id), done in sorted(fills.items()):
        if len(done) > 1:
            problems.append(f"{action_id} executed {len(done)} times on {account}")
    commanded = {(c.account, c.action_id) for c in history.commands}
    for execution in history.executions:
        if (execution.account, execution.action_id) not in commanded:
            problems.append(f"{execution.action_id} executed on {execution.account} without a command")
    finals: dict[str, str] = {}
    for answer in history.answers:
        if answer.status in ORDER_FINAL:
            finals.setdefault(answer.action_id, answer.status)
    for submit in history.submits:
        if submit.kind == "ACTION" or submit.action_id not in finals:
            continue
        status = finals[submit.action_id]
        executed = bool(fills.get((submit.account, submit.action_id)))
        if status in NOT_EXECUTED and executed:
            problems.append(f"{submit.action_id} was answered {status} but executed on {submit.account}")
        if status in EXECUTED and not executed:
            problems.append(f"{submit.action_id} was answered {status} but never executed on {submit.account}")
    return problems


def check_actions(history: History) -> list[str]:
    """Every action reached a final state allowed by its policy, its legs agree with that state, and each leg's
    outcome agrees with what its terminal did."""
    problems = []
    fills = _fresh_fills(history.executions)
    submitted = {s.action_id for s in history.submits if s.kind == "ACTION"}
    outcomes = {o.action_id: o for o in history.actions}
    for action_id in sorted(submitted - set(outcomes)):
        problems.append(f"action {action_id}: no state known")
    for outcome in history.actions:
        name = f"action {outcome.action_id} ({outcome.policy}, {outcome.state})"
        if outcome.state not in ACTION_FINAL:
            problems.append(f"{name}: not settled (code {outcome.code})")
            continue
        entries = [leg for leg in outcome.legs if leg.role == "ENTRY"]
        filled = [leg for leg in entries if leg.status in EXECUTED]
        compensations = {leg.account: leg for leg in outcome.legs if leg.role == "COMPENSATION"}
        if outcome.state == "COMPLETED" and len(filled) != len(entries):
            problems.append(f"{name}: a leg is not filled")
        if outcome.state == "PARTIAL" and outcome.policy != "KEEP":
            problems.append(f"{name}: PARTIAL is for the KEEP policy")
        if outcome.state in ("COMPENSATED",) and outcome.policy != "COMPENSATE":
            problems.append(f"{name}: compensated under KEEP")
        if outcome.state == "COMPENSATED":
            for leg in filled:
                closing = compensations.get(leg.account)
                if closing is None or closing.status not in EXECUTED:
                    problems.append(f"{name}: the filled leg {leg.order_action_id} was not closed again")
        if outcome.state == "REJECTED" and filled:
            problems.append(f"{name}: REJECTED with a filled leg")
        if history.published is not None and outcome.state != "REJECTED" and outcome.action_id not in history.published:
            problems.append(f"{name}: its final state is not on the actions stream")
        for leg in outcome.legs:
            executed = bool(fills.get((leg.account, leg.order_action_id)))
            if leg.status in EXECUTED and not executed:
                problems.append(f"{name}: leg {leg.order_action_id} is {leg.status} but never executed")
            if leg.status in NOT_EXECUTED | {"PENDING"} and executed:
                problems.append(f"{name}: leg {leg.order_action_id} is {leg.status} but executed on {leg.account}")
    return problems


def check_streams(history: History) -> list[str]:
    """No duplicate or reordering within an epoch, and no gap against the stream's own history between the
    first and last event a client received, except after a RESYNC (the client was told)."""
    problems = []
    by_stream: dict[tuple[str, str], list[Received]] = defaultdict(list)
    for item in history.received:
        by_stream[(item.client, item.topic)].append(item)
    for (client, topic), items in sorted(by_stream.items()):
        reference = history.reference.get(topic, [])
        last: tuple[str | None, int] | None = None
        told = False  # a RESYNC since the last event: a gap is announced
        for item in items:
            if item.notice == "RESYNC":
                told = True
                continue
            if item.notice or item.seq is None:
                continue
            if last is not None and last[0] == item.epoch:
                if item.seq <= last[1]:
                    problems.append(f"{client} {topic}: seq {item.seq} after {last[1]} (duplicate or out of order)")
                elif not told:
                    missing = [s for e, s in reference if e == item.epoch and last[1] < s < item.seq]
                    if missing:
                        problems.append(f"{client} {topic}: gap before seq {item.seq}: missed {missing[:5]}")
            elif last is not None and not told:
                problems.append(f"{client} {topic}: epoch changed {last[0]} -> {item.epoch} without a RESYNC")
            last = (item.epoch, item.seq)
            told = False
    return problems


def check_cache(history: History) -> list[str]:
    return [f"the cache did not converge after {c.fault}: {c.detail}" for c in history.cache_checks if not c.converged]
