"""One OpenTelemetry SDK tracer provider for the test session, exporting to memory.

OpenTelemetry lets a process set its global tracer provider once, so the first test that
asks for :func:`span_exporter` installs it; services and workers created after that trace.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.waiting import eventually

_EXPORTER = InMemorySpanExporter()


def span_exporter() -> InMemorySpanExporter:
    """The session's exporter (cleared by the caller), its provider installed."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_queuekit_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        provider._queuekit_test_exporter = True  # type: ignore[attr-defined]
    _EXPORTER.clear()
    return _EXPORTER


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """Finished spans called ``name``, in the order they ended."""
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def wait_for_spans(exporter: InMemorySpanExporter, name: str,
                         count: int) -> list[ReadableSpan]:
    """The spans called ``name`` once there are ``count`` of them (a worker's span ends
    just before the job's outcome is stored)."""
    async def probe() -> list[ReadableSpan]:
        return spans_named(exporter, name)

    return await eventually(probe, lambda spans: len(spans) == count)
