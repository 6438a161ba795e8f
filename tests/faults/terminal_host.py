"""``python -m tests.faults.terminal_host``: simulated terminals (libs/sim) as an OS process of their own, for
the fault suite.

Each terminal connects to the gateways in turn (the next one after a drop), and writes what it does to a
journal (JSON lines): ``connected``, every ``command`` read, every ``execution`` (fresh or a repeat of an
earlier one), every ``dropped``. Lines on stdin steer it:

- ``arm ACCOUNT STEP``: the account's next OPEN/CLOSE drops the connection at STEP: ``delivered`` (read, the
  connection goes before it executes; it is not executed), ``executed`` (executed, the connection goes before
  the report, which is sent after the reconnect), ``lost`` (executed, the report is never sent), ``reported``
  (executed and reported, then the connection goes);
- ``state``: one JSON line on stdout with every account's open tickets, balance and connection state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import IO

from hedgebridge.common import auth
from hedgebridge.protocol import CloseCommand, ModifyCommand, OpenCommand, SyncCommand
from hedgebridge.sim import SimConfig
from hedgebridge.sim.account import SimFault
from hedgebridge.sim.terminal import SimTerminal, make_terminals, run_terminals

STEPS = ("delivered", "executed", "lost", "reported")


class Journal:
    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def write(self, event: str, **fields: object) -> None:
        self.handle.write(json.dumps({"e": event, "t": time.time(), **fields}) + "\n")
        self.handle.flush()


class Connected(asyncio.Event):
    """The terminal's ``connected`` event, journaled each time it is set."""

    def __init__(self, on_set: Callable[[], None]) -> None:
        super().__init__()
        self.on_set = on_set

    def set(self) -> None:
        if not self.is_set():
            self.on_set()
        super().set()


class FaultTerminal:
    """Wraps a SimTerminal: rotates gateways on reconnect, journals, and drops at an armed step."""

    def __init__(self, terminal: SimTerminal, urls: list[str], journal: Journal) -> None:
        self.terminal = terminal
        self.urls = urls
        self.journal = journal
        self.armed: str | None = None
        self._attempt = 0
        session = terminal._session
        execute = terminal._execute
        account = terminal.account
        opened, closed = account.open, account.close

        async def rotating_session() -> None:
            terminal.url = urls[self._attempt % len(urls)]
            self._attempt += 1
            await session()

        async def journaled_execute(command: OpenCommand | CloseCommand | ModifyCommand | SyncCommand) -> None:
            if isinstance(command, SyncCommand | ModifyCommand):  # the load sends no MODIFY: not journaled
                await execute(command)
                return
            kind = "OPEN" if isinstance(command, OpenCommand) else "CLOSE"
            journal.write("command", account=account.account_id, action_id=command.action_id, type=kind)
            step, self.armed = self.armed, None
            if step == "delivered":
                self._abort(step)
                return
            if step == "lost":
                account.faults.appendleft(SimFault(report=False))
            await execute(command)
            if step is not None:
                self._abort(step)

        def journal_open(cmd: OpenCommand, *args: object) -> object:
            report = opened(cmd, *args)  # type: ignore[arg-type]
            self._executed("OPEN", cmd.action_id, report.status, report.already_executed, report.mt_ticket)
            return report

        def journal_close(cmd: CloseCommand, *args: object) -> object:
            report = closed(cmd, *args)  # type: ignore[arg-type]
            self._executed("CLOSE", cmd.action_id, report.status, report.already_executed, report.mt_ticket)
            return report

        terminal._session = rotating_session  # type: ignore[method-assign]
        terminal._execute = journaled_execute  # type: ignore[method-assign]
        account.open = journal_open  # type: ignore[assignment,method-assign]
        account.close = journal_close  # type: ignore[assignment,method-assign]
        terminal.connected = Connected(self._connected)

    def _executed(self, kind: str, action_id: str | None, status: str, repeat: bool, ticket: str | None) -> None:
        self.journal.write(
            "execution",
            account=self.terminal.account_id,
            action_id=action_id,
            type=kind,
            status=status,
            fresh=not repeat,
            ticket=ticket,
        )

    def _abort(self, step: str) -> None:
        ws = self.terminal._ws
        self.journal.write("dropped", account=self.terminal.account_id, step=step)
        if ws is not None:
            ws.transport.abort()  # as when the network goes away: no closing handshake

    def _connected(self) -> None:
        self.journal.write("connected", account=self.terminal.account_id, url=self.terminal.url)


def state_of(terminals: list[FaultTerminal]) -> dict[str, object]:
    return {
        f.terminal.account_id: {
            "tickets": sorted(str(t) for t in f.terminal.account.positions),
            "balance": f.terminal.account.balance,
            "connected": f.terminal.connected.is_set(),
        }
        for f in terminals
    }


async def serve(args: argparse.Namespace, handle: IO[str]) -> None:
    secret = os.environ["HEDGEBRIDGE_JWT_SECRET"]
    urls = args.urls.split(",")
    config = SimConfig(fill_latency_ms=args.fill_latency_ms, tick_interval_ms=args.tick_interval_ms)

    def token_for(account: str) -> str:
        return auth.mint_token(secret, role="ea", subject=account, ttl_s=86_400)

    sims = make_terminals(urls[0], args.accounts.split(","), token_for, config, seed=args.seed)
    journal = Journal(handle)
    terminals = [FaultTerminal(t, urls[i % len(urls) :] + urls[: i % len(urls)], journal) for i, t in enumerate(sims)]
    by_account = {f.terminal.account_id: f for f in terminals}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def control() -> None:
        while line := (await reader.readline()).decode().split():
            if line[0] == "arm" and line[2] in STEPS:
                by_account[line[1]].armed = line[2]
            elif line[0] == "state":
                sys.stdout.write(json.dumps(state_of(terminals)) + "\n")
                sys.stdout.flush()
        stop.set()  # stdin closed: the test went away

    steering = asyncio.create_task(control())
    await run_terminals(sims, stop)
    steering.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", required=True)
    parser.add_argument("--accounts", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fill-latency-ms", type=float, default=20.0)
    parser.add_argument("--tick-interval-ms", type=int, default=0)
    args = parser.parse_args()
    with open(args.journal, "a") as handle:
        asyncio.run(serve(args, handle))


if __name__ == "__main__":
    main()
