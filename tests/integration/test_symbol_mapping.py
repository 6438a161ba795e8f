"""Symbol mapping end to end with the real gateway, executor, nats-server and valkey-server and simulated
terminals whose broker names differ from the canonical ones (``EURUSD.m``, ``GOLD``): the map is managed over
the client API (admin tokens only) and with ``hedgebridge symbols set/list/rm``; an order in a canonical symbol
reaches the terminal under the broker's name, and its OPENED, the positions, the prices, the cache, the book,
the symbols' rules and the kept history come back canonical with ``brokerSymbol``; a symbol the terminal does
not know is INVALID before anything is sent; a map change applies to the next order without a restart."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.client import ClientError, HedgebridgeClient, Leg
from hedgebridge.common import auth, symbol_maps
from hedgebridge.common.servers import NatsServer
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    BookEntry,
    OpenedEvent,
    PositionUpdate,
    PriceTick,
    SetSymbolMap,
    SymbolMap,
    errors,
    subjects,
    unpack,
)
from hedgebridge.protocol.client import Push

from ..conftest import StartSims
from ..helpers import hedgebridge_command, wait_for
from ..mt5.terminals import Bridges

pytestmark = pytest.mark.integration

ACCOUNT = "SM1"
BROKER_SYMBOLS = ("EURUSD.m", "GOLD", "GBPUSD")  # what the simulated broker calls its symbols


def admin_token(secret: str) -> str:
    return auth.mint_token(secret, role="admin", subject="desk-admin")


def system_token(secret: str) -> str:
    return auth.mint_token(secret, role="system", subject="sys-1", accounts=[ACCOUNT])


@pytest.fixture
async def admin(gateway: Gateway, secret: str) -> AsyncIterator[HedgebridgeClient]:
    client = await HedgebridgeClient.connect(f"ws://127.0.0.1:{gateway.port}/client", admin_token(secret))
    yield client
    await client.aclose()


async def mapped_everywhere(gateway: Gateway, executor: Executor, canonical: str, broker: str) -> None:
    """Until the gateway's and the executor's mirrors name ``canonical`` ``broker`` at the account's broker."""

    def named() -> bool:
        for mirror in (gateway.symbol_maps, executor.maps):
            mapping = mirror.mapping(ACCOUNT)
            if mapping is None or (mapping.to_broker(canonical), mapping.to_canonical(broker)) != (broker, canonical):
                return False
        return True

    await wait_for(named, f"every service to map {canonical} to {broker}")


async def next_push(feed: object, wanted: type, check: object = None) -> Push:
    """The next push on ``feed`` whose data is a ``wanted`` (and satisfies ``check``)."""
    async with asyncio.timeout(10):
        while True:
            push: Push = await feed.next()  # type: ignore[attr-defined]
            if isinstance(push.data, wanted) and (check is None or check(push.data)):  # type: ignore[operator]
                return push


async def test_orders_go_out_in_broker_symbols_and_everything_comes_back_canonical(
    gateway: Gateway, executor: Executor, sims: StartSims, admin: HedgebridgeClient, nc: NatsClient
) -> None:
    written = await admin.set_symbols(ACCOUNT, {"XAUUSD": "GOLD"}, suffix=".m")
    assert (written.symbols, written.suffix, written.updated_by) == ({"XAUUSD": "GOLD"}, ".m", "desk-admin")
    await mapped_everywhere(gateway, executor, "XAUUSD", "GOLD")
    await mapped_everywhere(gateway, executor, "EURUSD", "EURUSD.m")
    (terminal,) = await sims([ACCOUNT], symbols=BROKER_SYMBOLS, fill_latency_ms=0, tick_interval_ms=20)
    feed = await admin.subscribe(["trades", "positions", "prices", "orders"], [ACCOUNT])

    # the symbols' rules are kept under canonical names, found by the broker's
    def rules_known() -> bool:
        spec = executor.symbols.spec(ACCOUNT, "GOLD")
        return spec is not None and (spec.symbol, spec.broker_symbol) == ("XAUUSD", "GOLD")

    await wait_for(rules_known, "the executor to know the rules of XAUUSD (GOLD)")

    gold = await admin.open(ACCOUNT, "XAUUSD", "BUY", 0.1, action_id="map-gold-1")
    assert (gold.status, gold.symbol, gold.broker_symbol) == ("FILLED", "XAUUSD", "GOLD")
    assert [p.symbol for p in terminal.account.positions.values()] == ["GOLD"]  # what the terminal got
    assert isinstance(gold.event, OpenedEvent)
    assert (gold.event.symbol, gold.event.broker_symbol) == ("XAUUSD", "GOLD")
    euro = await admin.open(ACCOUNT, "EURUSD", "SELL", 0.2, action_id="map-eur-1")
    assert (euro.status, euro.symbol, euro.broker_symbol) == ("FILLED", "EURUSD", "EURUSD.m")
    assert sorted(p.symbol for p in terminal.account.positions.values()) == ["EURUSD.m", "GOLD"]

    opened = await next_push(feed, OpenedEvent, lambda e: e.action_id == "map-gold-1")
    assert (opened.data.symbol, opened.data.broker_symbol) == ("XAUUSD", "GOLD")  # type: ignore[union-attr]
    both = {"XAUUSD": "GOLD", "EURUSD": "EURUSD.m"}
    snapshot = await next_push(feed, PositionUpdate, lambda u: len(u.positions) == 2)
    assert isinstance(snapshot.data, PositionUpdate)
    assert {p.symbol: p.broker_symbol for p in snapshot.data.positions} == both
    tick = await next_push(feed, PriceTick, lambda t: t.symbol == "XAUUSD")
    assert isinstance(tick.data, PriceTick)
    assert tick.data.broker_symbol == "GOLD"
    unmapped = await next_push(feed, PriceTick, lambda t: t.symbol == "GBPUSD")  # no rule explains it: as named
    assert isinstance(unmapped.data, PriceTick)
    assert unmapped.data.broker_symbol is None

    # the cache, the book and the kept history speak canonical symbols too
    async def cached() -> bool:
        positions = await executor.cache.positions(ACCOUNT)
        return sorted(p.symbol for p in positions or []) == ["EURUSD", "XAUUSD"]

    await wait_for(cached, "the cache to hold both positions under canonical names")
    await wait_for(lambda: executor.cache.price("XAUUSD"), "a price of XAUUSD in the cache")  # type: ignore[arg-type,return-value]
    assert await executor.cache.price("GOLD") is None
    entry = await executor.state.book.get(f"{ACCOUNT}.{gold.mt_ticket}")
    assert unpack(entry.value or b"", BookEntry).symbol == "XAUUSD"
    kept = await nc.jetstream().get_last_msg(subjects.EVENTS_STREAM, subjects.event(ACCOUNT, "OPENED"))
    history = unpack(kept.data or b"", OpenedEvent)
    assert (history.symbol, history.broker_symbol) == ("EURUSD", "EURUSD.m")

    # a symbol the terminal does not know is refused before sending, naming the symbol and the account
    unknown = await admin.open(ACCOUNT, "GBPUSD", "BUY", 0.1, action_id="map-gbp-1")  # GBPUSD.m by the suffix
    assert (unknown.status, unknown.code) == ("INVALID", errors.UNKNOWN_SYMBOL)
    assert "symbol GBPUSD (sent as GBPUSD.m by the account's symbol map)" in unknown.message
    assert f"account {ACCOUNT}" in unknown.message
    assert terminal.account.received == ["map-gold-1", "map-eur-1"]

    # closes by ticket and by positionId work on mapped positions
    closed = await admin.close(ACCOUNT, mt_ticket=gold.mt_ticket)
    assert closed.status == "FILLED"
    assert euro.position_id is not None
    closed_euro = await admin.close(ACCOUNT, position_id=euro.position_id)
    assert closed_euro.status == "FILLED"
    assert terminal.account.positions == {}

    # a change applies to the next order without a restart
    await admin.set_symbols(ACCOUNT, {"GBPUSD": "GBPUSD"})
    await mapped_everywhere(gateway, executor, "GBPUSD", "GBPUSD")
    pound = await admin.open(ACCOUNT, "GBPUSD", "BUY", 0.1, action_id="map-gbp-2")
    assert (pound.status, pound.symbol, pound.broker_symbol) == ("FILLED", "GBPUSD", None)
    await admin.remove_symbols(ACCOUNT, ["XAUUSD"])  # XAUUSD is XAUUSD.m by the suffix now: unknown
    await wait_for(lambda: executor.maps.mapping(ACCOUNT).to_broker("XAUUSD") == "XAUUSD.m", "the removal")  # type: ignore[union-attr]
    again = await admin.open(ACCOUNT, "XAUUSD", "BUY", 0.1, action_id="map-gold-2")
    assert (again.status, again.code) == ("INVALID", errors.UNKNOWN_SYMBOL)
    # a rule's name taken by an entry cannot be sent (it would come back as the entry's symbol)
    await admin.set_symbols(ACCOUNT, {"XAUUSD": "GOLD"}, suffix="")
    await mapped_everywhere(gateway, executor, "XAUUSD", "GOLD")
    taken = await admin.open(ACCOUNT, "GOLD", "BUY", 0.1, action_id="map-gold-3")
    assert (taken.status, taken.code) == ("INVALID", errors.SYMBOL_MAP_CONFLICT)
    closes = [closed.action_id, closed_euro.action_id]
    assert terminal.account.received == ["map-gold-1", "map-eur-1", *closes, "map-gbp-2"]
    await feed.close()


async def test_symbol_maps_over_the_client_api_are_for_admin_tokens_only(
    gateway: Gateway, admin: HedgebridgeClient, secret: str
) -> None:
    async with await HedgebridgeClient.connect(f"ws://127.0.0.1:{gateway.port}/client", system_token(secret)) as system:
        for call in (
            system.set_symbols(ACCOUNT, {"EURUSD": "EURUSD.m"}),
            system.remove_symbols(ACCOUNT, ["EURUSD"]),
            system.symbol_maps(ACCOUNT),
        ):
            with pytest.raises(ClientError) as refused:
                await call
            assert (refused.value.code, refused.value.field) == (errors.FORBIDDEN, "body.type")
            assert "admin" in refused.value.message
    assert await admin.symbol_maps(ACCOUNT) == []  # nothing was written
    await admin.set_symbols(ACCOUNT, {"XAUUSD": "GOLD", "EURUSD": "EURUSD.m"})
    with pytest.raises(ClientError) as conflict:
        await admin.set_symbols(ACCOUNT, {"GOLD2": "GOLD"})
    assert (conflict.value.code, conflict.value.field) == (errors.SYMBOL_MAP_CONFLICT, "body.symbols.XAUUSD")
    assert "GOLD2 and XAUUSD would both be GOLD" in conflict.value.message
    with pytest.raises(ClientError) as missing:
        await admin.remove_symbols(ACCOUNT, ["USDJPY"])
    assert (missing.value.code, missing.value.field) == (errors.INVALID_REQUEST, "body.symbols")
    with pytest.raises(ClientError) as malformed:
        await admin.set_symbols(ACCOUNT, {"EUR USD": "X"})
    assert malformed.value.code == errors.INVALID_FIELD
    await admin.set_symbols("SM2", suffix=".pro")
    maps = await admin.symbol_maps()
    assert [(m.account_id, m.symbols, m.suffix) for m in maps] == [
        (ACCOUNT, {"EURUSD": "EURUSD.m", "XAUUSD": "GOLD"}, ""),
        ("SM2", {}, ".pro"),
    ]
    after = await admin.remove_symbols(ACCOUNT, ["EURUSD", "XAUUSD"])
    assert after.symbols == {}
    assert [m.account_id for m in await admin.symbol_maps()] == ["SM2"]  # an empty map is listed nowhere


async def cli(nats_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *hedgebridge_command(),
        "symbols",
        *args,
        "--nats-url",
        nats_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HEDGEBRIDGE_NATS_URL": ""},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_sets_lists_and_removes_entries_that_the_services_follow(
    nats_server: NatsServer, executor: Executor
) -> None:
    url = nats_server.url
    code, out, err = await cli(url, "set", "--account", ACCOUNT, "EURUSD=EURUSD.m", "XAUUSD=GOLD")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["account", "symbol", "broker", "updated", "by"]
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        [ACCOUNT, "EURUSD", "EURUSD.m"],
        [ACCOUNT, "XAUUSD", "GOLD"],
    ]
    code, out, err = await cli(url, "set", "--account", ACCOUNT, "--suffix", ".m")
    assert code == 0, err
    assert out.splitlines()[-1].split()[:3] == [ACCOUNT, "*", "*.m"]

    def followed() -> bool:
        mapping = executor.maps.mapping(ACCOUNT)
        return mapping is not None and (mapping.to_broker("XAUUSD"), mapping.to_broker("USDJPY")) == (
            "GOLD",
            "USDJPY.m",
        )

    await wait_for(followed, "the executor to follow the CLI's changes")
    code, out, err = await cli(url, "list", "--json")
    assert code == 0, err
    (shown,) = json.loads(out)["maps"]
    stored = msgspec.convert(shown, SymbolMap)
    assert (stored.account_id, stored.symbols, stored.prefix, stored.suffix) == (
        ACCOUNT,
        {"EURUSD": "EURUSD.m", "XAUUSD": "GOLD"},
        "",
        ".m",
    )
    assert shown["updatedBy"] == "cli"
    assert "prefix" in shown
    # refusals: a conflict and an unknown entry are exit 5, a malformed entry exit 2; nothing changes
    code, _, err = await cli(url, "set", "--account", ACCOUNT, "GOLD2=GOLD")
    assert code == 5
    assert "GOLD2 and XAUUSD would both be GOLD" in err
    code, _, err = await cli(url, "rm", "--account", ACCOUNT, "USDJPY")
    assert code == 5
    assert "no entry for USDJPY" in err
    code, _, err = await cli(url, "set", "--account", ACCOUNT, "EURUSD")
    assert code == 2
    assert "CANONICAL=BROKER" in err
    code, _, err = await cli(url, "set", "--account", ACCOUNT)
    assert code == 2
    code, out, err = await cli(url, "rm", "--account", ACCOUNT, "EURUSD")
    assert code == 0, err
    await wait_for(lambda: executor.maps.mapping(ACCOUNT).to_broker("EURUSD") == "EURUSD.m", "the removal")  # type: ignore[union-attr]
    code, out, _ = await cli(url, "list", "--account", ACCOUNT)
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [[ACCOUNT, "XAUUSD", "GOLD"], [ACCOUNT, "*", "*.m"]]
    code, out, err = await cli(url, "list", "--account", "NOMAP")
    assert (code, out) == (0, "")
    assert "no symbol map for account NOMAP" in err


async def test_a_hedge_across_brokers_that_name_the_symbol_differently(
    gateway: Gateway,
    executor: Executor,
    coordinator: Coordinator,
    sims: StartSims,
    admin: HedgebridgeClient,
) -> None:
    """One canonical EURUSD hedged on a broker that calls it EURUSD and on one that calls it EURUSD.m; the exit
    closes both by the canonical positions the coordinator reads."""
    await admin.set_symbols("SM-M", suffix=".m")
    await wait_for(lambda: all(m.mapping("SM-M") is not None for m in (gateway.symbol_maps, executor.maps)), "maps")
    (plain,) = await sims(["SM-P"], fill_latency_ms=0, tick_interval_ms=0)
    (suffixed,) = await sims(["SM-M"], symbols=("EURUSD.m",), fill_latency_ms=0, tick_interval_ms=0)
    legs = [Leg("SM-P", "EURUSD", "BUY", 0.3), Leg("SM-M", "EURUSD", "SELL", 0.3)]
    entry = await admin.hedge(legs, action_id="map-hedge-1", follow=True)
    assert entry.state == "COMPLETED", entry
    assert [(leg.account_id, leg.symbol, leg.status) for leg in entry.legs] == [
        ("SM-P", "EURUSD", "FILLED"),
        ("SM-M", "EURUSD", "FILLED"),
    ]
    assert [p.symbol for p in plain.account.positions.values()] == ["EURUSD"]
    assert [p.symbol for p in suffixed.account.positions.values()] == ["EURUSD.m"]
    left = await admin.exit("map-hedge-1", follow=True)
    assert (left.kind, left.state) == ("EXIT", "COMPLETED")
    assert plain.account.positions == {}
    assert suffixed.account.positions == {}


async def test_a_bridge_started_before_any_map_exists_follows_the_first_one(bridges: Bridges, nc: NatsClient) -> None:
    """The MT5 bridge makes no JetStream state: with no bucket yet (no service made it, no map was set) it
    starts without maps and follows the bucket once ``hedgebridge symbols set`` (here its library) makes it."""
    terminal = await bridges.start("SM-B")
    assert terminal.bridge.symbol_maps.mapping("SM-B") is None
    kv = await symbol_maps.bucket(nc.jetstream())
    await symbol_maps.change(kv, SetSymbolMap(account_id="SM-B", symbols={"EURO": "EURUSD"}), "test")
    await wait_for(lambda: terminal.bridge.symbol_maps.mapping("SM-B") is not None, "the bridge to find the map")
    mapping = terminal.bridge.symbol_maps.mapping("SM-B")
    assert mapping is not None
    assert mapping.to_canonical("EURUSD") == "EURO"
