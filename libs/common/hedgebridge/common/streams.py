"""The JetStream state every service shares: the HB_EVENTS stream and the KV buckets.

Each service calls ``ensure`` at start; creating what exists already is a no-op, so any service may come
up first. ``replicas`` is 1 on a single server and 3 on a three-node cluster (HEDGEBRIDGE_STREAM_REPLICAS).

``hb_symbols`` holds the latest trading rules of every symbol each account's terminals reported (SYMBOL_SPECS),
one key per account (written by the executor, read by it before sending an order and by ``hedgebridge symbols``).
``hb_revoked`` holds the ids (``jti``) of revoked tokens, one key each; gateways watch it and refuse or close
what it names (``hedgebridge token revoke JTI`` writes it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from hedgebridge.protocol import subjects

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


async def ensure(
    nc: NatsClient,
    *,
    replicas: int = 1,
    events_max_age_days: float = 30.0,
    records_max_age_days: float = 7.0,
) -> State:
    """Create (or find) the events stream and the KV buckets; return handles to them."""
    js = nc.jetstream()
    stream = StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=list(subjects.EVENTS_STREAM_SUBJECTS),
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=events_max_age_days * DAY_S,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    )
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


async def revoke(js: JetStreamContext, jti: str, replicas: int = 1, note: str = "") -> int:
    """Put ``jti`` on the revocation list; returns the entry's revision."""
    bucket = await revocations(js, replicas)
    return await bucket.put(jti, note.encode()[:256])
