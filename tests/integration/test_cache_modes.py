"""The cache on each kind of server a URL can name, for real: one valkey-server, a master found through a
valkey Sentinel, and a three-master valkey Cluster formed here (CLUSTER MEET / ADDSLOTSRANGE)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from hedgebridge.common import cache
from hedgebridge.common.cache import RedisCache
from hedgebridge.common.servers import ValkeyCluster, ValkeySentinel, ValkeyServer
from hedgebridge.protocol import AccountUpdate, Event, Position, PositionUpdate, PriceTick, utcnow

pytestmark = pytest.mark.integration

ACCOUNTS = [f"ACC-{i}" for i in range(12)]  # enough ids to spread over every node of the cluster


@pytest.fixture
def valkey_cluster(tmp_path: Path) -> Iterator[ValkeyCluster]:
    nodes = ValkeyCluster(tmp_path / "cluster", size=3)
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture
def sentinel(cache_server: ValkeyServer, tmp_path: Path) -> Iterator[ValkeySentinel]:
    watcher = ValkeySentinel(tmp_path / "sentinel", cache_server)
    watcher.start()
    yield watcher
    watcher.stop()


def _position(ticket: str) -> Position:
    return Position(
        mt_ticket=ticket,
        symbol="EURUSD",
        side="BUY",
        volume=0.1,
        open_price=1.1,
        current_price=1.1001,
        profit=0.1,
    )


async def _exercise(url: str) -> None:
    """Every operation of the cache, on many accounts: snapshots replace, reads see them, unknown is None."""
    store = RedisCache(url)
    try:
        assert await store.ping()
        assert await store.mark_epoch("e-1")
        assert not await store.mark_epoch("e-2")
        assert await store.epoch() == "e-1"
        for i, account in enumerate(ACCOUNTS):
            assert await store.positions(account) is None  # no snapshot yet: unknown, not empty
            first = PositionUpdate(
                timestamp=utcnow(), account_id=account, positions=[_position(f"{i}1"), _position(f"{i}2")]
            )
            assert await store.apply(first)
            second = PositionUpdate(timestamp=utcnow(), account_id=account, positions=[_position(f"{i}3")])
            assert await store.apply(second)
            await store.apply(
                AccountUpdate(
                    timestamp=utcnow(), account_id=account, balance=100.0 + i, equity=100.0, margin=0.0, free_margin=1.0
                )
            )
        for i, account in enumerate(ACCOUNTS):
            positions = await store.positions(account)
            assert positions is not None
            assert [p.mt_ticket for p in positions] == [f"{i}3"]
            balance = await store.balance(account)
            assert balance is not None
            assert float(balance["balance"]) == 100.0 + i
        # a snapshot or balance older than the one applied (a replica that was slow to write it) is not applied
        late = utcnow() - timedelta(seconds=5)
        await store.apply(PositionUpdate(timestamp=late, account_id=ACCOUNTS[1], positions=[_position("19")]))
        stale = AccountUpdate(timestamp=late, account_id=ACCOUNTS[1], balance=1.0, equity=1.0, margin=0, free_margin=1)
        await store.apply(stale)
        kept = await store.positions(ACCOUNTS[1])
        assert kept is not None
        assert [p.mt_ticket for p in kept] == ["13"]
        balance = await store.balance(ACCOUNTS[1])
        assert balance is not None
        assert float(balance["balance"]) == 101.0
        empty = PositionUpdate(timestamp=utcnow(), account_id=ACCOUNTS[0], positions=[])
        await store.apply(empty)
        assert await store.positions(ACCOUNTS[0]) == []  # known and empty
        await store.apply(PriceTick(account_id=ACCOUNTS[1], symbol="GBPUSD", bid=1.25, ask=1.2502, time=utcnow()))
        price = await store.price("GBPUSD")
        assert price is not None
        assert price["ask"] == "1.2502"
    finally:
        await store.close()


async def test_single_server(cache_server: ValkeyServer) -> None:
    url = f"{cache_server.url}/0"
    assert cache.parse_url(url).mode == "single"
    await _exercise(url)
    raw = redis.Redis(host=cache_server.host, port=cache_server.port, decode_responses=True)
    assert raw.exists("hb:positions:{ACC-1}", "hb:synced:{ACC-1}", "hb:balance:{ACC-1}") == 3
    raw.close()


async def test_sentinel_master(sentinel: ValkeySentinel, cache_server: ValkeyServer) -> None:
    assert cache.parse_url(sentinel.cache_url).mode == "sentinel"
    await _exercise(sentinel.cache_url)
    raw = redis.Redis(host=cache_server.host, port=cache_server.port, decode_responses=True)
    assert raw.get("hb:epoch") == "e-1"  # the data is on the master the Sentinel named
    raw.close()


async def test_redis_cluster(valkey_cluster: ValkeyCluster) -> None:
    assert cache.parse_url(valkey_cluster.url).mode == "cluster"
    await _exercise(valkey_cluster.url)
    # the accounts spread over every node, and each account's keys share one slot
    node_clients = [redis.Redis(host=n.host, port=n.port, decode_responses=True) for n in valkey_cluster.nodes]
    holding = [len(c.keys("hb:positions:*")) for c in node_clients]
    assert all(count > 0 for count in holding), holding
    first = node_clients[0]
    for account in ACCOUNTS:
        slots = {
            first.execute_command("CLUSTER", "KEYSLOT", k.format(account))  # type: ignore[no-untyped-call]
            for k in (cache.POSITIONS, cache.SYNCED, cache.BALANCE)
        }
        assert len(slots) == 1, account
    for client in node_clients:
        client.close()


async def test_a_batch_of_prices_balances_and_snapshots_after_the_server_lost_its_scripts(
    cache_server: ValkeyServer,
) -> None:
    """One batch (one pipeline) applies every kind of event, also when the server forgot the guard scripts
    (restart, SCRIPT FLUSH): they are loaded again and the batch applied; the stale guard still holds."""
    store = RedisCache(f"{cache_server.url}/0")
    raw = redis.Redis(host=cache_server.host, port=cache_server.port, decode_responses=True)
    try:
        now, account = utcnow(), ACCOUNTS[2]
        for flushed in (False, True):
            if flushed:
                raw.script_flush()
            batch: list[Event] = [
                PriceTick(account_id=account, symbol="EURUSD", bid=1.1, ask=1.1002, time=now),
                PositionUpdate(timestamp=now, account_id=account, positions=[_position("7")]),
                AccountUpdate(timestamp=now, account_id=account, balance=7.0, equity=7.0, margin=0.0, free_margin=7.0),
                PositionUpdate(timestamp=now - timedelta(seconds=1), account_id=account, positions=[]),  # stale
            ]
            assert await store.apply_many(batch) == 4
            positions = await store.positions(account)
            assert positions is not None
            assert [p.mt_ticket for p in positions] == ["7"]
            balance = await store.balance(account)
            assert balance is not None
            assert float(balance["balance"]) == 7.0
            assert await store.price("EURUSD") is not None
    finally:
        raw.close()
        await store.close()
