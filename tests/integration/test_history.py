"""Reading back the persisted events against real servers: HISTORY on ``/client`` (through the SDK) pages
through HB_EVENTS and HB_ALERTS oldest first, filtered by account, type and time, scoped by the token, with
typed refusals; ``hedgebridge history`` prints the same as JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.client import ClientError, HedgebridgeClient
from hedgebridge.common import auth, streams
from hedgebridge.common.servers import NatsServer
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    ActionState,
    Alert,
    CloseOrder,
    Conflict,
    ModifyOrder,
    OpenOrder,
    errors,
    pack,
    subjects,
    utcnow,
)
from hedgebridge.protocol.client import HistoryEntry

from ..conftest import StartSims
from ..helpers import hedgebridge_command, order, wait_for


def client_url(gateway: Gateway) -> str:
    return f"ws://127.0.0.1:{gateway.port}/client"


async def everything(client: HedgebridgeClient, **query: object) -> list[HistoryEntry]:
    return [entry async for entry in client.history_entries(**query)]  # type: ignore[arg-type]


@pytest.fixture
async def desk(sims: StartSims, nc: NatsClient) -> dict[str, str]:
    """Two accounts that traded (H-1 opened and closed, H-2 opened and set a take profit), an action across both,
    a conflict and an alert of H-2 and a system alert: what the history holds."""
    await sims(["H-1", "H-2"], fill_latency_ms=0, tick_interval_ms=0)
    opened = await order(nc, OpenOrder(account_id="H-1", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.status == "FILLED"
    other = await order(nc, OpenOrder(account_id="H-2", symbol="GBPUSD", side="SELL", volume=0.2))
    assert other.status == "FILLED"
    modified = await order(nc, ModifyOrder(account_id="H-2", mt_ticket=other.mt_ticket, take_profit=0.5))
    assert modified.status == "FILLED"
    closed = await order(nc, CloseOrder(account_id="H-1", mt_ticket=opened.mt_ticket))
    assert closed.status == "FILLED"
    js = nc.jetstream()
    now = utcnow()
    state = ActionState(
        action_id="act-h", kind="HEDGE_ENTRY", state="COMPLETED", seq=3, timestamp=now, account_ids=["H-1", "H-2"]
    )
    await js.publish(subjects.action("act-h"), pack(state))
    conflict = Conflict(kind="ORPHAN_POSITION", account_id="H-2", mt_ticket="777", detected_at=now)
    await js.publish(subjects.CONFLICTS, pack(conflict))
    await streams.ensure_present(js, streams.alerts_stream())
    for rule, account in (("margin_level", "H-2"), ("nats_down", "")):
        alert = Alert(
            key=f"{rule}:{account}", rule=rule, account_id=account, state="OPEN", severity="CRITICAL",
            code="MARGIN_LOW", opened_at=now, updated_at=now, seq=1,
        )  # fmt: skip
        await js.publish(subjects.alert(rule, account), pack(alert))
    return {"ticket": str(opened.mt_ticket)}


async def test_history_pages_oldest_first_filtered_and_scoped(
    gateway: Gateway, secret: str, nc: NatsClient, desk: dict[str, str]
) -> None:
    admin = await HedgebridgeClient.connect(client_url(gateway), auth.mint_token(secret, role="admin", subject="a"))
    async with admin:
        entries: list[HistoryEntry] = []

        async def all_stored() -> bool:  # the terminals' reports are stored by the gateway, on their own time
            entries[:] = (await admin.history(limit=500)).entries
            return len(entries) == 12

        await wait_for(all_stored, lambda: f"12 events in the history, got {[e.type for e in entries]}")
        counts = {t: [e.type for e in entries].count(t) for t in {e.type for e in entries}}
        assert counts == {
            "OPENED": 2,
            "CLOSED": 1,
            "MODIFIED": 1,
            "ORDER_RESULT": 4,
            "ACTION_STATE": 1,
            "CONFLICT": 1,
            "ALERT": 2,
        }
        times = [e.time for e in entries]
        assert times == sorted(times)  # oldest first, across both streams
        assert {e.stream for e in entries} == {subjects.EVENTS_STREAM, subjects.ALERTS_STREAM}

        # pages of two give the same events, in the same order, and end
        paged = await everything(admin, page_size=2)
        assert [(e.stream, e.seq) for e in paged] == [(e.stream, e.seq) for e in entries]

        # filters: type, account, time
        [closed] = (await admin.history(types=["CLOSED"])).entries
        assert closed.accounts == ["H-1"]
        assert getattr(closed.data, "mt_ticket", None) == desk["ticket"]
        h1 = await everything(admin, accounts=["H-1"])
        assert [e.type for e in h1 if e.type in ("OPENED", "CLOSED")] == ["OPENED", "CLOSED"]
        assert all("H-1" in e.accounts for e in h1)
        assert {e.type for e in h1} == {"OPENED", "CLOSED", "ORDER_RESULT", "ACTION_STATE"}
        later = await everything(admin, since=entries[5].time)
        assert [(e.stream, e.seq) for e in later] == [(e.stream, e.seq) for e in entries if e.time >= entries[5].time]
        assert (await admin.history(since=entries[-1].time + timedelta(seconds=1))).entries == []

        # the last page's cursor follows the history: what is stored after it, and only that
        last = await admin.history(limit=500)
        assert not last.more
        again = await order(nc, OpenOrder(account_id="H-2", symbol="EURUSD", side="BUY", volume=0.3))
        assert again.status == "FILLED"
        new: list[HistoryEntry] = []

        async def follows() -> bool:
            new[:] = (await admin.history(types=["OPENED", "ORDER_RESULT"], cursor=last.next_cursor)).entries
            return len(new) == 2

        await wait_for(follows, lambda: f"the new order's events after the cursor, got {new}")
        assert all(e.accounts == ["H-2"] and e.seq > entries[-1].seq for e in new if e.stream == "HB_EVENTS")

    # a system token sees its accounts' events only: no action naming another account, no system alert
    token = auth.mint_token(secret, role="system", subject="s", accounts=["H-2"])
    async with await HedgebridgeClient.connect(client_url(gateway), token) as system:
        mine = await everything(system)
        assert {e.type for e in mine} == {"OPENED", "MODIFIED", "ORDER_RESULT", "CONFLICT", "ALERT"}
        assert all(e.accounts == ["H-2"] for e in mine)
        with pytest.raises(ClientError) as refused:
            await system.history(accounts=["H-2", "H-1"])
        assert (refused.value.code, refused.value.field) == (errors.FORBIDDEN, "accounts[1]")


async def test_history_refuses_what_it_cannot_answer_and_the_connection_stays(gateway: Gateway, secret: str) -> None:
    token = auth.mint_token(secret, role="admin", subject="a")
    async with await HedgebridgeClient.connect(client_url(gateway), token) as client:
        for query, field in (
            ({"cursor": "nonsense"}, "cursor"),
            ({"limit": 0}, "limit"),
            ({"limit": 501}, "limit"),
            ({"since": utcnow(), "until": utcnow() - timedelta(hours=1)}, "until"),
        ):
            with pytest.raises(ClientError) as refused:
                await client.history(**query)
            assert (refused.value.code, refused.value.field) == (errors.INVALID_FIELD, field), query
        await client.ws.send('{"type":"HISTORY","requestId":"h-9","since":"2026-11-24T10:00:00"}')
        await wait_for(lambda: bool(client.errors), "the ERROR for a time without a zone")
        [error] = client.errors
        assert (error.code, error.field, error.ref_id) == (errors.INVALID_FIELD, "since", "h-9")
        page = await client.history()  # the same connection still answers
        assert page.next_cursor.startswith("h1.")


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "HEDGEBRIDGE_HOME": "/nonexistent-hedgebridge-home"}
    process = await asyncio.create_subprocess_exec(
        *hedgebridge_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_history_command_prints_json_lines_oldest_first(
    gateway: Gateway, nats_server: NatsServer, nc: NatsClient, desk: dict[str, str]
) -> None:
    url = ("--nats-url", nats_server.url)
    lines: list[dict[str, object]] = []

    async def both_trades() -> bool:
        code, out, _ = await run_cli("history", *url, "--account", "H-1", "--type", "OPENED,closed")
        lines[:] = [json.loads(line) for line in out.splitlines()] if code == 0 else []
        return len(lines) == 2

    await wait_for(both_trades, lambda: f"H-1's OPENED and CLOSED, got {lines}", timeout_s=30)
    assert [(line["type"], line["accounts"]) for line in lines] == [("OPENED", ["H-1"]), ("CLOSED", ["H-1"])]
    closed = lines[1]["data"]
    assert isinstance(closed, dict)
    assert (closed["type"], closed["mtTicket"]) == ("CLOSED", desk["ticket"])

    code, out, err = await run_cli("history", *url, "--since", "1h", "--type", "ALERT", "--type", "CONFLICT")
    assert (code, err) == (0, "")
    assert [json.loads(line)["type"] for line in out.splitlines()] == ["CONFLICT", "ALERT", "ALERT"]
    code, out, _ = await run_cli("history", *url, "--limit", "3")
    assert code == 0
    assert len(out.splitlines()) == 3
    code, out, err = await run_cli("history", *url, "--since", "2099-01-01T00:00:00Z")
    assert (code, out, err) == (1, "", "hedgebridge: no event matched\n")
    for bad in (("--since", "yesterday"), ("--type", "OPENED,NOPE"), ("--limit", "0"), ("--account", "a b")):
        code, out, err = await run_cli("history", *url, *bad)
        assert (code, out) == (2, ""), bad
        assert f"argument {bad[0]}" in err
    code, _, err = await run_cli("history", *url, "--since", "1h", "--until", "2h")
    assert (code, err) == (2, "hedgebridge: --until is before --since\n")
    code, _, err = await run_cli("history", "--nats-url", "nats://127.0.0.1:1")
    assert code == 6
    assert "cannot reach NATS" in err
