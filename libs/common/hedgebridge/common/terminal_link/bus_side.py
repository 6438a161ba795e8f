"""The bus side of the terminals a process holds, once for every kind of holder: the links held by
account, their commands on ``hb.ea.<account>.cmd`` answered with a DeliveryAck, TERMINAL_STATUS on
``hb.ea.<account>.status``, the hand-over to a newer connection elsewhere, ``hb.gw.sync`` and the events
published on ``hb.ea.<account>.evt.<type>``. The decisions are ``rules.py``'s; this module only moves
messages between NATS and the links.

Events enter the backbone here, so this is where they are translated into canonical symbols (``maps``, the
symbol maps' mirror; ``symbol_map.inbound``): the cache, the book, the monitor, the coordinator and every
client see canonical symbols, the broker's name kept as ``brokerSymbol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hedgebridge.protocol import (
    EVENT_TYPES,
    Command,
    DeliveryAck,
    Event,
    Message,
    ProtocolError,
    TerminalStatus,
    pack,
    subjects,
    type_name,
    unpack,
    utcnow,
)

from .. import logs, symbol_map
from ..obs import metrics
from ..symbol_maps import MapMirror
from . import rules
from .commands import CommandRouter
from .link import TerminalLink

SNAPSHOTS_REQUESTED = "snapshots requested"
SUBJECTS_CACHED = 1 << 16  # event subjects kept made (an account sends a handful of types)


L = TypeVar("L", bound=TerminalLink)


class TerminalBus(Generic[L]):
    """``holder_id`` names this process in TERMINAL_STATUS (``gatewayId``); ``status_subject`` is the status
    subject it watches for hand-overs (every account's, or its one account's)."""

    def __init__(
        self,
        holder_id: str,
        nats: Callable[[], NatsClient],
        log: logs.Logger,
        *,
        status_subject: str,
        maps: MapMirror | None = None,
    ) -> None:
        self.holder_id = holder_id
        self.maps = maps
        self._nats = nats
        self._log = log
        self._status_subject = status_subject
        self.links: dict[str, L] = {}  # the link held for each account
        self.status_sub: Subscription | None = None
        self._sync_sub: Subscription | None = None
        self._successors: dict[str, str] = {}  # account -> the session that took it from here
        self._released: dict[str, asyncio.Event] = {}
        self.commands: CommandRouter[L] = CommandRouter(self._on_command, log)  # every link's command subscription

    @property
    def nats(self) -> NatsClient:
        return self._nats()

    async def start(self) -> None:
        """Watch the terminal statuses (hand-overs), then the sync requests."""
        self.status_sub = await self.nats.subscribe(self._status_subject, cb=self._on_status)
        self._sync_sub = await self.nats.subscribe(subjects.GATEWAY_SYNC, cb=self._on_sync_all)

    async def stop(self) -> None:
        for sub in (self.status_sub, self._sync_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self.status_sub = self._sync_sub = None
        await self.commands.stop()

    # --- the links held -------------------------------------------------------------------------------------

    def hold(self, link: L) -> L | None:
        """``link`` becomes the one held for its account; returns the one it replaces."""
        previous = self.links.get(link.account_id)
        self.links[link.account_id] = link
        return previous

    def drop(self, link: L) -> None:
        """``link`` is no longer held (a newer one, already held, stays)."""
        if self.links.get(link.account_id) is link:
            del self.links[link.account_id]

    async def subscribe_commands(self, link: L) -> Subscription:
        """The account's commands for ``link`` (``commands.py``: its own interest at the server, one router
        in this process for all links)."""
        return await self.commands.subscribe(self.nats, subjects.command(link.account_id), link)

    async def announce(self, link: L) -> None:
        """TERMINAL_STATUS CONNECTED, flushed: once it returns, commands for the account reach ``link``."""
        await self.publish_status(link, "CONNECTED")
        await self.nats.flush()

    async def publish_status(self, link: L, status: rules.Status, reason: str = "") -> None:
        event = rules.status_event(
            account_id=link.account_id,
            session_id=link.session_id,
            holder_id=self.holder_id,
            version=link.version,
            remote=link.remote,
            status=status,
            reason=reason,
            now=utcnow(),
        )
        await self.nats.publish(subjects.status(link.account_id), pack(event))

    async def publish_event(self, account_id: str, message: Message, headers: Mapping[str, str] | None = None) -> None:
        """An event of the terminal on ``hb.ea.<account>.evt.<type>``, in canonical symbols."""
        subject, payload = self.event_payload(account_id, message)
        await self._nats().publish(subject, payload, headers=dict(headers) if headers else None)

    def event_payload(self, account_id: str, message: Message) -> tuple[str, bytes]:
        """The subject and msgpack of an event as ``publish_event`` publishes it (a holder's read loop may
        publish it itself: one coroutine less per event)."""
        if self.maps is not None and isinstance(message, EVENT_TYPES):
            mapping = self.maps.mapping(account_id)
            if mapping is not None:  # None: the account's names are the broker's
                event: Event = message  # type: ignore[assignment]
                message = symbol_map.inbound(event, mapping)
        return _event_subject(account_id, type(message)), pack(message)

    async def publish_refusal(self, account_id: str, error: Message) -> None:
        """A terminal's ERROR about a command it did not execute, on ``hb.ea.<account>.refused``."""
        await self.nats.publish(subjects.refused(account_id), pack(error))

    async def successor_gone(self, account_id: str) -> None:
        """Until the connection that took ``account_id`` from here ends (at once when none did)."""
        if account_id in self._successors:
            await self._released.setdefault(account_id, asyncio.Event()).wait()

    # --- NATS callbacks ---------------------------------------------------------------------------------------

    async def _on_command(self, link: L, msg: Msg) -> None:
        """Hand a command from NATS to ``link`` and acknowledge the delivery."""
        holder = self.links.get(link.account_id)
        replaced = holder is not None and holder is not link
        screened = rules.screen_command(msg.data, link.account_id, replaced=replaced, unavailable=link.unavailable())
        if screened is None:
            return
        if isinstance(screened, DeliveryAck):
            await _ack(msg, screened)
            return
        if not await link.wait_ready():
            await _ack(msg, rules.not_ready())
            return
        delivery = await link.deliver(screened, msg)
        await _ack(msg, rules.delivery_ack(delivery, link.session_id))

    async def _on_sync_all(self, msg: Msg) -> None:
        """Ask every terminal held here for fresh snapshots (the cache is being rebuilt)."""
        reason = rules.sync_reason(msg.data)
        for link in list(self.links.values()):
            await link.request_sync(reason)
        self._log.info(SNAPSHOTS_REQUESTED, terminals=len(self.links), reason=reason)

    async def _on_status(self, msg: Msg) -> None:
        """A newer connection elsewhere for an account held here: hand it over."""
        try:
            event = unpack(msg.data, TerminalStatus)
        except ProtocolError:
            return
        account = event.account_id
        if rules.releases(event, self._successors.get(account)):
            del self._successors[account]
            self._released.pop(account, asyncio.Event()).set()
            return
        link = self.links.get(account)
        held = link.session_id if link is not None else None
        if link is not None and rules.hands_over(event, session_id=held, connected_at=link.connected_at):
            self._successors[account] = event.session_id
            self._released[account] = asyncio.Event()
            await link.replaced(event)


@functools.lru_cache(maxsize=SUBJECTS_CACHED)
def _event_subject(account_id: str, kind: type[Message]) -> str:
    """``hb.ea.<account>.evt.<type>``, made (and the account id checked) once per account and type."""
    return subjects.event(account_id, type_name(kind))


def refuse_late(log: logs.Logger, account_id: str, command: Command) -> rules.Delivery:
    """A command ``rules.fenced`` at the write: counted, logged, not sent (``Delivery.FENCED``)."""
    kind = type_name(command)
    metrics.COMMANDS_FENCED.labels(kind).inc()
    not_after = getattr(command, "not_after", None)
    fields = {"account": account_id, "type": kind, "action": getattr(command, "action_id", None)}
    log.warning("command refused unsent: its notAfter passed", not_after=str(not_after), **fields)
    return rules.Delivery.FENCED


async def _ack(msg: Msg, ack: DeliveryAck) -> None:
    if msg.reply:
        with contextlib.suppress(Exception):
            await msg.respond(pack(ack))
