"""``HISTORY`` on ``/client``: one page of the persisted events, read from JetStream (``common.history``),
within the token's scope.

The scope is the live topics' (``client_rules.sees``): a system token sees the trades, results and alerts of
its accounts, the actions it may watch and the conflicts of its accounts; an admin everything. Accounts asked
outside the scope are FORBIDDEN (``accounts[i]``); a cursor that is not a page's, or of a stream created anew,
and ``until`` before ``since`` are INVALID_FIELD; a history that cannot be read is NATS_UNREACHABLE (the
connection stays up: ask again).
"""

from __future__ import annotations

from typing import Protocol

from nats.aio.client import Client as NatsClient

from hedgebridge.common import logs
from hedgebridge.common.auth import Principal
from hedgebridge.common.history import reader
from hedgebridge.common.history.core import HistoryError, Query, decode_cursor, encode_cursor
from hedgebridge.protocol import Message, errors
from hedgebridge.protocol.client import HistoryData, HistoryPage, HistoryRequest

from .client_rules import Refusal, check_subscribe_scope, sees

log = logs.get("gateway")


class HistoryClient(Protocol):
    """What answering HISTORY needs of a client session."""

    principal: Principal
    session_id: str

    @property
    def nats(self) -> NatsClient: ...

    def enqueue(self, message: Message, urgent: bool = True) -> None: ...

    def error(self, refusal: Refusal, *, ref_type: str | None = None, ref_id: str | None = None) -> None: ...


async def answer(client: HistoryClient, frame: HistoryRequest) -> None:
    """Answer one HISTORY frame with a HISTORY_PAGE or an ERROR (refId: its requestId)."""
    principal = client.principal
    refusal = check_subscribe_scope(principal, frame.accounts)
    if refusal is not None:
        client.error(refusal, ref_type="HISTORY", ref_id=frame.request_id)
        return

    def visible(topic: str, account: str | None, data: HistoryData) -> bool:
        return sees(principal, None, topic, account, data)

    try:
        query = Query.of(frame)
        cursor = decode_cursor(frame.cursor) if frame.cursor is not None else {}
        scope = None if principal.is_admin else principal.accounts
        page = await reader.read_page(client.nats.jetstream(), query, cursor, scope=scope, visible=visible)
    except HistoryError as exc:
        client.error(Refusal(errors.INVALID_FIELD, exc.message, exc.field), ref_type="HISTORY", ref_id=frame.request_id)
        return
    except Exception as exc:
        log.warning("history read failed", session=client.session_id, error=repr(exc))
        refusal = Refusal(errors.NATS_UNREACHABLE, f"the history could not be read ({type(exc).__name__}); try again")
        client.error(refusal, ref_type="HISTORY", ref_id=frame.request_id)
        return
    client.enqueue(
        HistoryPage(
            request_id=frame.request_id,
            entries=page.entries,
            next_cursor=encode_cursor(page.cursor),
            more=page.more,
            scanned=page.scanned,
            expired=page.expired,
        ),
        urgent=False,
    )
