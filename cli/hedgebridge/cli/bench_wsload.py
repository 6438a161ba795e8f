"""Load for the gateway bench (``bench_gateway``): many WebSocket client connections from one process.

The connections are raw asyncio protocols (``bench_wsclient``), so one load process can hold thousands of
them with little CPU: what is measured is the server's cost, not the load's. Run as ``python -m
hedgebridge.cli.bench_wsload MODE`` with the JSON spec on stdin; while it opens its connections the process
prints ``progress <json>`` lines (opened, failed, refusals by reason), then ``ready`` once every connection
is open or given up, then works until stdin closes, then prints one JSON line of what it saw.

- ``idle``: every connection sends one HEARTBEAT a second (spread evenly over the second by one timer for
  all of them) and counts the frames it receives; its result carries the opening's tally (``opening``), so
  connections the server refused are reported with their reasons. The other modes need all of their
  connections: one that could not be opened ends the process (before ``ready``) with the reasons.
- ``receive``: every connection (a client API subscriber when ``subscribe`` is given) records the receipt
  time (``time.monotonic``, one clock for every process of the machine) of each frame carrying a marker
  ``<marker><number>``; the result is ``[[number, time], ...]``.
- ``blast``: after a ``go`` line on stdin, every connection writes its frames as fast as the server reads
  them (TCP back-pressure); prints ``sent <seconds>`` when all of them are written.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import nats

from hedgebridge.cli.bench_wsclient import Opening, RawClient, frame, open_clients, raise_fd_limit
from hedgebridge.protocol import (
    AccountUpdate,
    Message,
    Position,
    PositionUpdate,
    PriceTick,
    encode_frame,
    pack,
    utcnow,
)


def _all_open(opening: Opening) -> None:
    """This mode needs every connection: end the process with the reasons when one could not be opened."""
    if opening.failed:
        raise SystemExit(f"{opening.failed} of {opening.total} connections not opened: {opening.as_json()}")


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _readline() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def _idle(spec: dict[str, Any]) -> Any:
    received = 0

    def count(_i: int, _data: bytes) -> None:
        nonlocal received
        received += b"HEARTBEAT" in _data

    clients, opening = await open_clients(spec["url"], spec["headers"], count)
    beat = frame(spec["frame"].encode())
    print("ready", flush=True)
    stop = asyncio.create_task(_until_stdin_closes())
    ticks = 100  # the heartbeats of a second, sent in slices every 10 ms
    start, tick = time.monotonic(), 0
    sent = 0
    while not stop.done():
        for client in clients[tick % ticks :: ticks]:
            client.send(beat)
            sent += 1
        tick += 1
        delay = start + tick * spec["interval_s"] / ticks - time.monotonic()
        if delay > 0:
            await asyncio.wait([stop], timeout=delay)
    closed = sum(c.closed for c in clients)
    return {"sent": sent, "received": received, "closed": closed, "opening": opening.as_json()}


def _drop_index(on_frame: Callable[[bytes, bytes], None], answer: bytes, _index: int, data: bytes) -> None:
    on_frame(data, answer)


async def _receive(spec: dict[str, Any]) -> Any:
    """Groups of connections (``url``, ``headers``, optional ``subscribe`` frame and the text of its answer)."""
    marker: bytes = spec["marker"].encode()
    seen: list[tuple[int, float]] = []
    subscribed = asyncio.Semaphore(0)

    def on_frame(data: bytes, answer: bytes) -> None:
        now = time.monotonic()
        at = data.find(marker)
        if at >= 0:
            start = end = at + len(marker)
            while end < len(data) and 48 <= data[end] <= 57:
                end += 1
            seen.append((int(data[start:end]), now))
        elif answer and answer in data:
            subscribed.release()

    clients: list[RawClient] = []
    for group in spec["groups"]:
        answer: bytes = group.get("answer", "").encode()
        opened, opening = await open_clients(
            group["url"], group["headers"], functools.partial(_drop_index, on_frame, answer)
        )
        _all_open(opening)
        if group.get("subscribe"):
            for client in opened:
                client.send(frame(group["subscribe"].encode()))
            for _ in opened:
                await asyncio.wait_for(subscribed.acquire(), 60)
        clients += opened
    print("ready", flush=True)
    stop = asyncio.create_task(_until_stdin_closes())
    beat = frame(spec["frame"].encode())
    while not stop.done():
        await asyncio.wait([stop], timeout=1.0)
        for client in clients:
            client.send(beat)
    return seen


async def _publish(spec: dict[str, Any]) -> Any:
    """The raw NATS baseline of an ingest run: the same events, msgpack, published as fast as nats-py can."""
    nc = await nats.connect(spec["nats_url"])
    bodies = [(f"{spec['subject']}.{a}", pack(m)) for a in spec["accounts"] for m in ingest_messages(a, spec["count"])]
    print("ready", flush=True)
    await _readline()  # "go"
    cpu, started = time.process_time(), time.monotonic()
    for subject, body in bodies:
        await nc.publish(subject, body)
    await nc.flush()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    await nc.close()
    return {"seconds": elapsed, "cpu": cpu, "events": len(bodies)}


def end_symbol(account: str) -> str:
    """The symbol of an ingest run's last price from ``account``: in the cache once all its events are."""
    return f"END.{account}"[:32]


def ingest_messages(account: str, count: int, symbols: int = 20) -> list[Message]:
    """``count`` events of one terminal, as a busy one sends them: prices of ``symbols`` symbols, with an
    ACCOUNT_UPDATE and a POSITION_UPDATE every 20 events; the last one is a price of ``end_symbol``."""
    now = utcnow()
    position = Position(
        mt_ticket="1", symbol="SYM0", side="BUY", volume=0.1, open_price=1.1, current_price=1.1, profit=0.0
    )
    out: list[Message] = []
    for i in range(count - 1):
        if i % 20 == 18:
            out.append(
                AccountUpdate(
                    timestamp=now, account_id=account, balance=1e4, equity=1e4 + i, margin=0.0, free_margin=1e4
                )
            )
        elif i % 20 == 19:
            out.append(PositionUpdate(timestamp=now, account_id=account, positions=[position]))
        else:
            bid = 1.0 + i * 1e-6
            out.append(PriceTick(account_id=account, symbol=f"SYM{i % symbols}", bid=bid, ask=bid + 1e-4, time=now))
    out.append(PriceTick(account_id=account, symbol=end_symbol(account), bid=float(count), ask=float(count), time=now))
    return out


async def _blast(spec: dict[str, Any]) -> Any:
    clients, opening = await open_clients(spec["url"], spec["headers"], lambda _i, _data: None)
    _all_open(opening)
    frames = [[frame(encode_frame(m)) for m in ingest_messages(a, spec["count"])] for a in spec["accounts"]]
    print("ready", flush=True)
    await _readline()  # "go"
    started = time.monotonic()

    async def write(client: RawClient, mine: list[bytes]) -> None:
        chunk = 64
        for i in range(0, len(mine), chunk):
            client.send(b"".join(mine[i : i + chunk]))
            await client.drained()

    await asyncio.gather(*(write(c, f) for c, f in zip(clients, frames, strict=True)))
    print(f"sent {time.monotonic() - started:.6f}", flush=True)
    await _until_stdin_closes()
    return {"closed": sum(c.closed for c in clients)}


MODES = {"idle": _idle, "receive": _receive, "blast": _blast, "publish": _publish}


async def _main(mode: str) -> None:
    raise_fd_limit()
    spec = json.loads(sys.stdin.readline())
    result = await MODES[mode](spec)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
