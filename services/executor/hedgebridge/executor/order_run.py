"""One order's run, as a pure object: its state, attempt count, deadlines and lease (no I/O).

An ``OrderRun`` is fed events (the delivery ack of a command or a SYNC, the terminal's report, a snapshot, a
wake-up after a pause or a wait, the book's volume, the record written, the lease timer) with the current time
(``time.perf_counter()`` seconds) and returns the actions to perform, in order. The service performs them and
feeds the outcome back; nothing here imports asyncio, nats or redis, so every path runs in a unit test.

The run sends its command (again while no gateway holds the account, until the time-to-live is over: EXPIRED,
also when it waited in its account's queue that long: ``expire``; again after a retryable refusal, with backoff,
up to ``max_attempts``), waits for the report until the order timeout, answers the caller, then has the result
recorded. An order whose outcome is unknown (delivery uncertain, no report in time, the trade server unsure) is
never sent again: after its record it is reconciled from the late report or from a snapshot that answers a SYNC
sent after the command. A run taken over from a replica that died starts at that reconciliation.

The terminal back on a new session (``offer_session``) while the report of a command delivered on an older one
is awaited: the terminal handled (or dropped) the command before that session began, so the run asks it for a
snapshot at once and answers with the result reconciled from it; a report that comes first is judged as usual.

Lease lost: once the order is older than ``lease_after_s`` another replica may have taken it over (its owner
looked silent: paused longer than the lease), so every (re)send from then on (a first send: from ``lease_after_s +
queued_grace_s``, or once a lease was put on it) is preceded by ``HoldLease`` and made after ``on_lease_held``.
``on_lease_lost`` (the check failed, or a renewal did) stops the run: it never sends again and records nothing (the
new owner reconciles, records and answers ``reply_to``: ``Answer.handed_over``); a batch item is answered IN_FLIGHT.
A check and the send after it are not one step, so every send carries its fence (``notAfter``, ``fence``); one the
terminal link refused past it is a send that did not happen: it is asked again, under the lease held again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from hedgebridge.protocol import (
    FINAL_STATUSES,
    DeliveryAck,
    ErrorMessage,
    OrderCommand,
    OrderResult,
    PositionUpdate,
    Report,
    errors,
    subjects,
    type_name,
)

from . import fence, lifecycle, orders
from . import run_actions as act
from .lifecycle import OrderState, Trigger
from .run_phases import Limits, Phase

__all__ = ["NOT_CONFIRMED", "Limits", "OrderRun", "Phase"]

NOT_CONFIRMED = "the gateway did not confirm delivery in time; reconciling (never resent)"


@dataclass(slots=True)
class OrderRun:
    """One order from its first send to its recorded result (or to giving up reconciling it)."""

    command: OrderCommand
    started: float  # when the request came (perf_counter seconds)
    timeout_s: float  # the order timeout, from ``started``
    ttl_s: float  # how long to keep asking while no gateway holds the account
    limits: Limits
    new_id: Callable[[], str] = orders.new_id
    reply_to: str = ""  # the caller's inbox (a taken-over order answers its first caller here)
    rounded_from: float | None = None  # the request's volume, when the command's was rounded down to the step
    recorded_at: datetime | None = None  # the record's time: the fence of a send with no lease held (``fence``)
    state: OrderState = OrderState.ACCEPTED
    phase: Phase = Phase.IDLE
    attempt: int = 0
    leased: bool = False
    lease_lost: bool = False
    outcome_unknown: bool = False
    listening: bool = False  # whether a report for this order is taken
    report: Report | None = None
    refusal: ErrorMessage | None = None  # the terminal's ERROR about the command: it did not execute it
    sync_id: str | None = None
    snapshot: PositionUpdate | None = None
    result: OrderResult | None = None
    _taken_over: bool = False
    _session: str = ""  # the gateway session the command was delivered on
    _back_on: str | None = None  # a newer session of the terminal, seen while waiting for the report
    _early: bool = False  # reconciling from the new session's snapshot before the timeout
    _fresh_send: bool = False  # the send after HoldLease starts a new attempt (not a delivery re-ask)
    _send_started: float = 0.0
    _pause: float = 0.01
    _delivered_at: float = 0.0
    _deadline: float = 0.0
    _asked: float = 0.0
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.command.action_id is not None
        self.fields = {"account": self.command.account_id, "action": self.action_id, "type": type_name(self.command)}

    @property
    def action_id(self) -> str:
        assert self.command.action_id is not None
        return self.command.action_id

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @classmethod
    def taken_over(cls, command: OrderCommand, reply_to: str, limits: Limits, now: float) -> OrderRun:
        """A run for an order whose owner is gone: it starts at reconciliation (see ``begin_reconcile``)."""
        run = cls(command, now, 0.0, 0.0, limits, reply_to=reply_to, state=OrderState.OUTCOME_UNKNOWN)
        run._taken_over = True
        run.outcome_unknown = True
        return run

    # --- events --------------------------------------------------------------------------------------------

    def start(self, now: float) -> list[act.Action]:
        """Send the command (the first attempt; after HoldLease if it waited long or a lease was put on it)."""
        return self._send_held(now, fresh=True, grace_s=0.0 if self.leased else self.limits.queued_grace_s)

    def expire(self, now: float, why: str) -> list[act.Action]:
        """Nothing was sent, the time-to-live is over (the account unreachable, or queued that long): EXPIRED."""
        self.state, self.listening = lifecycle.advance(self.state, Trigger.TTL_OVER), False
        log = act.Log("info", "the order's time-to-live ran out before it was sent", {"why": why, **self.fields})
        message = f"{why}; not sent"
        result = orders.failure("EXPIRED", errors.EXPIRED, message, self.command, self._ms(now), state=self.state)
        return [log, *self._conclude(result, unknown=False)]

    def offer_report(self, report: Report) -> bool:
        """A terminal report for this actionId; True when the run takes it (wake a Wait then)."""
        if not self.listening or self.report is not None or not orders.matches(self.command, report):
            return False
        self.report = report
        return True

    def offer_refusal(self, error: ErrorMessage) -> bool:
        """A terminal's ERROR about this run's command (not executed); True when the run takes it (wake a Wait)."""
        taken = self.report is not None or self.refusal is not None
        if not self.listening or taken or not orders.refers_to(error, self.command):
            return False
        self.refusal = error
        return True

    def offer_snapshot(self, snapshot: PositionUpdate) -> bool:
        """A snapshot; True when it answers the SYNC the run waits for."""
        if self.sync_id is None or snapshot.sync_id != self.sync_id or self.snapshot is not None:
            return False
        self.snapshot = snapshot
        return True

    def offer_session(self, session_id: str) -> bool:
        """The account's terminal connected on a session; True when it is not the one the command awaiting its
        report was delivered on (wake a Wait then: the run reconciles from the new session)."""
        waiting = self.phase is Phase.AWAITING_REPORT and self.report is None and not self._early
        if not waiting or not self._session or session_id == self._session:
            return False
        self._back_on = session_id
        return True

    def on_delivery(self, ack: DeliveryAck | None, now: float) -> list[act.Action]:
        """The gateway's DeliveryAck (None: no responders, nothing was sent)."""
        reached = ack is not None and (ack.delivered or ack.uncertain)
        if self.phase is Phase.SYNCING:
            if not reached:  # a SYNC is asked once: no terminal, no snapshot this round
                return self._no_snapshot(now)
            self.phase, self._asked = Phase.AWAITING_SNAPSHOT, now
            return [act.Observe("delivery", now - self._send_started), act.Wait(self._snapshot_until())]
        assert self.phase is Phase.DELIVERING
        if ack is None or not reached:
            if now - self._send_started + self._pause > self.ttl_s:
                return self.expire(now, f"account {self.command.account_id} unreachable for {self.ttl_s:g}s")
            self.phase = Phase.DELIVERY_PAUSE
            pause, self._pause = self._pause, min(self._pause * 2, 0.2)
            return [*fence.refused(ack, self.fields), act.Pause(pause)]
        observed = act.Observe("delivery", now - self._send_started)
        if ack.uncertain:
            self.state = lifecycle.advance(self.state, Trigger.DELIVERY_UNCERTAIN)
            log = act.Log("warning", "delivery uncertain", {"reason": ack.reason, **self.fields})
            return [observed, log, *self._unknown(errors.DELIVERY_FAILED, ack.reason, now)]
        self.state = lifecycle.advance(self.state, Trigger.DELIVERED)
        self.phase, self._delivered_at, self._session = Phase.AWAITING_REPORT, now, ack.session_id
        return [observed, *self._await_report(now)]

    def on_unconfirmed(self, now: float) -> list[act.Action]:
        """No DeliveryAck within the delivery timeout: a gateway may have passed the command on."""
        if self.phase is Phase.SYNCING:
            return self._no_snapshot(now)
        assert self.phase is Phase.DELIVERING
        self.state = lifecycle.advance(self.state, Trigger.DELIVERY_UNCERTAIN)
        log = act.Log("warning", "delivery not confirmed", self.fields)
        return [log, *self._unknown(errors.DELIVERY_FAILED, NOT_CONFIRMED, now)]

    def on_wake(self, now: float, wall: datetime) -> list[act.Action]:
        """After a Pause, or a Wait that ended (an offer taken, or its deadline)."""
        phase = self.phase
        if phase is Phase.DELIVERY_PAUSE:
            return self._send_held(now, fresh=False)
        if phase is Phase.RETRY_PAUSE:
            self.attempt += 1
            self.command = msgspec.structs.replace(self.command, attempt=self.attempt, timestamp=wall)
            return self._send_held(now, fresh=True)
        if phase is Phase.AWAITING_REPORT:
            return self._await_report(now)
        if phase is Phase.AWAITING_SNAPSHOT:
            if self.snapshot is not None:
                self.sync_id = None
                self.phase = Phase.READING_VOLUME
                return [act.Observe("sync", now - self._asked), act.ReadVolume(self.command)]
            if self.report is None and now < self._snapshot_until():
                return [act.Wait(self._snapshot_until())]
            return self._no_snapshot(now)
        if phase is Phase.RECONCILE_PAUSE:
            return self._reconcile_step(now)
        raise AssertionError(f"no wake-up expected in {phase}")

    def on_volume(self, expected: float | None, now: float) -> list[act.Action]:
        """The book's volume of the closed position: reconcile from the snapshot."""
        assert self.phase is Phase.READING_VOLUME
        assert self.snapshot is not None
        outcome = lifecycle.reconcile(self.command, self.snapshot.positions, expected)
        self.snapshot = None
        if self._early:  # the caller still waits: it gets the reconciled result
            self.state = lifecycle.advance(self.state, Trigger.RECONCILED)
            result = orders.reconciled_result(self.command, outcome, self.state, self.attempt + 1, self._ms(now))
            actions = self._reconciled(result)  # the result as recorded (noting a rounded volume)
            return [act.Answer(self.result or result), *actions]
        return self._reconciled(orders.reconciled_result(self.command, outcome, OrderState.RECONCILED, 1))

    def on_recorded(self, now: float) -> list[act.Action]:
        """The record is written: a known outcome ends the run, an unknown one is reconciled."""
        assert self.phase is Phase.RECORDING
        if self.outcome_unknown and self.state is not OrderState.RECONCILED:
            return self.begin_reconcile(now)
        return self._end()

    def begin_reconcile(self, now: float) -> list[act.Action]:
        """Keep a lease while reconciling (it can take long); a report that came meanwhile is judged first."""
        self.leased = True
        self.listening = True
        self._deadline = now + self.limits.reconcile_timeout_s
        self._pause = 0.1
        return [act.PutLease(self.command.account_id), *self._reconcile_step(now)]

    def on_lease_held(self, now: float, lease_until: float | None = None) -> list[act.Action]:
        """The lease still holds (renewed by compare-and-set, until ``lease_until`` at least): send now, fenced."""
        assert self.phase is Phase.HOLDING_LEASE
        return self._resend(now, fresh=self._fresh_send, until=fence.under_lease(self.limits, lease_until))

    def on_lease_lost(self, now: float) -> list[act.Action]:
        """Another replica took the order over: stop at once, never send again, record nothing (it records)."""
        if self.phase is Phase.DONE:
            return []
        unanswered = self.result is None and not self._taken_over
        self.phase, self.listening, self.sync_id = Phase.DONE, False, None
        self.leased, self.lease_lost = False, True
        fields = {"action": self.action_id, "account": self.command.account_id}
        actions: list[act.Action] = [act.Log("warning", "lease lost: another replica took the order over", fields)]
        if unanswered:
            follows = subjects.result(self.command.account_id)
            message = f"another executor took this order over; its reconciled result follows on {follows}"
            result = orders.failure(
                "IN_FLIGHT", errors.IN_FLIGHT, message, self.command, self._ms(now), state=self.state
            )
            actions.append(act.Answer(result, handed_over=bool(self.reply_to)))
        return [*actions, act.Done()]

    def on_lease_timer(self) -> list[act.Action]:
        """The order has run ``lease_after_ms``: put a lease on it (once)."""
        if self.phase is Phase.DONE or self.leased:
            return []
        self.leased = True
        return [act.PutLease(self.command.account_id)]

    def on_renew(self) -> list[act.Action]:
        """The lease upkeep's tick: renew the lease the run holds."""
        return [act.PutLease(self.command.account_id)] if self.leased and self.phase is not Phase.DONE else []

    def release_lease(self) -> bool:
        """The record of the final result is written: whether a lease is to be dropped (it is, here)."""
        held, self.leased = self.leased, False
        return held

    # --- steps ---------------------------------------------------------------------------------------------

    def _send_held(self, now: float, *, fresh: bool, grace_s: float = 0.0) -> list[act.Action]:
        if now - self.started < self.limits.lease_after_s + grace_s:
            return self._resend(now, fresh=fresh, until=fence.unleased(self.limits, self.recorded_at))
        self.phase, self._fresh_send, self.leased = Phase.HOLDING_LEASE, fresh, True
        return [act.HoldLease(self.command.account_id)]

    def _resend(self, now: float, *, fresh: bool, until: datetime | None) -> list[act.Action]:
        """Send, fenced ``until`` (the command's notAfter; None: none)."""
        if fresh:  # a new attempt: its own delivery clock and report slot
            self.listening, self.report, self.refusal = True, None, None
            self._send_started, self._pause = now, 0.01
        self.phase = Phase.DELIVERING  # (else asking again for the same delivery)
        command = self.command if until is None else msgspec.structs.replace(self.command, not_after=until)
        return [act.Send(command, self._delivery_s(self.timeout_s))]

    def _delivery_s(self, timeout_s: float) -> float:
        return min(self.limits.delivery_timeout_s, timeout_s)

    def _await_report(self, now: float) -> list[act.Action]:
        report = self.report
        if report is not None:
            return [act.Observe("report", now - self._delivered_at), *self._judge(report, now)]
        if self.refusal is not None:  # a definite answer: the terminal did not execute the command
            self.state, self.listening = lifecycle.advance(self.state, Trigger.REJECTED), False
            result = orders.refused(self.command, self.refusal, self.state, self.attempt + 1, self._ms(now))
            log = act.Log("warning", "the terminal refused the command", {"code": self.refusal.code, **self.fields})
            return [log, *self._conclude(result, unknown=False)]
        deadline = self.started + self.timeout_s
        if self._back_on is not None and now < deadline:  # the session that got the command is gone
            self._back_on, self._early = None, True
            self.sync_id, self.snapshot = self.new_id(), None
            self.phase, self._send_started = Phase.SYNCING, now
            log = act.Log("info", "terminal back on a new session: reconciling now", self.fields)
            return [log, act.SendSync(self.command.account_id, self.sync_id, self._delivery_s(self.timeout_s))]
        if now < deadline:
            return [act.Wait(deadline)]
        self.state = lifecycle.advance(self.state, Trigger.TIMED_OUT)
        log = act.Log("warning", "no result in time", {"timeout_s": self.timeout_s, **self.fields})
        message = f"sent, but no result within {self.timeout_s:g}s: reconciling (never resent)"
        return [log, *self._unknown(errors.OUTCOME_UNKNOWN, message, now)]

    def _judge(self, report: Report, now: float) -> list[act.Action]:
        command = self.command
        verdict = lifecycle.judge(command, report, self.attempt, self.limits.max_attempts)
        self.state = lifecycle.advance(self.state, verdict.trigger)
        if verdict.trigger is Trigger.RETRY:
            delay = lifecycle.retry_delay_s(self.attempt, self.limits.retry_base_ms)
            fields = {"retcode": report.error_code, "attempt": self.attempt + 1, "delay_s": delay, **self.fields}
            self.phase = Phase.RETRY_PAUSE
            return [act.Log("info", "retrying", fields), act.Pause(delay)]
        result = orders.result_of(command, report, verdict, self.state, self.attempt + 1, self._ms(now))
        if self.state is OrderState.OUTCOME_UNKNOWN:  # the trade server itself did not know (timeout, error)
            log = act.Log("warning", "trade server outcome unknown", {"retcode": report.error_code, **self.fields})
            return [log, *self._conclude(result, unknown=True)]
        self.listening = False
        fields = {"status": result.status, "elapsed_ms": round(result.elapsed_ms, 3), **self.fields}
        return [act.Log("info", "order done", fields), *self._conclude(result, unknown=False)]

    def _unknown(self, code: str, message: str, now: float) -> list[act.Action]:
        result = orders.failure(
            "OUTCOME_UNKNOWN", code, message, self.command, self._ms(now), state=self.state, attempts=self.attempt + 1
        )
        return self._conclude(result, unknown=True)

    def _conclude(self, result: OrderResult, *, unknown: bool) -> list[act.Action]:
        """Answer first; the record is written right after (a repeat waits for it)."""
        result = orders.noted(self.rounded_from, orders.volume_of(self.command), result)
        self.result, self.outcome_unknown = result, unknown
        self.phase = Phase.RECORDING
        return [act.Answer(result), act.Record(self.state, result, keep_lease=unknown)]

    def _reconcile_step(self, now: float) -> list[act.Action]:
        if now >= self._deadline:
            self.listening = False
            log = act.Log("error", "order still unreconciled", self.fields)
            return [log, *self._end()]
        if self.refusal is not None:
            result = orders.refused(self.command, self.refusal, OrderState.RECONCILED, 1, 0.0)
            return self._reconciled(msgspec.structs.replace(result, reconciled=True))
        report = self.report
        if report is not None:
            verdict = lifecycle.judge(self.command, report, 0, 1)
            result = orders.result_of(self.command, report, verdict, OrderState.RECONCILED, 1, 0.0)
            if result.status in FINAL_STATUSES:
                return self._reconciled(msgspec.structs.replace(result, reconciled=True))
            self.report = None  # the server itself did not know: ask the terminal
            return self._reconcile_step(now)
        self.sync_id, self.snapshot = self.new_id(), None
        self.phase, self._send_started = Phase.SYNCING, now
        return [act.SendSync(self.command.account_id, self.sync_id, self._delivery_s(self.limits.sync_timeout_s))]

    def _snapshot_until(self) -> float:  # an early reconcile ends by the order's timeout
        until = self._asked + self.limits.sync_timeout_s
        return min(until, self.started + self.timeout_s) if self._early else until

    def _no_snapshot(self, now: float) -> list[act.Action]:
        self.sync_id = None
        if self._early:  # no snapshot from the new session in time (or a report came): wait for the report
            self._early, self.phase = False, Phase.AWAITING_REPORT
            return self._await_report(now)
        if self.report is not None:
            return self._reconcile_step(now)
        self.phase = Phase.RECONCILE_PAUSE
        pause, self._pause = self._pause, min(self._pause * 2, 5.0)
        return [act.Pause(pause)]

    def _reconciled(self, result: OrderResult) -> list[act.Action]:
        result = orders.noted(self.rounded_from, orders.volume_of(self.command), result)
        self.listening = False
        self.state, self.result, self.phase = OrderState.RECONCILED, result, Phase.RECORDING
        log = act.Log("info", "order reconciled", {"status": result.status, **self.fields})
        return [log, act.ApplyToBook(self.command, result), act.Record(OrderState.RECONCILED, result, False)]

    def _end(self) -> list[act.Action]:
        self.phase, self.listening, self.sync_id = Phase.DONE, False, None
        done: list[act.Action] = [act.Done()]
        if self._taken_over and self.reply_to and self.state is OrderState.RECONCILED and self.result is not None:
            done.append(act.Reply(self.reply_to, self.result))  # the first caller may still be waiting
        return done

    def _ms(self, now: float) -> float:
        return (now - self.started) * 1000
