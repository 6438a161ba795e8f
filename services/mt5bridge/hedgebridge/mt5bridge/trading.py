"""OPEN, CLOSE and MODIFY on the terminal, as the EA executes them: the same magic number, order comment and
"already executed" search among positions and deals, the same checks before ``order_send`` and the same
retcodes; a repeated actionId is answered with its first outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hedgebridge.common import logs
from hedgebridge.protocol import CloseCommand, ModifyCommand, OpenCommand, retcodes

from . import translate as tr
from .book import Book
from .config import Mt5BridgeConfig
from .terminal import Terminal
from .translate import Outcome

log = logs.get("mt5bridge")

_DONE_MEMORY = 10_000  # outcomes of this run kept by actionId (positions and history answer for older ones)


class Trader:
    def __init__(self, terminal: Terminal, book: Book, config: Mt5BridgeConfig) -> None:
        self._terminal = terminal
        self._book = book
        self.config = config
        self._account_id = config.account_id
        self._done: dict[tuple[str, str], Outcome] = {}

    def _remember(self, kind: str, action_id: str | None, outcome: Outcome) -> None:
        if not action_id or not outcome.success:
            return  # a refused attempt is not an execution: the same actionId may come again
        if len(self._done) >= _DONE_MEMORY:
            self._done.clear()
        self._done[(kind, action_id)] = outcome

    async def _trading_blocked(self) -> Outcome | None:
        terminal = await self._terminal.query(self._terminal.mt5.terminal_info)
        if terminal is None or not terminal.trade_allowed or terminal.tradeapi_disabled:
            return tr.failed(retcodes.CLIENT_DISABLES_AT, "algorithmic trading is disabled in the terminal")
        account = await self._terminal.query(self._terminal.mt5.account_info)
        if account is None or not account.trade_expert:
            return tr.failed(
                retcodes.SERVER_DISABLES_AT, "the trade server does not allow expert trading on this account"
            )
        return None

    async def open(self, command: OpenCommand) -> Outcome:
        mt5 = self._terminal.mt5
        magic = self.config.magic
        action_id = command.action_id or ""
        if action_id:
            known = self._done.get(("OPEN", action_id))
            if known is not None:
                return tr.again(known)
            earlier = tr.find_open(action_id, magic, await self._terminal.positions(), ())
            if earlier is not None and earlier.ticket not in self._book.entries:  # open: the book names it
                self._book.remember(earlier.ticket, command.position_id, command.action_id)
            # only in the history: it closed already, and is not booked (which would report that close again)
            earlier = earlier or tr.find_open(action_id, magic, (), await self._terminal.history())
            if earlier is not None:
                self._remember("OPEN", action_id, earlier)
                return earlier
        symbol = command.symbol
        if not await self._terminal.query(mt5.symbol_select, symbol, True):
            return tr.failed(None, f"symbol {symbol} is not available on this account")
        info = await self._terminal.query(mt5.symbol_info, symbol)
        if info is None:
            return tr.failed(None, f"symbol {symbol} is not available on this account")
        problem = tr.volume_problem(symbol, command.volume, info.volume_min, info.volume_max, info.volume_step)
        if problem is not None:
            return tr.failed(retcodes.INVALID_VOLUME, problem)
        blocked = await self._trading_blocked()
        if blocked is not None:
            return blocked
        tick = await self._terminal.tick(symbol)
        if tick is None or tick.bid <= 0 or tick.ask <= 0:
            return tr.failed(retcodes.PRICE_OFF, f"no current price for {symbol}")
        request = tr.open_request(
            command,
            price=tick.ask if command.side == "BUY" else tick.bid,
            filling=tr.filling_for(info.filling_mode),
            magic=magic,
            deviation=self.config.deviation,
            volume_step=info.volume_step,
            digits=info.digits,
        )
        sent = self._terminal.clock.now_ms()
        result = await self._terminal.call(mt5.order_send, request)
        if result is None:
            outcome = await self._lost_result("OPEN", action_id, command.position_id)
        elif result.retcode == retcodes.PLACED:
            outcome = await self._placed(result.order)
        elif tr.is_fill(result.retcode):
            deals = await self._terminal.fill_deals(result, sent, self.config.deal_wait_ms)
            outcome = tr.fill_outcome(result, request["volume"], deals, closing=False)
        else:
            return tr.refused_outcome(result)
        if outcome.success:
            self._book.remember(outcome.ticket, command.position_id, command.action_id)
            self._remember("OPEN", action_id, outcome)
        return outcome

    async def _placed(self, order: int) -> Outcome:
        """Exchange execution: the order waits for its deal; its position appears with the order's ticket as its
        identifier."""
        for _ in range(100):
            found = await self._terminal.position(order)
            if found is not None:
                return Outcome(success=True, ticket=order, price=found.price_open, volume=found.volume)
            await asyncio.sleep(0.03)
        return Outcome(success=False, answered=False, message="order placed, no deal yet")

    async def _lost_result(self, kind: str, action_id: str, position_id: str) -> Outcome:
        """``order_send`` returned nothing: look for the execution; without one the outcome is unknown, which
        the trade-server code ERROR says (the executor reconciles it from a snapshot, never resends)."""
        code, text = await self._terminal.call(self._terminal.mt5.last_error)
        log.warning(
            "order_send returned no result", account=self._account_id, action=action_id, error=f"{text} ({code})"
        )
        if action_id:
            if kind == "OPEN":
                found = tr.find_open(
                    action_id, self.config.magic, await self._terminal.positions(), await self._terminal.history()
                )
            else:
                volumes = {p.identifier: p.volume for p in await self._terminal.positions()}
                found = tr.find_close(action_id, self.config.magic, await self._terminal.history(), volumes)
            if found is not None:
                return dataclasses.replace(found, already_executed=False)
        return tr.failed(retcodes.ERROR, f"order_send returned no result ({text}, {code}); the order may have executed")

    async def _find_position(self, command: CloseCommand | ModifyCommand) -> Any:
        """The open position a CLOSE or MODIFY names: ``mtTicket`` (its identifier) when given, else
        ``positionId`` (book, then comments)."""
        if command.mt_ticket is not None:
            if not command.mt_ticket.isdigit():
                return None
            return await self._terminal.position(int(command.mt_ticket))
        known = self._book.identifier_of(command.position_id)
        if known is not None:
            found = await self._terminal.position(known)
            if found is not None:
                return found
        wanted = tr.tag(command.position_id)
        return next((p for p in await self._terminal.positions() if tr.position_tag(p.comment) == wanted), None)

    async def close(self, command: CloseCommand) -> Outcome:
        mt5 = self._terminal.mt5
        magic = self.config.magic
        action_id = command.action_id or ""
        if action_id:
            known = self._done.get(("CLOSE", action_id))
            if known is not None:
                return tr.again(known)
            volumes = {p.identifier: p.volume for p in await self._terminal.positions()}
            earlier = tr.find_close(action_id, magic, await self._terminal.history(), volumes)
            if earlier is not None:
                self._remember("CLOSE", action_id, earlier)
                return earlier
        position = await self._find_position(command)
        if position is None:
            return tr.failed(retcodes.POSITION_CLOSED, "position not found or already closed")
        volume = tr.close_volume(command.volume, position.volume)
        info = await self._terminal.query(mt5.symbol_info, position.symbol)
        if info is None:
            return tr.failed(None, f"symbol {position.symbol} is not available on this account")
        if volume < position.volume:
            problem = tr.volume_problem(position.symbol, volume, info.volume_min, info.volume_max, info.volume_step)
            if problem is not None:
                return tr.failed(retcodes.INVALID_VOLUME, problem)
        blocked = await self._trading_blocked()
        if blocked is not None:
            return blocked
        tick = await self._terminal.tick(position.symbol)
        if tick is None or tick.bid <= 0 or tick.ask <= 0:
            return tr.failed(retcodes.PRICE_OFF, f"no current price for {position.symbol}")
        request = tr.close_request(
            command,
            position,
            volume=volume,
            bid=tick.bid,
            ask=tick.ask,
            filling=tr.filling_for(info.filling_mode),
            magic=magic,
            deviation=self.config.deviation,
            volume_step=info.volume_step,
        )
        sent = self._terminal.clock.now_ms()
        result = await self._terminal.call(mt5.order_send, request)
        if result is None:
            outcome = await self._lost_result("CLOSE", action_id, command.position_id)
        elif tr.is_fill(result.retcode):
            deals = await self._terminal.fill_deals(result, sent, self.config.deal_wait_ms)
            if not deals:
                log.warning(
                    "the closing deal did not reach the history in time: CLOSED carries an estimated profit",
                    account=self._account_id,
                    action=action_id,
                    order=result.order,
                    waited_ms=self.config.deal_wait_ms,
                )
            after = await self._terminal.position(position.identifier)
            share = request["volume"] / position.volume if position.volume > 0 else 0.0
            outcome = tr.fill_outcome(
                result,
                request["volume"],
                deals,
                closing=True,
                position_identifier=position.identifier,
                remaining=after.volume if after is not None else 0.0,
                profit_estimate=position.profit * share,
            )
        else:
            return tr.refused_outcome(result)
        if outcome.success:
            if outcome.remaining <= 0:
                self._book.forget(outcome.ticket)
            self._remember("CLOSE", action_id, outcome)
        return outcome

    async def modify(self, command: ModifyCommand) -> Outcome:
        """TRADE_ACTION_SLTP on the position the command names; the trade server's retcode is the answer (10016
        invalid stops, 10025 no changes), with the position's stops as they are after it."""
        mt5 = self._terminal.mt5
        action_id = command.action_id or ""
        known = self._done.get(("MODIFY", action_id)) if action_id else None
        if known is not None:
            return tr.again(known)
        position = await self._find_position(command)
        if position is None:
            return tr.failed(retcodes.POSITION_CLOSED, "position not found or already closed")
        current = (position.sl, position.tp)
        info = await self._terminal.query(mt5.symbol_info, position.symbol)
        if info is None:
            return tr.failed(None, f"symbol {position.symbol} is not available on this account")
        blocked = await self._trading_blocked()
        if blocked is not None:
            return dataclasses.replace(blocked, ticket=position.identifier, stops=current)
        request = tr.sltp_request(
            position, tr.stops_after(command, position), digits=info.digits, magic=self.config.magic
        )
        result = await self._terminal.call(mt5.order_send, request)
        if result is None:  # the outcome is unknown: the executor reconciles it from the position's stops
            code, text = await self._terminal.call(mt5.last_error)
            return tr.failed(
                retcodes.ERROR, f"order_send returned no result ({text}, {code}); the stops may have changed"
            )
        if result.retcode != retcodes.DONE:
            return dataclasses.replace(tr.refused_outcome(result), ticket=position.identifier, stops=current)
        outcome = Outcome(success=True, ticket=position.identifier, stops=(request["sl"], request["tp"]))
        self._remember("MODIFY", action_id, outcome)
        return outcome
