"""The realtime cache: a volatile projection of what terminals report (design seed 002).

Keys (one account's or one symbol's data per key)::

    hb:price:<symbol>          hash  bid, ask, time, account      marketPrices
    hb:positions:{<account>}   hash  <mtTicket> -> Position JSON  activePositions (replaced per snapshot)
    hb:balance:{<account>}     hash  balance, equity, margin, freeMargin, marginLevel, currency, lastUpdate
                                                                   accountBalances
    hb:synced:{<account>}      string  time of the last full positions snapshot applied
    hb:epoch                   string  set when the cache was (re)built; gone after a flush or a restart

Hash slots (Redis Cluster): the only multi-key operations are an account's positions snapshot (DEL + HSET of
``hb:positions:{<account>}`` and SET of ``hb:synced:{<account>}`` in one script) and its read (EXISTS +
HGETALL in one MULTI). The account id in braces is the keys' hash tag, so an account's keys always share one
slot and these transactions work on a cluster; every other operation touches one key.

One URL chooses the server (``HEDGEBRIDGE_REDIS_URL``, see ``parse_url``): ``redis://`` / ``rediss://`` (TLS)
/ ``unix://`` for one server; ``redis+sentinel://[user:password@]host:port,host:port/<master>[/<db>]`` (or
``rediss+sentinel://``) for a master found through Sentinel; ``redis+cluster://[user:password@]host:port,…``
(or ``rediss+cluster://``) for a Redis Cluster.

Order (several executors write the cache, each event once, and one may be slower than another): a positions
snapshot or a balance older than the one the cache holds for the account, by the terminal's timestamp, is not
applied. Each write is one script that compares and writes (``hb:synced:{<account>}`` and ``lastUpdate`` hold
the timestamp in UTC with microseconds, so that they compare as text); a snapshot as old as the one held is
applied (the same snapshot again changes nothing).

Nothing here is the record of truth: after a flush it is rebuilt from the terminals' next reports. An
account's positions are known only once a snapshot was applied since the last flush (``positions`` returns
None before that), so nobody takes a decision from an incomplete cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from hedgebridge.protocol import AccountUpdate, Event, Position, PositionUpdate, PriceTick

PRICE = "hb:price:{}"
POSITIONS = "hb:positions:{{{}}}"
BALANCE = "hb:balance:{{{}}}"
SYNCED = "hb:synced:{{{}}}"
EPOCH = "hb:epoch"

Mode = Literal["single", "sentinel", "cluster"]


@dataclass(frozen=True, slots=True)
class CacheUrl:
    """What a cache URL names (``parse_url``)."""

    mode: Mode
    url: str  # the URL itself for a single server
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""  # the Sentinel master's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_url(url: str) -> CacheUrl:
    """Parse a cache URL; ValueError with the reason when it is not one."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("redis", "rediss", "unix"):
        return CacheUrl("single", url, tls=scheme == "rediss")
    if scheme not in ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"):
        raise ValueError("a cache URL starts with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    mode: Mode = "sentinel" if scheme.endswith("sentinel") else "cluster"
    userinfo, at, hosts_and_path = rest.rpartition("@")
    if not at:
        userinfo, hosts_and_path = "", rest
    hosts, _, path = hosts_and_path.partition("/")
    nodes = []
    for item in hosts.split(","):
        parsed = urlsplit(f"//{item.strip()}")
        if not parsed.hostname:
            raise ValueError(f"{scheme}: a node is host:port, got {item!r}")
        try:
            port = parsed.port or (26379 if mode == "sentinel" else 6379)
        except ValueError:
            raise ValueError(f"{scheme}: not a port in {item!r}") from None
        nodes.append((parsed.hostname, port))
    user, colon, password = userinfo.partition(":")
    parts = [p for p in path.split("/") if p]
    service, db = "", 0
    if mode == "sentinel":
        if not parts:
            raise ValueError("redis+sentinel:// names the master: redis+sentinel://host:port,host:port/<master>[/<db>]")
        service = unquote(parts[0])
        parts = parts[1:]
    if parts:
        if len(parts) > 1 or not parts[0].isdigit():
            raise ValueError(f"{scheme}: the path ends with the database number, got /{'/'.join(parts)}")
        db = int(parts[0])
        if mode == "cluster" and db != 0:
            raise ValueError("a Redis Cluster has only database 0")
    return CacheUrl(
        mode,
        url,
        nodes=tuple(nodes),
        service=service,
        db=db,
        username=(unquote(user) or None) if userinfo else None,
        password=unquote(password) if colon else None,
        tls=scheme.startswith("rediss"),
    )


def connect(url: str) -> Any:
    """A redis.asyncio client (Redis or RedisCluster) for ``url`` (``parse_url``), with decoded responses."""
    target = parse_url(url)
    if target.mode == "single":
        return aioredis.from_url(url, decode_responses=True)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            decode_responses=True,
            ssl=target.tls,
            **auth,
        )
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8
        list(target.nodes),
        sentinel_kwargs={"ssl": target.tls},  # the credentials are the master's
        decode_responses=True,
        ssl=target.tls,
        **auth,
    )
    return sentinel.master_for(target.service, db=target.db)


_position_json = msgspec.json.Encoder()

# KEYS: the positions hash, the synced mark; ARGV: the snapshot's stamp, then mtTicket, position JSON, ...
_APPLY_POSITIONS = """
local held = redis.call('GET', KEYS[2])
if held and held > ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
# KEYS: the balance hash; ARGV: the update's stamp, then field, value, ... (lastUpdate among them)
_APPLY_BALANCE = """
local held = redis.call('HGET', KEYS[1], 'lastUpdate')
if held and held > ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


def stamp(moment: datetime) -> str:
    """A terminal's timestamp as the cache keeps it: UTC, microseconds, fixed width (compares as text)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _price_fields(event: PriceTick) -> dict[str, str]:
    return {"bid": repr(event.bid), "ask": repr(event.ask), "time": event.time.isoformat(), "account": event.account_id}


_position_decoder = msgspec.json.Decoder(Position)
_Guarded = tuple[AsyncScript, list[str], list[str]]  # a guarded write: its script, keys and arguments


class RealtimeCache(Protocol):
    async def apply(self, event: Event) -> bool:
        """Project one terminal event; returns False for events that carry nothing to cache."""

    async def apply_many(self, events: Sequence[Event]) -> int:
        """Project several events (in order, one round trip where the server allows); returns how many
        carried something to cache."""

    async def price(self, symbol: str) -> dict[str, str] | None: ...

    async def positions(self, account_id: str) -> list[Position] | None:
        """The account's open positions, or None when no snapshot was applied since the cache was last
        emptied (the picture is incomplete)."""

    async def epoch(self) -> str | None:
        """The cache's build mark; None means it was flushed or restarted and must be rebuilt."""

    async def mark_epoch(self, value: str) -> bool:
        """Set the build mark unless one is set; True when this call set it."""

    async def balance(self, account_id: str) -> dict[str, str] | None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class RedisCache:
    """RealtimeCache on Redis or any Redis-compatible server (valkey): one server, Sentinel or a Cluster."""

    def __init__(self, url: str) -> None:
        self.target = parse_url(url)
        self._redis: Any = connect(url)
        self._positions_script = self._redis.register_script(_APPLY_POSITIONS)
        self._balance_script = self._redis.register_script(_APPLY_BALANCE)

    async def apply(self, event: Event) -> bool:
        return await self.apply_many([event]) == 1

    async def apply_many(self, events: Sequence[Event]) -> int:
        """Project several events in order: the prices, and each balance and positions snapshot by its script,
        which keeps a newer one the cache holds (the terminal's timestamps decide); one pipeline, one round trip
        (on a Redis Cluster the scripts go one at a time after the prices); returns how many carried something
        to cache."""
        prices = [(PRICE.format(e.symbol), _price_fields(e)) for e in events if isinstance(e, PriceTick)]
        guarded = [
            self._balance(e) if isinstance(e, AccountUpdate) else self._snapshot(e)
            for e in events
            if isinstance(e, AccountUpdate | PositionUpdate)
        ]
        cluster = isinstance(self._redis, RedisCluster)
        pipelined = [] if cluster else guarded
        if prices or pipelined:
            try:
                await self._pipelined(prices, pipelined)
            except NoScriptError:  # the server lost its scripts (a restart, SCRIPT FLUSH): load them, again
                await self._load_scripts()
                await self._pipelined(prices, pipelined)
        for script, keys, args in guarded if cluster else ():
            await script(keys=keys, args=args)
        return len(prices) + len(guarded)

    async def _pipelined(self, prices: list[tuple[str, dict[str, str]]], guarded: list[_Guarded]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, mapping in prices:
                pipe.hset(key, mapping=mapping)
            for script, keys, args in guarded:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            await pipe.execute()

    async def _load_scripts(self) -> None:
        for script in (self._positions_script, self._balance_script):
            await self._redis.script_load(script.script)

    def _balance(self, event: AccountUpdate) -> _Guarded:
        when = stamp(event.timestamp)
        fields = {
            "balance": repr(event.balance),
            "equity": repr(event.equity),
            "margin": repr(event.margin),
            "freeMargin": repr(event.free_margin),
            "marginLevel": "" if event.margin_level is None else repr(event.margin_level),
            "currency": event.currency or "",
            "lastUpdate": when,
        }
        args = [when, *(x for pair in fields.items() for x in pair)]
        return self._balance_script, [BALANCE.format(event.account_id)], args

    def _snapshot(self, event: PositionUpdate) -> _Guarded:
        pairs = [x for p in event.positions for x in (p.mt_ticket, _position_json.encode(p).decode())]
        keys = [POSITIONS.format(event.account_id), SYNCED.format(event.account_id)]
        return self._positions_script, keys, [stamp(event.timestamp), *pairs]

    async def _hash(self, key: str) -> dict[str, str]:
        value = await self._redis.hgetall(key)
        return {str(k): str(v) for k, v in value.items()}

    async def price(self, symbol: str) -> dict[str, str] | None:
        return await self._hash(PRICE.format(symbol)) or None

    async def positions(self, account_id: str) -> list[Position] | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(SYNCED.format(account_id))
            pipe.hgetall(POSITIONS.format(account_id))
            synced, value = await pipe.execute()
        if not synced:
            return None
        return sorted(
            (_position_decoder.decode(v) for v in value.values()), key=lambda p: (len(p.mt_ticket), p.mt_ticket)
        )

    async def epoch(self) -> str | None:
        value = await self._redis.get(EPOCH)
        return None if value is None else str(value)

    async def mark_epoch(self, value: str) -> bool:
        return bool(await self._redis.set(EPOCH, value, nx=True))

    async def balance(self, account_id: str) -> dict[str, str] | None:
        return await self._hash(BALANCE.format(account_id)) or None

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
