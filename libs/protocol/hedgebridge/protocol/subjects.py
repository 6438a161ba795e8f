"""Every NATS subject hedgebridge uses. No other module spells a subject.

Layout (``<account>`` is a token-safe account id, see ``messages.AccountId``)::

    hb.ea.<account>.cmd            commands for a terminal; the gateway holding its connection replies
                                   with a DeliveryAck (no responders: nobody holds it, not sent)
    hb.ea.<account>.evt.<type>     events a terminal reported (msgpack of the EA message), type lowercase
    hb.ea.<account>.refused        a terminal's ERROR about a command it did not execute (an EA that does not know
                                   the command): the executor answers that order at once
    hb.ea.<account>.status         TERMINAL_STATUS: connected / disconnected
    hb.exec.order                  order requests (request/reply), served by the executors' queue group
    hb.exec.batch                  batch close requests (request/reply), same queue group
    hb.exec.result.<account>       every order result, reconciled ones included (kept in HB_EVENTS)
    hb.gw.sync                     ask every gateway to send SYNC to all its terminals (cache rebuild)
    hb.coord.action                action requests (request/reply), served by the coordinators' queue group
    hb.action.<actionId>           every state of an action (kept in HB_EVENTS)
    hb.consistency.conflict        conflicts the reconciliation found (kept in HB_EVENTS)
    hb.consistency.status          the consistency status after each reconciliation pass
    hb.monitor.status              request/reply: the monitor's live picture
    hb.monitor.report              the monitor's periodic MONITOR_REPORT (health, latency per hop, open alerts)
    hb.health.<service>            HEALTH: a service's health checks
    hb.alert.<rule>.<scope>        ALERT transitions (OPEN / RESOLVED); scope is the account or ``_system``
    hb.gw.liveness                 GATEWAY_LIVENESS: every gateway's terminals, idle times, Ping/Pong round trips

JetStream: the stream HB_EVENTS keeps terminals' OPENED/CLOSED/MODIFIED reports, order results, action states and
conflicts; the KV buckets hb_orders (order records by actionId), hb_inflight (orders still running, with
their owner's lease), hb_actions (action records by actionId), hb_actions_running (the actionIds not final
yet, so a takeover scan reads only those) and hb_book (positions the system believes
open, by ``<account>.<ticket>``) are the persisted state; hb_symbols keeps the latest rules of every symbol each
account's terminals reported (SYMBOL_SPECS), by account; hb_symbol_map keeps each account's symbol map
(canonical -> broker symbol, SYMBOL_MAP), by account. The stream HB_ALERTS keeps every alert transition
(the last one per subject is an alert's current state). The stream HB_SNAPSHOTS (in memory) keeps the last
POSITION_UPDATE, ACCOUNT_UPDATE and TERMINAL_STATUS of every account: the snapshot a client resuming the
``positions``, ``balances`` or ``terminals`` topic starts with.
"""

from __future__ import annotations

from .names import is_account_id, is_action_id

PREFIX = "hb"

ORDER_REQUEST = f"{PREFIX}.exec.order"
EXECUTOR_QUEUE = "hb-executor"
BATCH_REQUEST = f"{PREFIX}.exec.batch"
ALL_RESULTS = f"{PREFIX}.exec.result.*"
GATEWAY_SYNC = f"{PREFIX}.gw.sync"
ACTION_REQUEST = f"{PREFIX}.coord.action"
COORDINATOR_QUEUE = "hb-coordinator"
ALL_ACTIONS = f"{PREFIX}.action.*"
CONFLICTS = f"{PREFIX}.consistency.conflict"
CONSISTENCY_STATUS = f"{PREFIX}.consistency.status"
MONITOR_STATUS = f"{PREFIX}.monitor.status"
MONITOR_REPORT = f"{PREFIX}.monitor.report"
GATEWAY_LIVENESS = f"{PREFIX}.gw.liveness"
ALL_HEALTH = f"{PREFIX}.health.*"
ALL_ALERTS = f"{PREFIX}.alert.>"
ALERTS_STREAM = "HB_ALERTS"
SYSTEM_SCOPE = "_system"  # the scope token of an alert that concerns no single account

EVENTS_STREAM = "HB_EVENTS"
# What HB_EVENTS keeps: the terminals' trade reports and every order result, action state and conflict.
EVENTS_STREAM_SUBJECTS = (
    f"{PREFIX}.ea.*.evt.opened",
    f"{PREFIX}.ea.*.evt.closed",
    f"{PREFIX}.ea.*.evt.modified",
    ALL_RESULTS,
    ALL_ACTIONS,
    CONFLICTS,
)
SNAPSHOTS_STREAM = "HB_SNAPSHOTS"
# What HB_SNAPSHOTS keeps, the last message of each subject: every account's latest state.
SNAPSHOTS_STREAM_SUBJECTS = (
    f"{PREFIX}.ea.*.evt.position_update",
    f"{PREFIX}.ea.*.evt.account_update",
    f"{PREFIX}.ea.*.status",
)
ORDERS_BUCKET = "hb_orders"
INFLIGHT_BUCKET = "hb_inflight"
ACTIONS_BUCKET = "hb_actions"
RUNNING_ACTIONS_BUCKET = "hb_actions_running"
BOOK_BUCKET = "hb_book"
SYMBOLS_BUCKET = "hb_symbols"
SYMBOL_MAP_BUCKET = "hb_symbol_map"
ALL_EVENTS = f"{PREFIX}.ea.*.evt.>"
ALL_STATUS = f"{PREFIX}.ea.*.status"
ALL_REFUSED = f"{PREFIX}.ea.*.refused"


def _account(account_id: str) -> str:
    if not is_account_id(account_id):
        raise ValueError(f"account id {account_id!r} is not a valid subject token")
    return account_id


def command(account_id: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.cmd"


def event(account_id: str, message_type: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.evt.{message_type.lower()}"


def event_any_account(message_type: str) -> str:
    """The events of one type from every account (``hb.ea.*.evt.<type>``)."""
    return f"{PREFIX}.ea.*.evt.{message_type.lower()}"


def refused(account_id: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.refused"


def status(account_id: str) -> str:
    return f"{PREFIX}.ea.{_account(account_id)}.status"


def account_of(subject: str) -> str:
    """The account id inside an ``hb.ea.<account>.…`` subject."""
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != PREFIX or parts[1] != "ea":
        raise ValueError(f"{subject!r} is not an account subject")
    return parts[2]


def result(account_id: str) -> str:
    return f"{PREFIX}.exec.result.{_account(account_id)}"


def action(action_id: str) -> str:
    return f"{PREFIX}.action.{_account_or_action(action_id)}"


def _account_or_action(token: str) -> str:
    if not is_action_id(token):
        raise ValueError(f"{token!r} is not a valid subject token")
    return token


def health(service: str) -> str:
    return f"{PREFIX}.health.{_account(service)}"


def account_alerts(account_id: str) -> str:
    """The transitions of every alert of one account (``hb.alert.*.<account>``)."""
    return f"{PREFIX}.alert.*.{_account(account_id)}"


def alert(rule: str, account_id: str = "") -> str:
    """The subject of an alert's transitions: ``hb.alert.<rule>.<account or _system>``."""
    return f"{PREFIX}.alert.{_account(rule)}.{_account(account_id) if account_id else SYSTEM_SCOPE}"
