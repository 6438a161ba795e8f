"""The commands of many terminals through one gateway's command router (``terminal_link/commands.py``): each
command reaches its own terminal and only it, a terminal's commands come in the order they were published,
one terminal's slow command does not hold up another's, and a terminal gone (or moved to another gateway)
leaves no interest here, so a command for it finds the holder or gets "no responders"."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import logs
from hedgebridge.common.servers import NatsServer
from hedgebridge.common.terminal_link.commands import CommandRouter
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import DeliveryAck, OpenCommand, Welcome, pack, subjects, unpack
from hedgebridge.protocol.errors import CloseCode

from ..conftest import gateway_config
from ..helpers import RawEa, deliver, ea_token, open_command, wait_for

pytestmark = pytest.mark.integration

TERMINALS = 25


async def test_each_command_reaches_its_own_terminal_among_many(
    gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    accounts = [f"M{i}" for i in range(TERMINALS)]
    terminals = [await RawEa.connect(ea_url, ea_token(secret, a)) for a in accounts]
    welcomes = [await ea.recv_type(Welcome) for ea in terminals]
    sessions = [w.session_id for w in welcomes if isinstance(w, Welcome)]
    assert gateway.terminals.bus.commands.held == TERMINALS  # one interest per terminal, one router for all
    for i in [*range(1, TERMINALS, 2), *range(0, TERMINALS, 2)]:  # in an order unlike the connections'
        ack = await deliver(nc, accounts[i], open_command(accounts[i], f"p-{i}"))
        assert ack.delivered
        assert ack.session_id == sessions[i]
    for i, ea in enumerate(terminals):  # the first command each terminal got is its own: none went astray
        command = await ea.recv_type(OpenCommand)
        assert isinstance(command, OpenCommand)
        assert (command.account_id, command.position_id) == (accounts[i], f"p-{i}")
        await ea.close()
    await wait_for(lambda: gateway.terminals.bus.commands.held == 0, "the interests of the closed terminals to go")
    # nobody holds it: "no responders" (once the UNSUB is at the server), not a request nobody answers
    await wait_for(lambda: _no_responders(nc, subjects.command(accounts[17])), "no responders for a closed terminal")


async def test_a_terminals_commands_come_in_the_order_they_were_published(
    ea_url: str, secret: str, nc: NatsClient
) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "ORD"))
    await ea.recv_type(Welcome)
    await deliver(nc, "ORD", open_command("ORD", "p-first"))
    await ea.recv_type(OpenCommand)
    inbox = nc.new_inbox()
    acks: list[DeliveryAck] = []

    async def on_ack(msg: Msg) -> None:
        acks.append(unpack(msg.data, DeliveryAck))

    await nc.subscribe(inbox, cb=on_ack)
    for n in range(20):  # published back to back, each handled after the one before
        await nc.publish(subjects.command("ORD"), pack(open_command("ORD", f"p-{n}")), reply=inbox)
    await nc.flush()
    received = [await ea.recv_type(OpenCommand) for _ in range(20)]
    assert [c.position_id for c in received if isinstance(c, OpenCommand)] == [f"p-{n}" for n in range(20)]
    await wait_for(lambda: len(acks) == 20, "the 20 acks")
    assert all(a.delivered for a in acks)
    await ea.close()


async def _no_responders(nc: NatsClient, subject: str) -> bool:
    """Whether a request on ``subject`` finds no subscriber at the server."""
    try:
        await nc.request(subject, b"{}", timeout=0.5)
    except NoRespondersError:
        return True
    except NatsTimeoutError:
        return False
    return False


@contextlib.asynccontextmanager
async def _running(gateway: Gateway) -> AsyncIterator[Gateway]:
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def second_gateway(nats_server: NatsServer, secret: str) -> AsyncIterator[Gateway]:
    async with _running(Gateway(gateway_config(nats_server.url, secret, id="gw-test-2"))) as other:
        yield other


async def _welcomed(gateway: Gateway, secret: str, account: str) -> tuple[RawEa, str]:
    """A terminal of ``account`` connected to ``gateway``, and its session id from WELCOME."""
    ea = await RawEa.connect(f"ws://127.0.0.1:{gateway.port}/ea", ea_token(secret, account))
    welcome = await ea.recv_type(Welcome)
    assert isinstance(welcome, Welcome)
    return ea, welcome.session_id


async def test_a_terminal_moved_to_another_gateway_gets_no_more_commands_here(
    gateway: Gateway, second_gateway: Gateway, secret: str, nc: NatsClient
) -> None:
    here, _ = await _welcomed(gateway, secret, "MOV")
    stays, _ = await _welcomed(gateway, secret, "STAY")
    moved, session = await _welcomed(second_gateway, secret, "MOV")
    assert await here.closed() == CloseCode.SESSION_REPLACED
    await wait_for(lambda: gateway.terminals.bus.commands.held == 1, "the first gateway to drop MOV's interest")
    for n in range(5):  # each answered once, by the gateway holding it now
        ack = await deliver(nc, "MOV", open_command("MOV", f"p-{n}"))
        assert ack.delivered
        assert ack.session_id == session
        command = await moved.recv_type(OpenCommand)
        assert isinstance(command, OpenCommand)
        assert command.position_id == f"p-{n}"
    ack = await deliver(nc, "STAY", open_command("STAY", "p-s"))  # the terminal that stayed still gets its own
    assert ack.delivered
    assert isinstance(await stays.recv_type(OpenCommand), OpenCommand)
    await moved.close()
    await stays.close()


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
        assert router.held == 1
        await wait_for(lambda: _no_responders(nc, "hb.test.fast"), "the interest to leave the server")
    finally:
        release.set()
        await router.stop()
        with contextlib.suppress(Exception):
            await holder.close()
