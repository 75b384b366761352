"""An OpenTelemetry SDK tracer provider for one test, exporting to memory.

OpenTelemetry lets a process set its global provider only once, and a global one would
make every later test of the session trace. So :func:`span_exporter` patches
``opentelemetry.trace.get_tracer_provider`` for the test (what ``queuekit.tracing``
asks, when a service or worker is created) and nothing outlives the test.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.waiting import eventually


def span_exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """A fresh exporter behind the provider queuekit sees until the test ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    return exporter


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
