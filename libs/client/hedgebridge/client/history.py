"""The history calls of ``HedgebridgeClient``: one page of the persisted events (HISTORY), or every page of them
in turn, oldest first, on top of its ``_exchange``."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TypedDict, Unpack

from hedgebridge.protocol import Message
from hedgebridge.protocol.client import (
    HISTORY_LIMIT_DEFAULT,
    HistoryEntry,
    HistoryPage,
    HistoryRequest,
    HistoryType,
)


class HistoryQuery(TypedDict, total=False):
    """What a history query asks for (each left out: no limit)."""

    accounts: Sequence[str] | None
    types: Sequence[HistoryType] | None
    since: datetime | None
    until: datetime | None


class HistoryCalls(ABC):
    """``history`` and ``history_entries``; the class that mixes this in provides ``_exchange``."""

    @abstractmethod
    async def _exchange(self, frame: HistoryRequest) -> Message:
        """Send the request and wait for its answer (ClientError for an ERROR)."""

    async def history(
        self,
        *,
        accounts: Sequence[str] | None = None,
        types: Sequence[HistoryType] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = HISTORY_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> HistoryPage:
        """One page of the persisted events (``types`` of ``accounts`` stored from ``since`` to ``until``,
        both aware datetimes), oldest first; ``cursor`` is the previous page's ``next_cursor``. Raises
        ClientError (FORBIDDEN ``accounts[i]``, INVALID_FIELD ``cursor``…) when the gateway refuses."""
        frame = HistoryRequest(
            request_id=uuid.uuid4().hex,
            accounts=None if accounts is None else list(accounts),
            types=None if types is None else list(types),
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
        reply = await self._exchange(frame)
        assert isinstance(reply, HistoryPage)
        return reply

    async def history_entries(
        self, *, page_size: int = HISTORY_LIMIT_DEFAULT, **query: Unpack[HistoryQuery]
    ) -> AsyncIterator[HistoryEntry]:
        """Every persisted event of the query (``accounts``, ``types``, ``since``, ``until`` as for ``history``)
        stored until now, page after page, oldest first."""
        cursor: str | None = None
        while True:
            page = await self.history(**query, limit=page_size, cursor=cursor)
            for entry in page.entries:
                yield entry
            if not page.more:
                return
            cursor = page.next_cursor
