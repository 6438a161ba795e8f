"""The symbol maps in the JetStream KV bucket ``hb_symbol_map`` (one key per account, a ``SYMBOL_MAP``): the
mirror every service that translates keeps, and the changes the CLI and the client API make.

- ``MapMirror`` mirrors the bucket in memory through a watch: a service reads every account's map before it
  serves (``start``) and follows each change as it is written, so a change applies without a restart and a
  translation costs no round trip. Between the write and the watch's delivery (milliseconds) a service may
  still use the previous map; what an order uses is fixed when the executor accepts it (``OrderRecord.
  brokerSymbol``), so every send of one order goes out under one name.
- ``change`` applies a SET_SYMBOL_MAP or REMOVE_SYMBOL_MAP by compare-and-set (two admins changing one
  account at once: the second change is applied to what the first wrote); ``listing`` reads the maps.
  The rules are ``symbol_map``'s.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from hedgebridge.protocol import (
    ListSymbolMaps,
    ProtocolError,
    RemoveSymbolMap,
    SetSymbolMap,
    SymbolMap,
    SymbolMapRequest,
    SymbolMaps,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)

from . import logs, streams, symbol_map
from .kv_mirror import KvMirror
from .symbol_map import Mapping, MapRefused
from .tasks import cancel_and_wait

log = logs.get("symbol-map")

BIND_RETRY_S = 2.0  # how often a process that makes no bucket looks for it until it exists
WRITE_ATTEMPTS = 10  # compare-and-set rounds of one change against others writing the same account


class MapsUnavailable(Exception):
    """The bucket could not be read at start."""


async def bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The symbol maps' bucket (created when absent)."""
    return await streams.symbol_map_bucket(js, replicas)


class MapMirror:
    """Every account's map, kept in step with the bucket."""

    def __init__(self) -> None:
        self.known: dict[str, SymbolMap] = {}
        self._mappings: dict[str, Mapping] = {}  # only the accounts whose map translates something
        self._mirror = KvMirror(self._on_entry)
        self._binder: asyncio.Task[None] | None = None
        self.changes = 0  # map changes applied since start (after the initial read)

    def mapping(self, account_id: str) -> Mapping | None:
        """The account's mapping; None when its names are the broker's."""
        return self._mappings.get(account_id)

    async def start(self, nc: NatsClient, replicas: int = 1, timeout_s: float = 10.0, *, create: bool = True) -> None:
        """Read every account's map, then follow changes in the background. ``create`` False (a process that
        makes no JetStream state, the MT5 bridge): a bucket that does not exist yet means that no account has a
        map; it is followed from when a service or ``hedgebridge symbols set`` creates it."""
        js = nc.jetstream()
        if create:
            kv = await bucket(js, replicas)
        else:
            try:
                kv = await js.key_value(subjects.SYMBOL_MAP_BUCKET)
            except BucketNotFoundError:
                self._binder = asyncio.create_task(self._bind_later(js, timeout_s))
                return
        try:
            await self._mirror.start(kv, timeout_s)
        except TimeoutError:
            raise MapsUnavailable(f"cannot read the symbol maps within {timeout_s:g}s") from None

    async def _bind_later(self, js: JetStreamContext, timeout_s: float) -> None:
        while True:
            await asyncio.sleep(BIND_RETRY_S)
            try:
                await self._mirror.start(await js.key_value(subjects.SYMBOL_MAP_BUCKET), timeout_s)
            except Exception:  # not created yet, or NATS away for a moment
                continue
            log.info("symbol maps found")
            return

    async def stop(self) -> None:
        await cancel_and_wait(self._binder)
        self._binder = None
        await self._mirror.stop()

    def _on_entry(self, key: str, value: bytes | None, initial: bool) -> None:
        """One entry of the bucket as the watch delivers it (``value`` None: deleted)."""
        if not value:
            self.known.pop(key, None)
            self._mappings.pop(key, None)
            return
        try:
            stored = unpack(value, SymbolMap)
        except ProtocolError as exc:
            log.warning("unreadable symbol map", account=key, error=exc.message)
            return
        self.known[key] = stored
        built = symbol_map.mapping(stored)
        if built is None:
            self._mappings.pop(key, None)
        else:
            self._mappings[key] = built
        if not initial:
            self.changes += 1
            log.info("symbol map changed", account=key, entries=len(stored.symbols), by=stored.updated_by)


# --- reading and changing the maps -----------------------------------------------------------------------------


async def read(kv: KeyValue, account_id: str) -> tuple[SymbolMap | None, int | None]:
    """The account's map and its revision (None, None: no key)."""
    try:
        entry = await kv.get(account_id)
    except KeyNotFoundError:
        return None, None
    if not entry.value:
        return None, entry.revision
    try:
        return unpack(entry.value, SymbolMap), entry.revision
    except ProtocolError as exc:
        raise MapRefused(
            errors.INTERNAL, f"the symbol map kept for {account_id} cannot be read: {exc.message}"
        ) from None


async def listing(kv: KeyValue, account_id: str | None = None) -> SymbolMaps:
    """The map of ``account_id``, or every account's (sorted by account; empty maps left out)."""
    if account_id is not None:
        stored, _ = await read(kv, account_id)
        return SymbolMaps(maps=[stored] if stored is not None and not symbol_map.is_empty(stored) else [])
    try:
        keys = await kv.keys()
    except NoKeysError:
        keys = []
    maps = []
    for key in sorted(keys):
        stored, _ = await read(kv, key)
        if stored is not None and not symbol_map.is_empty(stored):
            maps.append(stored)
    return SymbolMaps(maps=maps)


async def change(kv: KeyValue, request: SetSymbolMap | RemoveSymbolMap, by: str) -> SymbolMap:
    """Apply ``request`` to its account's map (compare-and-set); the map as written. ``MapRefused`` when the
    rules refuse it."""
    account = request.account_id
    for _ in range(WRITE_ATTEMPTS):
        current, revision = await read(kv, account)
        if isinstance(request, SetSymbolMap):
            updated = symbol_map.apply_set(current, request, utcnow(), by)
        else:
            updated = symbol_map.apply_remove(current, request, utcnow(), by)
        try:
            if revision is None:
                await kv.create(account, pack(updated))
            else:
                await kv.update(account, pack(updated), last=revision)
        except KeyWrongLastSequenceError:
            continue  # written meanwhile: apply the change to what is there now
        log.info("symbol map written", account=account, entries=len(updated.symbols), by=by)
        return updated
    raise MapRefused(errors.INTERNAL, f"the symbol map of account {account} kept changing; nothing was changed")


async def handle(kv: KeyValue, request: SymbolMapRequest, by: str) -> SymbolMaps:
    """A symbol map request of the client API: the maps it names after it is applied."""
    if isinstance(request, ListSymbolMaps):
        return await listing(kv, request.account_id)
    return SymbolMaps(maps=[await change(kv, request, by)])
