"""The commands of many terminals through one gateway's command router (``terminal_link/commands.py``): each
command reaches its own terminal and only it, a terminal's commands come in the order they were published,
one terminal's slow command does not hold up another's, and a terminal gone (or moved to another gateway)
leaves no interest here, so a command for it finds the holder or gets "no responders"."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from hedgebridge.common import logs
from hedgebridge.common.servers import NatsServer
from hedgebridge.common.terminal_link.commands import CommandRouter
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import DeliveryAck, OpenCommand, OpenMetadata, Welcome, pack, subjects, unpack, utcnow
from hedgebridge.protocol.errors import CloseCode

from ..conftest import gateway_config
from ..helpers import RawEa, deliver, ea_token, wait_for

pytestmark = pytest.mark.integration

TERMINALS = 25


def _open(account: str, position: str) -> OpenCommand:
    return OpenCommand(
        timestamp=utcnow(),
        account_id=account,
        position_id=position,
        action_id=f"a-{position}",
        symbol="EURUSD",
        side="BUY",
        volume=0.1,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u1"),
    )


async def test_each_command_reaches_its_own_terminal_among_many(
    gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    accounts = [f"M{i}" for i in range(TERMINALS)]
    terminals = [await RawEa.connect(ea_url, ea_token(secret, a)) for a in accounts]
    welcomes = [await ea.recv_type(Welcome) for ea in terminals]
    sessions = [w.session_id for w in welcomes if isinstance(w, Welcome)]
    assert gateway.terminals.bus.commands.held == TERMINALS  # one interest per terminal, one router for all
    for i in [*range(1, TERMINALS, 2), *range(0, TERMINALS, 2)]:  # in an order unlike the connections'
        ack = await deliver(nc, accounts[i], _open(accounts[i], f"p-{i}"))
        assert ack.delivered
        assert ack.session_id == sessions[i]
    for i, ea in enumerate(terminals):  # the first command each terminal got is its own: none went astray
        command = await ea.recv_type(OpenCommand)
        assert isinstance(command, OpenCommand)
        assert (command.account_id, command.position_id) == (accounts[i], f"p-{i}")
        await ea.close()
    await wait_for(lambda: gateway.terminals.bus.commands.held == 0, "the interests of the closed terminals to go")
    with pytest.raises(NoRespondersError):  # nobody holds it: "no responders", not a timeout
        await nc.request(subjects.command(accounts[17]), pack(_open(accounts[17], "p-x")), timeout=2)


async def test_a_terminals_commands_come_in_the_order_they_were_published(
    ea_url: str, secret: str, nc: NatsClient
) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "ORD"))
    await ea.recv_type(Welcome)
    await deliver(nc, "ORD", _open("ORD", "p-first"))
    await ea.recv_type(OpenCommand)
    inbox = nc.new_inbox()
    acks: list[DeliveryAck] = []

    async def on_ack(msg: Msg) -> None:
        acks.append(unpack(msg.data, DeliveryAck))

    await nc.subscribe(inbox, cb=on_ack)
    for n in range(20):  # published back to back, each handled after the one before
        await nc.publish(subjects.command("ORD"), pack(_open("ORD", f"p-{n}")), reply=inbox)
    await nc.flush()
    received = [await ea.recv_type(OpenCommand) for _ in range(20)]
    assert [c.position_id for c in received if isinstance(c, OpenCommand)] == [f"p-{n}" for n in range(20)]
    await wait_for(lambda: len(acks) == 20, "the 20 acks")
    assert all(a.delivered for a in acks)
    await ea.close()


async def test_a_terminal_moved_to_another_gateway_gets_no_more_commands_here(
    gateway: Gateway, nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    other = Gateway(gateway_config(nats_server.url, secret, id="gw-test-2"))
    await other.start()
    try:
        here = await RawEa.connect(f"ws://127.0.0.1:{gateway.port}/ea", ea_token(secret, "MOV"))
        await here.recv_type(Welcome)
        stays = await RawEa.connect(f"ws://127.0.0.1:{gateway.port}/ea", ea_token(secret, "STAY"))
        await stays.recv_type(Welcome)
        moved = await RawEa.connect(f"ws://127.0.0.1:{other.port}/ea", ea_token(secret, "MOV"))
        welcome = await moved.recv_type(Welcome)
        assert isinstance(welcome, Welcome)
        assert await here.closed() == CloseCode.SESSION_REPLACED
        await wait_for(lambda: gateway.terminals.bus.commands.held == 1, "the first gateway to drop MOV's interest")
        for n in range(5):  # each answered once, by the gateway holding it now
            ack = await deliver(nc, "MOV", _open("MOV", f"p-{n}"))
            assert ack.delivered
            assert ack.session_id == welcome.session_id
            command = await moved.recv_type(OpenCommand)
            assert isinstance(command, OpenCommand)
            assert command.position_id == f"p-{n}"
        ack = await deliver(nc, "STAY", _open("STAY", "p-s"))  # the terminal that stayed still gets its own
        assert ack.delivered
        assert isinstance(await stays.recv_type(OpenCommand), OpenCommand)
        await moved.close()
        await stays.close()
    finally:
        await other.stop()


async def test_one_links_slow_command_does_not_hold_up_another_links(nats_server: NatsServer, nc: NatsClient) -> None:
    import nats

    holder = await nats.connect(nats_server.url)
    release = asyncio.Event()
    handled: list[tuple[str, bytes]] = []

    async def handle(link: str, msg: Msg) -> None:
        if msg.data == b"slow":
            await release.wait()
        handled.append((link, msg.data))
        await msg.respond(b"ok")

    router: CommandRouter[str] = CommandRouter(handle, logs.get("test"))
    try:
        await router.subscribe(holder, "hb.test.slow", "slow-link")
        fast = await router.subscribe(holder, "hb.test.fast", "fast-link")
        await holder.flush()
        slow_reply = asyncio.create_task(nc.request("hb.test.slow", b"slow", timeout=30))
        await wait_for(lambda: router.busy == 1, "the slow command to be in hand")
        assert (await nc.request("hb.test.fast", b"fast", timeout=10)).data == b"ok"
        assert handled == [("fast-link", b"fast")]  # handled while the other link's command still waits
        release.set()
        assert (await slow_reply).data == b"ok"
        assert handled[-1] == ("slow-link", b"slow")
        await fast.unsubscribe()
        await holder.flush()  # the UNSUB is at the server before the request below
        assert router.held == 1
        with pytest.raises(NoRespondersError):  # the interest left the server with the subscription
            await nc.request("hb.test.fast", b"fast", timeout=2)
    finally:
        release.set()
        await router.stop()
        with contextlib.suppress(Exception):
            await holder.close()
