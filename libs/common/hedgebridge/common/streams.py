"""The JetStream state every service shares: the HB_EVENTS stream and the KV buckets.

Each service calls ``ensure`` at start (``ensure_within``: asked again while JetStream does not answer yet, a
cluster still electing its leaders or a node restarting, until the start-up deadline); creating what exists
already is a no-op, so any service may come up first. ``replicas`` is 1 on a single server and 3 on a
three-node cluster (HEDGEBRIDGE_STREAM_REPLICAS).
The gateway, which reads the streams' history for resuming clients, calls ``ensure_present``: it creates a
stream that does not exist yet, with these defaults, and never changes one that does (its owner configures
it).

A stream's ``epoch`` names its history: its name and creation time. Sequences only grow within an epoch; a
stream deleted and created again starts a new epoch (and its sequences from 1).

``hb_symbols`` holds the latest trading rules of every symbol each account's terminals reported (SYMBOL_SPECS),
one key per account (written by the executor, read by it before sending an order and by ``hedgebridge symbols``).
``hb_symbol_map`` holds each account's symbol map (canonical -> broker symbol, ``symbol_maps``), one key per
account (written by ``hedgebridge symbols set/rm`` and the client API, watched by every service that translates).
``hb_revoked`` holds the ids (``jti``) of revoked tokens, one key each; gateways watch it and refuse or close
what it names (``hedgebridge token revoke JTI`` writes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig, StreamInfo
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError, ServerError, ServiceUnavailableError
from nats.js.kv import KeyValue

from hedgebridge.protocol import subjects

from . import backoff, logs
from .faults import Fatal

log = logs.get("streams")
T = TypeVar("T")

DAY_S = 86_400.0
REVOKED_BUCKET = "hb_revoked"


@dataclass(frozen=True, slots=True)
class State:
    js: JetStreamContext
    orders: KeyValue
    inflight: KeyValue
    actions: KeyValue
    running_actions: KeyValue
    book: KeyValue
    symbols: KeyValue


NOT_READY = (TimeoutError, NoRespondersError, ServiceUnavailableError, ServerError)  # JetStream not answering yet
RETRY_FIRST_S, RETRY_LONGEST_S = 0.1, 2.0
ALERTS_PER_KEY = 100  # transitions HB_ALERTS keeps per alert key (the last one is the alert's state)


def events_stream(replicas: int = 1, max_age_days: float = 30.0) -> StreamConfig:
    """HB_EVENTS: trade reports, order results, action states and conflicts."""
    return StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=list(subjects.EVENTS_STREAM_SUBJECTS),
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=max_age_days * DAY_S,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    )


def alerts_stream(replicas: int = 1) -> StreamConfig:
    """HB_ALERTS: every alert transition, the last ``ALERTS_PER_KEY`` of each alert key (the monitor's)."""
    return StreamConfig(
        name=subjects.ALERTS_STREAM,
        subjects=[subjects.ALL_ALERTS],
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_msgs_per_subject=ALERTS_PER_KEY,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    )


def snapshots_stream(replicas: int = 1) -> StreamConfig:
    """HB_SNAPSHOTS: the last POSITION_UPDATE, ACCOUNT_UPDATE and TERMINAL_STATUS of every account, in memory
    (the terminals send them again after a restart of NATS)."""
    return StreamConfig(
        name=subjects.SNAPSHOTS_STREAM,
        subjects=list(subjects.SNAPSHOTS_STREAM_SUBJECTS),
        storage=StorageType.MEMORY,
        num_replicas=replicas,
        max_msgs_per_subject=1,
        discard=DiscardPolicy.OLD,
    )


async def ensure_present(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    """The stream ``config`` names: created with ``config`` when absent, left as it is when present."""
    assert config.name is not None
    try:
        return await js.stream_info(config.name)
    except NotFoundError:
        pass
    try:
        return await js.add_stream(config)
    except BadRequestError:  # created meanwhile by another service
        return await js.stream_info(config.name)


def epoch(info: StreamInfo) -> str:
    """The name of a stream's history: ``<name>@<creation time in microseconds>``."""
    created = info.created
    stamp = int(created.timestamp() * 1_000_000) if created is not None else 0
    return f"{info.config.name}@{stamp}"


async def ensure(
    nc: NatsClient,
    *,
    replicas: int = 1,
    events_max_age_days: float = 30.0,
    records_max_age_days: float = 7.0,
    js: JetStreamContext | None = None,
) -> State:
    """Create (or find) the events stream and the KV buckets; return handles to them (through ``js`` when
    given, e.g. a ``jetstream.LeanJetStream``; else the connection's own context)."""
    js = js if js is not None else nc.jetstream()
    stream = events_stream(replicas, events_max_age_days)
    try:
        await js.add_stream(stream)
    except BadRequestError:  # exists with another configuration: bring it to this one
        with contextlib.suppress(BadRequestError):
            await js.update_stream(stream)
    orders = await _bucket(js, subjects.ORDERS_BUCKET, replicas, records_max_age_days * DAY_S, "order records")
    inflight = await _bucket(js, subjects.INFLIGHT_BUCKET, replicas, DAY_S, "orders still running")
    actions = await _bucket(js, subjects.ACTIONS_BUCKET, replicas, records_max_age_days * DAY_S, "action records")
    running = await _bucket(js, subjects.RUNNING_ACTIONS_BUCKET, replicas, None, "actions not final yet")
    book = await _bucket(js, subjects.BOOK_BUCKET, replicas, None, "positions the system believes open")
    symbols = await _bucket(js, subjects.SYMBOLS_BUCKET, replicas, None, "the symbols' rules terminals reported")
    return State(
        js=js, orders=orders, inflight=inflight, actions=actions, running_actions=running, book=book, symbols=symbols
    )


class JetStreamUnavailable(Fatal):
    """JetStream did not answer the streams' and buckets' set-up within the start-up deadline."""

    code = "JETSTREAM_UNAVAILABLE"


async def ensure_within(
    nc: NatsClient, timeout_s: float, *, replicas: int = 1, js: JetStreamContext | None = None
) -> State:
    """``ensure(nc, replicas=replicas, js=js)``, asked again while JetStream does not answer (``when_ready``)."""
    return await when_ready(timeout_s, lambda: ensure(nc, replicas=replicas, js=js))


async def when_ready(timeout_s: float, set_up: Callable[[], Awaitable[T]]) -> T:
    """``set_up()`` (a service's JetStream set-up at start), asked again with a doubling pause (0.1 s to 2 s)
    while JetStream does not answer (a request timed out, no responders, 503 while a cluster elects its meta
    leader or a stream's) until ``timeout_s`` has passed: then JetStreamUnavailable, so the service exits 69
    with the reason."""
    deadline, attempt = time.monotonic() + timeout_s, 0
    while True:
        attempt += 1
        try:
            return await set_up()
        except NOT_READY as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            pause = backoff.ceiling_s(attempt, RETRY_FIRST_S, RETRY_LONGEST_S)
            if time.monotonic() + pause > deadline:
                raise JetStreamUnavailable(f"JetStream did not answer within {timeout_s:g}s ({reason})") from exc
            log.warning("jetstream not ready; asking again", error=reason, pause_s=pause)
            await asyncio.sleep(pause)


async def _bucket(js: JetStreamContext, name: str, replicas: int, ttl: float | None, what: str) -> KeyValue:
    config = KeyValueConfig(
        bucket=name, description=f"hedgebridge: {what}", history=1, ttl=ttl, replicas=replicas, storage=StorageType.FILE
    )
    try:
        return await js.create_key_value(config)
    except BadRequestError:
        return await js.key_value(name)


async def revocations(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The revocation list (created when absent)."""
    return await _bucket(js, REVOKED_BUCKET, replicas, None, "revoked token ids (jti)")


async def symbol_map_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The symbol maps (created when absent)."""
    return await _bucket(js, subjects.SYMBOL_MAP_BUCKET, replicas, None, "each account's symbol map")


async def revoke(js: JetStreamContext, jti: str, replicas: int = 1, note: str = "") -> int:
    """Put ``jti`` on the revocation list; returns the entry's revision."""
    bucket = await revocations(js, replicas)
    return await bucket.put(jti, note.encode()[:256])
