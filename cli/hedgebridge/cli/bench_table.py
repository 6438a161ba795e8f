"""The printed report of ``hedgebridge bench``: its first line (the machine, the libraries, what was asked)
and the table of its rows, each with its ratios to its baseline."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Iterator
from importlib.metadata import version

from hedgebridge.cli.bench_rows import Row
from hedgebridge.common import loop


def _fmt(value: float | None, suffix: str = "") -> str:
    return "" if value is None else f"{value:.2f}{suffix}"


def header(args: argparse.Namespace) -> str:
    machine = (
        f"hedgebridge bench — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, websockets {version('websockets')}, nats-py {version('nats-py')}, "
        f"event loop {loop.choice()}; "
    )
    orders = (
        f"{args.client_orders} client API orders at {args.client_rate:g}/s, sustained steps at {args.knee_rates}/s "
        f"of {args.knee_seconds:g}s over {args.knee_terminals} terminals"
    )
    storm = f"a reconnect storm of {args.storm_terminals} terminals"
    if args.only == "orders":
        return machine + orders
    if args.only == "storm":
        return machine + storm
    if args.only == "ingest":
        return machine + f"event ingest of {args.ingest_events} events from {args.ingest_terminals} terminals"
    if args.only == "idle":
        return machine + f"idle terminals {','.join(map(str, args.idle_terminals))}, window {args.idle_window_s:g}s"
    return (
        machine + f"{args.samples} heartbeats, {args.orders} orders at {args.rate:g}/s, "
        f"{args.load_orders} orders at {args.load_rate:g}/s open loop, "
        f"{args.actions} hedge entries and exits watched by {args.subscribers} clients, {storm}; " + orders
    )


def table(rows: list[Row]) -> Iterator[str]:
    yield "| measurement | samples | p50 ms | p99 ms | p999 ms | p50 ratio | p99 ratio | p999 ratio | target | met |"
    yield "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
    for row in rows:
        if row.skipped:
            yield f"| {row.name} | 0 | skipped: {row.skipped} |  |  |  |  |  |  |  |"
            continue
        met = "" if row.met is None else ("yes" if row.met else "NO")
        yield (
            f"| {row.name} | {len(row.samples)} | {row.p50:.3f} | {row.p99:.3f} | {row.p999:.3f} | "
            f"{_fmt(row.ratio(50), 'x')} | {_fmt(row.ratio(99), 'x')} | {_fmt(row.ratio(99.9), 'x')} | "
            f"{row.target} | {met} |"
        )
    errors = sum(r.errors for r in rows)
    yield f"\norders not FILLED, action states not delivered, terminals not back after the restart: {errors}"
