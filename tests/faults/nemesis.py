"""The nemesis: applies a schedule's faults to a running ``FaultStack`` under load, heals each one, measures how
long recovery took, and checks after each that the cache agrees with the terminals again.

Every wait is for a condition, with a deadline; a killed process is started again at once (as ``up``'s
supervision does, without its backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client as NatsClient

from hedgebridge.common.cache import RedisCache
from hedgebridge.protocol import subjects

from .checker import CacheCheck, Command, Execution, History
from .load import Load, StreamClient
from .schedule import Fault
from .stack import FaultStack

RECOVERY: dict[str, list[float]] = defaultdict(list)  # kind -> seconds, for the run's summary


def recovery_table(measured: dict[str, list[float]]) -> list[str]:
    lines = [f"{'recovery':<28} {'n':>3} {'median s':>9} {'max s':>7}"]
    for kind, values in sorted(measured.items()):
        lines.append(f"{kind:<28} {len(values):>3} {statistics.median(values):>9.2f} {max(values):>7.2f}")
    return lines


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float, *, fail: bool = True
) -> bool:
    """Poll ``predicate`` until true; at the deadline fail with ``what`` (or return False when not ``fail``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return True
        if time.monotonic() > deadline:
            if fail:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            return False
        await asyncio.sleep(0.02)


class Journal:
    """The terminals' journal, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, object]] = []
        self._offset = 0

    def poll(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return self.lines
        with open(self.path) as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete, _, _ = chunk.rpartition("\n")
        if complete:
            self._offset += len(complete) + 1
            self.lines += [json.loads(line) for line in complete.split("\n")]
        return self.lines

    def last(self, event: str, account: str) -> dict[str, object] | None:
        return next((x for x in reversed(self.poll()) if x["e"] == event and x["account"] == account), None)

    def since(self, event: str, account: str, t: float) -> bool:
        line = self.last(event, account)
        return line is not None and float(line["t"]) >= t  # type: ignore[arg-type]

    def into(self, history: History) -> None:
        for line in self.poll():
            account, action_id = str(line.get("account")), str(line.get("action_id"))
            if line["e"] == "command":
                history.commands.append(Command(account, action_id, str(line["type"]), float(line["t"])))  # type: ignore[arg-type]
            elif line["e"] == "execution":
                history.executions.append(
                    Execution(
                        account,
                        action_id,
                        str(line["type"]),
                        str(line["status"]),
                        bool(line["fresh"]),
                        float(line["t"]),  # type: ignore[arg-type]
                    )
                )


class Nemesis:
    def __init__(
        self,
        stack: FaultStack,
        load: Load,
        history: History,
        nc: NatsClient,
        streams: dict[str, StreamClient],
        log: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.load = load
        self.history = history
        self.nc = nc
        self.streams = streams  # gateway name -> the stream client connected to it
        self.journal = Journal(stack.journal)
        self.cache = RedisCache(stack.redis_url)
        self.log = log

    def measured(self, kind: str, since: float) -> None:
        RECOVERY[kind].append(time.monotonic() - since)

    async def run(self, faults: list[Fault]) -> None:
        for fault in faults:
            goal = self.load.finished + fault.after
            await until(lambda g=goal: self.load.finished >= g, f"the load to go on before {fault}", 60)  # type: ignore[misc]
            self.log(f"nemesis: {fault}")
            await getattr(self, "_" + fault.kind.replace("-", "_"))(fault)
            await self.converged(str(fault))

    # --- the faults ----------------------------------------------------------------------------------------

    async def _leader(self) -> str | None:
        try:
            info = await asyncio.wait_for(self.nc.jetstream().stream_info(subjects.EVENTS_STREAM), 2)
        except Exception:  # during an election the request may time out
            return None
        return info.cluster.leader if info.cluster is not None else None

    async def _kill_nats_leader(self, fault: Fault) -> None:
        await until(lambda: self._leader_known(), "the events stream to have a leader", 30)
        leader = await self._leader()
        node = next(n for n in self.stack.cluster.nodes if f"hedgebridge-{n.port}" == leader)
        await self._kill_node(node, leader)

    async def _leader_known(self) -> bool:
        return await self._leader() is not None

    async def _kill_nats_node(self, fault: Fault) -> None:
        await until(lambda: self._leader_known(), "the events stream to have a leader", 30)
        leader = await self._leader()
        node = next(n for n in self.stack.cluster.nodes if f"hedgebridge-{n.port}" != leader)
        await self._kill_node(node, None)

    async def _kill_node(self, node: object, leader: str | None) -> None:
        from hedgebridge.common.servers import NatsServer

        assert isinstance(node, NatsServer)
        start = time.monotonic()
        node.kill()
        if leader is not None:

            async def moved() -> bool:
                now = await self._leader()
                return now is not None and now != leader

            await until(moved, "another node to lead the events stream", 30)
            self.measured("stream leader change", start)
        done = self.load.finished
        await until(lambda: self.load.finished > done, "an answer while a NATS node is down", 60)
        await asyncio.to_thread(node.start)
        await asyncio.to_thread(self.stack.cluster.wait_healthy, 30, [node])

    async def _kill_gateway(self, fault: Fault) -> None:
        accounts = [a for a in self.stack.accounts if self._on_gateway(a, fault.target)]
        stream = self.streams[fault.target]
        stream.reconnected.clear()
        start, wall = time.monotonic(), time.time()
        self.stack.services[fault.target].kill()
        self.stack.services[fault.target].start()
        await until(
            lambda: all(self.journal.since("connected", a, wall) for a in accounts), "the terminals to reconnect", 30
        )
        self.measured("terminal reconnect (gateway)", start)
        await until(stream.reconnected.is_set, f"the stream client of {fault.target} to resume", 60)
        self.measured("stream resume", start)
        await asyncio.to_thread(self.stack.wait_ready, [fault.target], 30)

    def _on_gateway(self, account: str, gateway: str) -> bool:
        line = self.journal.last("connected", account)
        return line is not None and line["url"] == self.stack.gateway_url(gateway)

    async def _kill_executor(self, fault: Fault) -> None:
        await until(lambda: bool(self._orders_in_flight()), "an order in flight", 30)
        await self._kill_mid(fault.target, self._orders_in_flight, "executor take-over")

    async def _kill_executors(self, fault: Fault) -> None:
        await until(lambda: bool(self._orders_in_flight()), "an order in flight", 30)
        start = time.monotonic()
        caught = set(self._orders_in_flight())
        for name in ("ex-1", "ex-2"):
            self.stack.services[name].kill()
        for name in ("ex-1", "ex-2"):
            self.stack.services[name].start()
        await self._settled(caught, "executor take-over (both)", start)
        await asyncio.to_thread(self.stack.wait_ready, ["ex-1", "ex-2"], 30)

    def _orders_in_flight(self) -> list[str]:
        return [a for a in self.load.in_flight if not a.startswith("a-")]

    def _actions_in_flight(self) -> list[str]:
        return [a for a in self.load.in_flight if a.startswith("a-")]

    async def _kill_coordinator(self, fault: Fault) -> None:
        await until(lambda: bool(self._actions_in_flight()), "an action in flight", 30)
        await self._kill_mid("coordinator", self._actions_in_flight, "coordinator take-over")

    async def _kill_mid(self, name: str, in_flight: Callable[[], list[str]], kind: str) -> None:
        service = self.stack.services[name]
        start = time.monotonic()
        service.kill()
        caught = set(in_flight())
        service.start()
        await self._settled(caught, kind, start)
        await asyncio.to_thread(self.stack.wait_ready, [name], 30)

    async def _settled(self, caught: set[str], kind: str, start: float) -> None:
        """Wait until every submit in ``caught`` is settled (the first of: the client's answer, its final result
        on a stream), measured as ``kind``; then until each is answered."""

        def settled() -> bool:
            streamed = {a for s in self.streams.values() for a in s.settled}
            return not caught & set(self.load.in_flight) - streamed

        await until(settled, f"{sorted(caught)} to be settled", 90)
        self.measured(kind, start)
        await until(lambda: not caught & set(self.load.in_flight), f"{sorted(caught)} to be answered", 90)

    async def _kill_cache(self, fault: Fault) -> None:
        start = time.monotonic()
        self.stack.cache.kill()
        await asyncio.to_thread(self.stack.cache.start)
        await self.converged("kill-cache (rebuild)", measure=("cache rebuild", start))

    async def _flushall(self, fault: Fault) -> None:
        start = time.monotonic()
        await self.cache._redis.flushall()
        await self.converged("flushall (rebuild)", measure=("cache rebuild", start))

    async def _pause(self, fault: Fault) -> None:
        if fault.target == "nats":
            leader = await self._leader()
            node = next((n for n in self.stack.cluster.nodes if f"hedgebridge-{n.port}" == leader), None)
            pids = [node.pid] if node is not None and node.pid else []
        elif fault.target == "cache":
            pids = [self.stack.cache.pid] if self.stack.cache.pid else []
        else:
            process = self.stack.services[fault.target].process
            pids = [process.pid] if process is not None else []
        import os
        import signal

        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            done = self.load.finished
            await until(lambda: self.load.finished >= done + 2, "answers while paused", 4, fail=False)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    async def _drop_terminal(self, fault: Fault) -> None:
        self.journal.poll()
        wall = time.time()
        self.stack.tell(f"arm {fault.target} {fault.step}")
        await until(lambda: self.journal.since("dropped", fault.target, wall), f"{fault} to happen", 60)
        line = self.journal.last("dropped", fault.target)
        assert line is not None
        start = time.monotonic() - (time.time() - float(line["t"]))  # type: ignore[arg-type]
        await until(lambda: self.journal.since("connected", fault.target, wall), f"{fault.target} to reconnect", 30)
        self.measured("terminal reconnect (drop)", start)

    # --- the cache -----------------------------------------------------------------------------------------

    async def _agrees(self, account: str) -> str:
        """'' when the cache agrees with the terminal of ``account``, else how it does not."""
        state = (await asyncio.to_thread(self.stack.terminal_state))[account]
        try:
            positions = await self.cache.positions(account)
            balance = await self.cache.balance(account)
        except Exception as exc:  # the cache restarting
            return f"cache unreachable: {exc}"
        if positions is None:
            return "positions unknown"
        tickets = sorted(p.mt_ticket for p in positions)
        if tickets != state["tickets"]:
            return f"cache tickets {tickets}, terminal {state['tickets']}"
        if balance is None or abs(float(balance.get("balance", "nan")) - float(state["balance"])) > 1e-6:  # type: ignore[arg-type]
            return f"cache balance {balance and balance.get('balance')}, terminal {state['balance']}"
        return ""

    async def converged(self, fault: str, measure: tuple[str, float] | None = None) -> None:
        """Wait until the cache agreed with each terminal once since now; record the check."""
        pending = set(self.stack.accounts)
        last: dict[str, str] = {}

        async def agreed() -> bool:
            for account in sorted(pending):
                last[account] = await self._agrees(account)
                if not last[account]:
                    pending.discard(account)
            return not pending

        ok = await until(agreed, "the cache to converge", 30, fail=False)
        if ok and measure is not None:
            self.measured(*measure)
        detail = "; ".join(f"{a}: {last[a]}" for a in sorted(pending))
        self.history.cache_checks.append(CacheCheck(fault, ok, detail))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.cache.close()
