"""Observability without servers: metric names in the operator files, alert rules (promtool), readiness
answers, the client queue of the profiles, trace context, log fields and redaction."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from hedgebridge.common import logs, profiles
from hedgebridge.common.bus import redact
from hedgebridge.common.config import ConfigError
from hedgebridge.common.obs import Health, Observability, gcpause, metrics, tracing
from hedgebridge.gateway.outgoing import OutgoingQueue
from hedgebridge.protocol import ProtocolError, decode_frame

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC_NAME = re.compile(r"\b(hedgebridge_[a-z0-9_]+|up)\b")


def exported_names() -> set[str]:
    """Every series name the services' registry exposes (histograms: _bucket/_count/_sum; counters: _total)."""
    names = {"up"}  # Prometheus' own, for every scraped target
    for family in REGISTRY.collect():
        if not family.name.startswith("hedgebridge_"):
            continue
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"}
        else:
            names.add(family.name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "hedgebridge.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules: list[dict[str, Any]] = [rule for group in document["groups"] for rule in group["rules"]]
    return rules


# --- operator files ----------------------------------------------------------------------------------------


def test_the_registry_exports_the_issue_series() -> None:
    names = exported_names()
    for wanted in (
        "hedgebridge_order_duration_seconds_bucket",
        "hedgebridge_orders_total",
        "hedgebridge_ws_round_trip_seconds_bucket",
        "hedgebridge_ws_command_round_trip_seconds_bucket",
        "hedgebridge_sync_duration_seconds_bucket",
        "hedgebridge_hop_latency_seconds_bucket",
        "hedgebridge_ws_frames_total",
        "hedgebridge_connections",
        "hedgebridge_reconnects_total",
        "hedgebridge_queue_depth",
        "hedgebridge_cache_rebuilds_total",
        "hedgebridge_jetstream_publish_failures_total",
    ):
        assert wanted in names


def test_dashboard_references_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "hedgebridge.json").read_text())
    assert dashboard["uid"] == "hedgebridge"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    expressions = dashboard_expressions()
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert used, "the dashboard queries no metric"
    assert used <= exported_names(), sorted(used - exported_names())
    # the seed's series are shown at least once
    seed_series = {"hedgebridge_order_duration_seconds_bucket", "hedgebridge_sync_duration_seconds_bucket"}
    assert seed_series <= used


def test_alert_rules_mirror_the_monitor_and_use_exported_metrics() -> None:
    rules = alert_rules()
    names = exported_names()
    for rule in rules:
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= names, (rule["alert"], sorted(used - names))
        assert rule["labels"]["severity"] in ("warning", "critical")
    by_name = {rule["alert"]: rule["expr"] for rule in rules}
    # the monitor's thresholds (its defaults): 500 ms, 20 ms, 200 ms, 3 failures, 5 minutes, 100 %, 60 s
    assert "> 0.5" in by_name["HedgebridgeExecutionLatencyHigh"]
    assert "> 0.02" in by_name["HedgebridgeWebSocketLatencyHigh"]
    assert "> 0.2" in by_name["HedgebridgeSyncLatencyHigh"]
    assert ">= 3" in by_name["HedgebridgeOrdersFailing"]
    assert "< 1.0" in by_name["HedgebridgeMarginLevelLow"]
    assert "> 60" in by_name["HedgebridgeTerminalSilent"]
    assert {r["alert"]: r.get("for") for r in rules}["HedgebridgeServiceDown"] == "5m"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    return found


def test_promtool_accepts_the_rules_and_the_configuration() -> None:
    promtool = _promtool()
    for args in (
        ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
    ):
        result = subprocess.run([promtool, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_the_promtool_rule_tests() -> None:
    promtool = _promtool()
    tested = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    fired = {case["alertname"] for test in tested["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in alert_rules()}
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=DEPLOY / "prometheus", capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- metrics read at scrape time ---------------------------------------------------------------------------


class _Owner:
    def __init__(self, value: float | None) -> None:
        self.value = value


def test_live_values_combine_over_their_owners_and_drop_with_them() -> None:
    total = metrics.Live("hedgebridge_test_total_things", "test", "gauge")
    lowest = metrics.Live("hedgebridge_test_lowest_thing", "test", "min")
    try:
        a, b, c = _Owner(2.0), _Owner(5.0), _Owner(None)
        for owner in (a, b, c):
            total.add(owner, lambda o: o.value)
            lowest.add(owner, lambda o: o.value)
        assert (total.values(), lowest.values()) == ({"": 7.0}, {"": 2.0})
        lowest.remove(a)
        assert lowest.values() == {"": 5.0}
        del b
        assert total.values() == {"": 2.0}  # held weakly: a dropped owner leaves
        assert "hedgebridge_test_lowest_thing 5.0" not in metrics.exposition().decode()
    finally:
        REGISTRY.unregister(total)
        REGISTRY.unregister(lowest)


def test_order_outcomes_are_counted_by_status_and_retcode_class() -> None:
    counter = metrics.ORDERS.labels("REJECTED", "final")
    before = counter._value.get()
    metrics.observe_order("OPEN", "REJECTED", "FINAL", 0.01)
    metrics.observe_order("", "REJECTED", "FINAL", 0.0)  # no kind (an invalid request): counted, not timed
    assert counter._value.get() - before == 2
    assert metrics.retcode_class(None) == "none"


def test_every_collection_is_timed_by_generation_and_settle_freezes_the_start_up_heap() -> None:
    def collected(generation: int) -> float:
        return REGISTRY.get_sample_value("hedgebridge_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0

    gcpause.watch()
    gcpause.watch()  # once only: each collection is observed once
    try:
        before = collected(2), collected(0)
        gc.collect(2)
        gc.collect(0)
        assert (collected(2), collected(0)) == (before[0] + 1, before[1] + 1)
        frozen = gcpause.settle()
        assert frozen == gc.get_freeze_count() > 0
        assert collected(2) == before[0] + 2  # settle's own collection is timed too
    finally:
        gc.unfreeze()
        gc.callbacks.remove(gcpause._timer)
    assert "hedgebridge_gc_pause_seconds" in metrics.exposition().decode()


# --- readiness answers -------------------------------------------------------------------------------------


async def test_readiness_names_every_failed_check() -> None:
    health = Health("svc")

    async def slow() -> str | None:
        await asyncio.Event().wait()  # never answers
        return None

    def broken() -> str | None:
        raise RuntimeError("boom")

    health.check("nats", lambda: None)
    health.check("redis", lambda: "no answer to PING")
    health.check("broken", broken)
    health.check("slow", slow)
    answer = await asyncio.wait_for(health.answer("GET", "/readyz"), 5)
    body = json.loads(answer.body)
    assert answer.status == 503
    assert body["failed"] == ["broken", "redis", "slow"]
    assert body["checks"]["nats"] == "ok"
    assert body["checks"]["broken"] == "RuntimeError: boom"
    assert body["checks"]["slow"].startswith("no answer within")
    assert (await health.answer("GET", "/healthz")).status == 200
    assert (await health.answer("DELETE", "/readyz")).status == 405
    assert (await health.answer("GET", "/admin")).status == 404
    with pytest.raises(TypeError, match="asynchronous"):
        health.readiness_now()


# --- the client queue of the profiles ----------------------------------------------------------------------


def test_priority_queue_writes_results_before_market_data() -> None:
    queue = OutgoingQueue(5, priority=True)
    for frame, urgent in ((b"tick1", False), (b"tick2", False), (b"result", True), (b"tick3", False)):
        queue.put_nowait(frame, urgent)
    assert queue.take(1) == [b"result"]
    assert queue.take(50) == [b"tick1", b"tick2", b"tick3"]
    assert queue.take(50) == []
    fifo = OutgoingQueue(5, priority=False)
    for frame, urgent in ((b"tick1", False), (b"result", True), (b"tick2", False)):
        fifo.put_nowait(frame, urgent)
    assert fifo.take(2) == [b"tick1", b"result"]
    assert fifo.qsize() == 1
    for i in range(4):
        fifo.put_nowait(b"t%d" % i, False)
    with pytest.raises(asyncio.QueueFull):
        fifo.put_nowait(b"one too many", True)


def test_profiles_give_defaults_that_explicit_variables_override() -> None:
    throughput = profiles.named("throughput")
    assert (throughput.compression, throughput.batch_max, throughput.priority_queue) == (True, 50, False)
    assert (throughput.heartbeat_interval_ms, throughput.immediate_reconnect) == (5000, False)
    latency = profiles.current({})
    assert (latency.compression, latency.batch_max, latency.priority_queue) == (False, 1, True)
    assert (latency.heartbeat_interval_ms, latency.immediate_reconnect) == (1000, True)
    env = profiles.with_defaults({"HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX": "7"}, throughput.gateway_defaults())
    assert env["HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX"] == "7"
    assert env["HEDGEBRIDGE_GATEWAY_COMPRESSION"] == "true"
    with pytest.raises(ConfigError, match="HEDGEBRIDGE_PROFILE"):
        profiles.current({"HEDGEBRIDGE_PROFILE": "balanced"})


# --- traces and logs ---------------------------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.configure("test", exporter=spans)
    yield spans
    tracing.shutdown()


def test_bad_observability_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="HEDGEBRIDGE_OTLP_ENDPOINT"):
        tracing.configure("svc", otlp_endpoint="collector:4318")
    assert not tracing.enabled()
    with pytest.raises(ConfigError, match="HEDGEBRIDGE_EXECUTOR_HEALTH_PORT"):
        Observability("executor", health_port=70000)


def test_tracing_off_creates_nothing() -> None:
    assert not tracing.enabled()
    with tracing.span("x", "svc") as current:
        assert current is None
        assert tracing.headers() is None
        assert tracing.headers({"Nats-Msg-Id": "1"}) == {"Nats-Msg-Id": "1"}
    assert tracing.begin("x", "svc") is None
    assert tracing.start("x", "svc") is None


def test_trace_context_crosses_a_frame(exporter: InMemorySpanExporter) -> None:
    with tracing.span("parent", "svc"):
        value = tracing.traceparent()
        assert value is not None
        headers = tracing.headers({"Nats-Msg-Id": "id"})
    assert headers == {"Nats-Msg-Id": "id", "traceparent": value}
    frame = json.dumps(
        {
            "type": "CLOSE",
            "timestamp": "2026-01-01T00:00:00Z",
            "accountId": "A1",
            "positionId": "p1",
            "metadata": {"exitReason": "x", "userId": "u"},
            "traceparent": value,
        }
    )
    command = decode_frame(frame)
    with tracing.span("child", "svc", parent=getattr(command, "traceparent", None)):
        pass
    parent, child = exporter.get_finished_spans()
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


def test_a_malformed_traceparent_is_a_validation_error() -> None:
    frame = {
        "type": "OPENED",
        "timestamp": "2026-01-01T00:00:00Z",
        "accountId": "A1",
        "positionId": "p1",
        "status": "FAILED",
        "traceparent": "not-a-trace",
    }
    with pytest.raises(ProtocolError) as caught:
        decode_frame(json.dumps(frame))
    assert caught.value.field == "traceparent"


def _json_lines(run: Any) -> list[dict[str, Any]]:
    stream = io.StringIO()
    logs.setup("svc", "INFO", "json")
    handler = logging.getLogger("hedgebridge").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    run()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_lines_carry_trace_ids_inside_a_span_and_never_secrets(exporter: InMemorySpanExporter) -> None:
    log = logs.get("svc")

    def run() -> None:
        log.info("outside", token="abc")
        with tracing.span("work", "svc") as current:
            assert current is not None
            log.info("inside", password="hunter2", account="A1")

    outside, inside = _json_lines(run)
    assert "trace_id" not in outside
    assert outside["token"] == "***"
    [span] = exporter.get_finished_spans()
    assert inside["trace_id"] == format(span.context.trace_id, "032x")
    assert inside["span_id"] == format(span.context.span_id, "016x")
    assert inside["password"] == "***"
    assert "hunter2" not in json.dumps(inside)


def test_nats_urls_lose_their_credentials() -> None:
    text = "cannot reach NATS at nats://alice:s3cret@n1:4,tls://tok3n@n2:4,nats://n3:4"
    assert redact(text) == "cannot reach NATS at nats://alice:***@n1:4,tls://***@n2:4,nats://n3:4"
    assert "s3cret" not in redact("ConnectionError: nats://u:s3cret@host failed")
