"""OpenTelemetry tracing, off unless asked for.

- Off (the default): ``span`` returns a shared no-op context manager and ``headers`` returns None; no
  OpenTelemetry object is created on the order path.
- On without export (``HEDGEBRIDGE_TRACING=true``): spans are created and propagated (W3C ``traceparent`` in
  NATS headers and in the EA frames) but not exported; log lines carry their trace ids.
- On with OTLP export (``HEDGEBRIDGE_OTLP_ENDPOINT=http://collector:4318``): spans are batched to the
  collector over OTLP/HTTP (``/v1/traces`` is appended when the URL has no path).

One tracer provider per process, so services that share a process (the tests) share it too; every span
names its service in the ``hedgebridge.service`` attribute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import logs
from ..config import ConfigError

log = logs.get("tracing")

_PROPAGATOR = TraceContextTextMapPropagator()
_NOOP: AbstractContextManager[Span | None] = contextlib.nullcontext(None)


class _State:
    provider: TracerProvider | None = None
    tracer: Tracer | None = None
    description = "off"


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def configure(
    service: str, *, enable: bool = False, otlp_endpoint: str = "", exporter: SpanExporter | None = None
) -> None:
    """Turn tracing on for this process when ``enable``, ``otlp_endpoint`` or ``exporter`` asks for it.

    A process already tracing keeps its provider (the first service to configure it, or a test that installed
    an exporter, wins); a later call with an exporter adds it to the provider."""
    if not (enable or otlp_endpoint or exporter is not None):
        return
    processors: list[SpanProcessor] = []  # built first: a bad endpoint changes nothing
    if exporter is not None:
        processors.append(SimpleSpanProcessor(exporter))
    if otlp_endpoint:
        processors.append(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
    if _state.provider is None:
        _state.provider = TracerProvider(resource=Resource.create({"service.name": "hedgebridge"}))
        _state.tracer = _state.provider.get_tracer("hedgebridge")
        _state.description = "on"
        logs.trace_ids = current_ids
    for processor in processors:
        _state.provider.add_span_processor(processor)
    if otlp_endpoint:
        _state.description = "on, OTLP export"
    log.info("tracing on", service=service, export="otlp" if otlp_endpoint else "none")


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("HEDGEBRIDGE_OTLP_ENDPOINT must be an http(s) URL such as http://collector:4318")
    url = endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=url)


def shutdown() -> None:
    """Flush and drop the provider (the end of the process, or of a test)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    _state.description = "off"
    logs.trace_ids = None
    if provider is not None:
        provider.shutdown()


def span(
    name: str,
    service: str,
    *,
    parent: str | Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> AbstractContextManager[Span | None]:
    """A span made current for the ``with`` block, or a no-op when tracing is off.

    ``parent`` is a ``traceparent`` value or a carrier of headers holding one (NATS message headers); without
    it the span is a child of the current span, or a new trace's root."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    return _started(tracer, name, service, parent, kind, attributes)


@contextlib.contextmanager
def _started(
    tracer: Tracer,
    name: str,
    service: str,
    parent: str | Mapping[str, str] | None,
    kind: SpanKind,
    attributes: Mapping[str, str | int | float | bool] | None,
) -> Iterator[Span | None]:
    with tracer.start_as_current_span(name, context=_context(parent), kind=kind) as current:
        current.set_attribute("hedgebridge.service", service)
        for key, value in (attributes or {}).items():
            current.set_attribute(key, value)
        yield current


def start(
    name: str,
    service: str,
    *,
    parent: str | Mapping[str, str] | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Span | None:
    """A span started now and ended by ``end`` (not made current); None when tracing is off."""
    tracer = _state.tracer
    if tracer is None:
        return None
    current = tracer.start_span(name, context=_context(parent))
    current.set_attribute("hedgebridge.service", service)
    for key, value in (attributes or {}).items():
        current.set_attribute(key, value)
    return current


class Handle:
    """A span made current in this task by ``begin`` until ``finish``."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


def begin(
    name: str, service: str, *, parent: str | Mapping[str, str] | None = None, kind: SpanKind = SpanKind.SERVER
) -> Handle | None:
    """Start a span and make it current in the running task (which must be the request's own task) until
    ``finish``; None when tracing is off. For the I/O code that cannot wrap its body in ``with span(...)``."""
    tracer = _state.tracer
    if tracer is None:
        return None
    current = tracer.start_span(name, context=_context(parent), kind=kind)
    current.set_attribute("hedgebridge.service", service)
    return Handle(current, otel_context.attach(trace.set_span_in_context(current)))


def finish(handle: Handle | None, **attributes: str | int | float | bool | None) -> None:
    if handle is None:
        return
    set_attributes(handle.span, **attributes)
    handle.span.end()
    with contextlib.suppress(ValueError):  # detached in another context: the span still ended
        otel_context.detach(handle.token)  # type: ignore[arg-type]


def end(current: Span | None) -> None:
    if current is not None:
        current.end()


def traceparent_of(current: Span | None) -> str | None:
    if current is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(current))
    return carrier.get("traceparent")


def _context(parent: str | Mapping[str, str] | None) -> otel_context.Context | None:
    if not parent:
        return None
    carrier = {"traceparent": parent} if isinstance(parent, str) else dict(parent)
    return _PROPAGATOR.extract(carrier)


def traceparent() -> str | None:
    """The current span's ``traceparent`` (None when tracing is off or no span is current)."""
    if _state.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def headers(extra: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """NATS headers carrying the current span's context (plus ``extra``); None when there is nothing to send."""
    value = traceparent()
    if value is None:
        return dict(extra) if extra else None
    merged = dict(extra) if extra else {}
    merged["traceparent"] = value
    return merged


def set_attributes(current: Span | None, **attributes: Any) -> None:
    if current is not None:
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(key, value)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None when none is recording."""
    if _state.tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
